"""The load generator: a separate process that POSTs messages and measures throughput and latency.

Run by the harness as `python -m bench.loadgen '<json spec>'`; prints one JSON object on stdout.

Closed loop (`rate` null): `concurrency` senders post back to back. Open loop (`rate` set): requests
start on a fixed schedule whatever the answers do, and latency counts from the scheduled start, so a
stall shows up in the percentiles instead of slowing the sender down (no coordinated omission).
Every request gets a fresh Identificatie (`prefix` + counter, 12 characters) in place of the
template's placeholder, so the hub sees new messages, never duplicates. Only completions inside the
measured window (after `warmup`) count; CPU of the given server pids, RabbitMQ, PostgreSQL and this
process is metered over exactly that window.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.procs import CpuMeter

PLACEHOLDER = b"@@BENCHID@@@"  # 12 bytes, the length of an Identificatie
ID_DIGITS = 8


def percentiles(latencies_s: list[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean in milliseconds (nearest rank)."""
    if not latencies_s:
        return {}
    xs = sorted(latencies_s)

    def rank(q: float) -> float:
        return xs[min(len(xs) - 1, max(0, round(q * len(xs)) - 1))] * 1000

    return {
        "p50": rank(0.50),
        "p90": rank(0.90),
        "p99": rank(0.99),
        "max": xs[-1] * 1000,
        "mean": sum(xs) / len(xs) * 1000,
    }


@dataclass
class Spec:
    urls: list[str]
    template: str
    concurrency: int = 16
    seconds: float = 5.0
    warmup: float = 1.0
    rate: float | None = None
    token: str = ""
    prefix: str = "B000"
    server_pids: list[int] = field(default_factory=list)
    content_type: str = "application/xml"
    trace: str | None = None  # a path: per-request timings written there as JSON at the end

    @classmethod
    def from_json(cls, text: str) -> Spec:
        return cls(**json.loads(text))


class Bodies:
    """A fresh body per request: the template with the placeholder replaced by prefix + counter."""

    def __init__(self, template: bytes, prefix: str) -> None:
        if len(prefix) + ID_DIGITS != len(PLACEHOLDER):
            raise ValueError(f"prefix must be {len(PLACEHOLDER) - ID_DIGITS} characters")
        head, sep, tail = template.partition(PLACEHOLDER)
        self._parts = (head, tail) if sep else None
        self._template = template
        self._prefix = prefix.encode()
        self.n = 0

    def next(self) -> bytes:
        self.n += 1
        if self._parts is None:
            return self._template
        return b"".join((self._parts[0], self._prefix, b"%08d" % self.n, self._parts[1]))


async def run(spec: Spec, template: bytes) -> dict[str, Any]:
    bodies = Bodies(template, spec.prefix)
    headers = {"Content-Type": spec.content_type}
    if spec.token:
        headers["Authorization"] = f"Bearer {spec.token}"
    meter = CpuMeter(spec.server_pids)
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    window: dict[str, float] = {}
    cpu: dict[str, float] = {}
    answered = [0]  # every 200/202 of the whole run, warm-up included (for the durability check)
    # (scheduled, begun, done, status, new connection) per request, kept in memory: writing them out
    # during the run would itself stall the loop.
    traced: list[tuple[float, float, float, str, bool]] = []
    connector = aiohttp.TCPConnector(limit=0 if spec.rate else spec.concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)
    started = time.perf_counter()
    measure_from = started + spec.warmup
    measure_to = measure_from + spec.seconds

    async def one(session: aiohttp.ClientSession, url: str, t_start: float) -> None:
        body = bodies.next()
        begun = time.perf_counter()
        ctx: dict[str, bool] | None = {} if spec.trace else None
        try:
            async with session.post(url, data=body, headers=headers, trace_request_ctx=ctx) as response:
                await response.read()
                status = str(response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            status = type(exc).__name__
        done = time.perf_counter()
        if spec.trace:
            traced.append(
                (t_start - started, begun - started, done - started, status, bool(ctx and ctx.get("new")))
            )
        if status in ("200", "202"):
            answered[0] += 1
        if measure_from <= done <= measure_to:
            statuses[status] = statuses.get(status, 0) + 1
            if status in ("200", "202"):
                latencies.append(done - t_start)

    async def meter_window() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        meter.start()
        window["from"] = time.perf_counter()
        await asyncio.sleep(max(0.0, measure_to - time.perf_counter()))
        cpu.update(meter.stop())
        window["to"] = time.perf_counter()

    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, trace_configs=[_new_connections()] if spec.trace else None
    ) as session:
        metering = asyncio.create_task(meter_window())
        if spec.rate is None:

            async def sender(i: int) -> None:
                url = spec.urls[i % len(spec.urls)]
                while time.perf_counter() < measure_to:
                    await one(session, url, time.perf_counter())

            await asyncio.gather(*(sender(i) for i in range(spec.concurrency)))
        else:
            tasks: set[asyncio.Task[None]] = set()
            interval = 1.0 / spec.rate
            i = 0
            while True:
                t_sched = started + i * interval
                if t_sched >= measure_to:
                    break
                delay = t_sched - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(one(session, spec.urls[i % len(spec.urls)], t_sched))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            if tasks:
                await asyncio.wait(tasks, timeout=30)
        await metering
    elapsed = window["to"] - window["from"]
    ok = sum(n for s, n in statuses.items() if s in ("200", "202"))
    return {
        "ok": ok,
        "statuses": statuses,
        "seconds": elapsed,
        "msgs_per_s": ok / elapsed if elapsed > 0 else 0.0,
        "latency_ms": percentiles(latencies),
        "cpu_s": cpu,
        "rss_mib": meter.peak_rss_mib(),
        "sent": bodies.n,
        "answered": answered[0],
    } | (
        {
            "trace": {
                "started": started,  # perf_counter is the system's monotonic clock: comparable
                "window": [measure_from - started, measure_to - started],
                "requests": traced,
            }
        }
        if spec.trace
        else {}
    )


def _new_connections() -> aiohttp.TraceConfig:
    """Marks a traced request's context {"new": True} when it had to open a connection."""
    tracing = aiohttp.TraceConfig()

    async def on_connection(_s: Any, ctx: Any, _p: Any) -> None:
        if ctx.trace_request_ctx is not None:
            ctx.trace_request_ctx["new"] = True

    tracing.on_connection_create_end.append(on_connection)
    return tracing


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = Spec.from_json(args[0])
    result = asyncio.run(run(spec, Path(spec.template).read_bytes()))
    if spec.trace:
        Path(spec.trace).write_text(json.dumps(result.pop("trace")))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
