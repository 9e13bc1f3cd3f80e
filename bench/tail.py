"""Where the tail latency at half load comes from: open-loop runs with every request and the machine
traced, for one hub on PostgreSQL.

    python -m bench.tail                    # 8 pairs: a 64-sender run, then half of its rate
    python -m bench.tail --rate 350 --runs 6
    python -m bench.tail --fraction 0.33    # a third of each max instead of half

Each pair measures the hub's maximum (64 senders, closed loop) and then, seconds later, offers half
of that rate on a fixed schedule. For the open-loop run it records, per request: when it was due,
when the load generator began it (its own lag), whether it opened a new connection, and when the
answer came; the hub's acceptance histogram (inside the gateway, from intake to 202) before and
after; and a probe process's view of the machine (how late a sleeping process gets a core back, how
fast fixed work runs, CPU/IO pressure and steal). Prints a line per run and the worst 100 ms windows
of each run beside what the probe saw in them; the raw traces stay in the temporary folder with
--keep.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp

from bench.run import PY, Budget, Env, _delete_topology, loadgen, purge_queues, write_templates
from tests.support.hubproc import postgres_database, prepare_hub

GEMEENTE = "0363"
BUCKET = 0.1


def _scrape(url: str) -> dict[str, dict[float, float]]:
    """From the hub's /metrics: the acceptance histogram ("acceptance", upper bound s -> cumulative
    count) and the full garbage collections ("gc2": the same, plus "sum" -> seconds stopped)."""

    async def get() -> str:
        async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as r:
            return await r.text()

    text = asyncio.run(get())
    out: dict[str, dict[float, float]] = {"acceptance": {}, "gc2": {}}
    for m in re.finditer(r'hub_acceptance_duration_seconds_bucket\{le="([^"]+)"\} (\S+)', text):
        out["acceptance"][float(m[1])] = float(m[2])
    for m in re.finditer(r'hub_gc_pause_seconds_bucket\{generation="2",le="([^"]+)"\} (\S+)', text):
        out["gc2"][float(m[1])] = float(m[2])
    total = re.search(r'hub_gc_pause_seconds_sum\{generation="2"\} (\S+)', text)
    out["gc2"][-1.0] = float(total[1]) if total else 0.0  # -1: the sum
    return out


def _quantile_bound(before: dict[float, float], after: dict[float, float], q: float) -> float:
    total = after[float("inf")] - before.get(float("inf"), 0.0)
    for le in sorted(after):
        if after[le] - before.get(le, 0.0) >= q * total:
            return le
    return float("inf")


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * len(xs)) - 1))]


def _shown(key: str, value: float) -> float:
    if key in ("n", "new"):
        return value
    if key.startswith("cpu:") or key.startswith("io."):
        return round(value * 100)  # % of one core; % of the time stalled
    return round(value * 1e3, 1)  # ms


def analyse(trace: dict[str, Any], probe: dict[str, Any], offset: float) -> dict[str, Any]:
    """offset: the probe's clock minus the load generator's (both perf_counter, started apart)."""
    lo, hi = trace["window"]
    reqs = [r for r in trace["requests"] if lo <= r[2] <= hi and r[3] in ("200", "202")]
    lat = [r[2] - r[0] for r in reqs]
    lag = [r[1] - r[0] for r in reqs]
    new = [r[2] - r[0] for r in reqs if r[4]]
    wakes = [w for w in probe["wakes"] if lo <= w[0] + offset <= hi]
    late = [w[1] for w in wakes]
    flushes = [w[3] for w in wakes if w[3] > 0]
    work = [w[2] for w in wakes]
    samples = [s for s in probe["samples"] if lo <= s[0] + offset <= hi]
    delta: dict[str, float] = {}
    if len(samples) >= 2:
        span = samples[-1][0] - samples[0][0]
        delta = {k: (samples[-1][1][k] - samples[0][1][k]) / span for k in samples[0][1]}
    # 100 ms windows by the time a request was due: its worst latency, beside the probe's worst lateness.
    windows: dict[int, dict[str, float]] = {}
    for r in reqs:
        w = windows.setdefault(int(r[0] / BUCKET), {"n": 0, "worst": 0.0, "lag": 0.0, "new": 0})
        w["n"] += 1
        w["worst"] = max(w["worst"], r[2] - r[0])
        w["lag"] = max(w["lag"], r[1] - r[0])
        w["new"] += int(r[4])
    for t, late_by, took, flush in probe["wakes"]:
        seen = windows.get(int((t + offset) / BUCKET))
        if seen is not None:
            seen["late"] = max(seen.get("late", 0.0), late_by)
            seen["work"] = max(seen.get("work", 0.0), took)
            seen["fsync"] = max(seen.get("fsync", 0.0), flush)
    # Who had the cores in each window (CPU seconds per second: 1.0 is one core), from the probe's
    # samples every 100 ms.
    every = probe["samples"]
    for (t0, a), (t1, b) in itertools.pairwise(every):
        seen = windows.get(int((t1 + offset) / BUCKET))
        if seen is not None and t1 > t0:
            for key in b:
                if (key.startswith("cpu:") or key.startswith("io.")) and key in a:
                    seen[key] = (b[key] - a[key]) / (t1 - t0)
    worst = sorted(windows.items(), key=lambda kv: -kv[1]["worst"])[:5]
    return {
        "n": len(reqs),
        "p50_ms": _pct(lat, 0.5) * 1e3,
        "p99_ms": _pct(lat, 0.99) * 1e3,
        "max_ms": max(lat, default=0) * 1e3,
        "lag_p99_ms": _pct(lag, 0.99) * 1e3,
        "new_connections": len(new),
        "new_conn_p50_ms": _pct(new, 0.5) * 1e3,
        "probe_late_p99_ms": _pct(late, 0.99) * 1e3,
        "probe_late_max_ms": max(late, default=0) * 1e3,
        "fsync_p50_ms": _pct(flushes, 0.5) * 1e3,
        "fsync_max_ms": max(flushes, default=0) * 1e3,
        "probe_work_ratio_p90_p10": (_pct(work, 0.9) / _pct(work, 0.1)) if work else 0.0,
        "per_s": delta,
        "worst_windows": [
            {
                "t": k * BUCKET,
                **{a: _shown(a, b) for a, b in v.items()},
            }
            for k, v in worst
        ],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.5)
    parser.add_argument("--rate", type=float, default=None, help="a fixed rate instead of half of each max")
    parser.add_argument(
        "--fraction", type=float, default=0.5, help="the share of each run's max to offer (default half)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the traces (prints the folder)")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        tmp = (
            Path(tempfile.mkdtemp(prefix="hub-tail-"))
            if args.keep
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hub-tail-")))
        )
        env = Env(Budget(args.runs, args.seconds, 1.0, args.seconds), tmp, write_templates(tmp))
        folder = tmp / "pg"
        folder.mkdir()
        hub = prepare_hub(
            stack.enter_context(postgres_database()),
            folder,
            {"gemeente": GEMEENTE},
            HUB_AMQP_EXCHANGE=f"bench.{env.tag}.tail",
            HUB_AMQP_QUEUE_PREFIX=f"bench.{env.tag}.tail.ontvanger.",
        )
        hub.start()
        stack.callback(_delete_topology, hub)
        stack.callback(hub.stop)
        env.queues.append(hub.queue("aanbieder:12345678"))
        assert hub.proc is not None
        pids = [hub.proc.pid]
        url = hub.url + "/v1/berichten"
        summary = []
        for i in range(args.runs):
            rate = args.rate
            top = None
            if rate is None:
                top = loadgen(env, [url], "4k", 64, token=hub.tokens["gemeente"], server_pids=pids)
                purge_queues(env)
                rate = top.msgs_per_s * args.fraction
            trace_path, probe_path = tmp / f"trace{i}.json", tmp / f"probe{i}.json"
            before = _scrape(hub.url)
            probe = subprocess.Popen(
                [PY, "-m", "bench.probe", str(probe_path), str(args.seconds + 2.5), *map(str, pids)]
            )
            result = loadgen(
                env, [url], "4k", 0, token=hub.tokens["gemeente"], server_pids=pids, rate=rate,
                trace=trace_path,
            )
            after = _scrape(hub.url)
            probe.wait(30)
            purge_queues(env)
            trace, seen = json.loads(trace_path.read_text()), json.loads(probe_path.read_text())
            a = analyse(trace, seen, seen["started"] - trace["started"])
            a["rate"] = rate
            a["max_before"] = top.msgs_per_s if top else None
            a["server_p99_le_ms"] = _quantile_bound(before["acceptance"], after["acceptance"], 0.99) * 1e3
            a["server_p50_le_ms"] = _quantile_bound(before["acceptance"], after["acceptance"], 0.5) * 1e3
            gc_before, gc_after = before["gc2"], after["gc2"]
            a["full_gcs"] = gc_after.get(float("inf"), 0) - gc_before.get(float("inf"), 0)
            a["full_gc_ms"] = (gc_after.get(-1.0, 0) - gc_before.get(-1.0, 0)) * 1e3
            a["server_cpu_ms"] = result.cpu_ms_per_msg("server") or 0.0
            a["machine_busy"] = result.cpu_s.get("machine_busy")
            summary.append(a)
            pps = a["per_s"]
            print(
                f"run {i}: {rate:,.0f}/s (max {a['max_before'] or 0:,.0f}) client p50 {a['p50_ms']:.1f} "
                f"p99 {a['p99_ms']:.1f} max {a['max_ms']:.0f} ms | hub p50<={a['server_p50_le_ms']:.0f} "
                f"p99<={a['server_p99_le_ms']:.0f} ms | gen lag p99 {a['lag_p99_ms']:.1f} | new conns "
                f"{a['new_connections']} | probe late p99 {a['probe_late_p99_ms']:.1f} max "
                f"{a['probe_late_max_ms']:.0f} ms | fsync p50 {a['fsync_p50_ms']:.1f} max "
                f"{a['fsync_max_ms']:.0f} ms | cpu.some {pps.get('cpu.some', 0):.2f} io.full "
                f"{pps.get('io.full', 0):.3f} steal {pps.get('steal', 0):.3f} | hub cpu "
                f"{a['server_cpu_ms']:.2f} ms/msg | full GCs {a['full_gcs']:.0f} ({a['full_gc_ms']:.0f} ms)",
                flush=True,
            )
            for w in a["worst_windows"][:3]:
                print("    ", w, flush=True)
        if args.keep:
            print(f"traces in {tmp}", file=sys.stderr)
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
