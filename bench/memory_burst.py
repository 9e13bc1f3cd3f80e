"""Peak memory of `hub serve` under a burst of concurrent 25 MB bodies, with and without the cap on
request bytes in flight (HUB_MAX_INFLIGHT_BYTES). Needs RabbitMQ (the hub connects at start-up).

    .venv/bin/python -m bench.memory_burst [--posts 40] [--mb 25] [--cap-mb 200]

For each setting it starts a fresh hub (SQLite in a temporary folder, per-party limits off so only the
cap acts), fires `--posts` concurrent POSTs of a `--mb` MB body, samples VmRSS of the hub process every
10 ms from /proc/<pid>/status and reads VmHWM (the kernel's high-water mark) at the end, and prints
one JSON line per setting and a summary table. The body is well-formed XML whose one text node is
the whole 25 MB: the hub reads it whole, parses it and refuses it (400 hostile_xml), so memory is the
body plus its parse, without the storage and publish of 1 GB of valid messages.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.hubproc import HubProcess, delete_topology, prepare_hub


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


class Sampler:
    """VmRSS every `interval` seconds in a thread (the event loop is busy sending)."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_rss_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_rss_kb = max(self.peak_rss_kb, _status_kb(self.pid, "VmRSS"))
            time.sleep(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def body_of(megabytes: int) -> bytes:
    head = b'<?xml version="1.0"?><Bericht xmlns="urn:example:not-istandaarden"><Data>'
    tail = b"</Data></Bericht>"
    return head + b"a" * (megabytes * 1024 * 1024 - len(head) - len(tail)) + tail


async def burst(hub: HubProcess, body: bytes, posts: int) -> Counter[str]:
    headers = {"Authorization": f"Bearer {hub.tokens['gemeente']}", "Content-Type": "application/xml"}
    outcomes: Counter[str] = Counter()
    timeout = aiohttp.ClientTimeout(total=300)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def one() -> None:
            try:
                async with session.post(f"{hub.url}/v1/berichten", data=body, headers=headers) as r:
                    answer = await r.json()
                    code = answer["error"]["code"] if "error" in answer else ""
                    outcomes[f"{r.status} {code}".strip()] += 1
            except aiohttp.ClientError as exc:
                outcomes[type(exc).__name__] += 1

        await asyncio.gather(*(one() for _ in range(posts)))
    return outcomes


def measure(cap_bytes: int, posts: int, megabytes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hub-membench-") as tmp_name:
        tmp = Path(tmp_name)
        hub = prepare_hub(
            f"sqlite+aiosqlite:///{tmp / 'hub.sqlite'}",
            tmp,
            {"gemeente": "0363"},
            HUB_MAX_BODY_BYTES=str(megabytes * 1024 * 1024),
            HUB_MAX_INFLIGHT_BYTES=str(cap_bytes),
        )
        hub.start()
        try:
            assert hub.proc is not None
            pid = hub.proc.pid
            time.sleep(1.0)  # settle after start-up
            baseline = _status_kb(pid, "VmRSS")
            body = body_of(megabytes)
            started = time.perf_counter()
            with Sampler(pid) as sampler:
                outcomes = asyncio.run(burst(hub, body, posts))
            seconds = time.perf_counter() - started
            return {
                "cap_mb": cap_bytes // (1024 * 1024) if cap_bytes else None,
                "posts": posts,
                "body_mb": megabytes,
                "baseline_rss_mb": round(baseline / 1024),
                "peak_rss_mb": round(sampler.peak_rss_kb / 1024),
                "vm_hwm_mb": round(_status_kb(pid, "VmHWM") / 1024),
                "seconds": round(seconds, 1),
                "outcomes": dict(sorted(outcomes.items())),
            }
        finally:
            hub.stop()
            asyncio.run(delete_topology(hub))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_burst", description=__doc__)
    parser.add_argument("--posts", type=int, default=40)
    parser.add_argument("--mb", type=int, default=25)
    parser.add_argument("--cap-mb", type=int, default=200)
    args = parser.parse_args()
    results = [measure(cap, args.posts, args.mb) for cap in (0, args.cap_mb * 1024 * 1024)]
    for r in results:
        print(json.dumps(r))
    print()
    print("| HUB_MAX_INFLIGHT_BYTES | baseline RSS | peak RSS (sampled) | VmHWM | seconds | answers |")
    print("|---|---|---|---|---|---|")
    for r in results:
        cap = f"{r['cap_mb']} MB" if r["cap_mb"] else "0 (no cap)"
        answers = ", ".join(f"{k}: {v}" for k, v in r["outcomes"].items())
        print(
            f"| {cap} | {r['baseline_rss_mb']} MB | {r['peak_rss_mb']} MB | {r['vm_hwm_mb']} MB "
            f"| {r['seconds']} | {answers} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
