"""The benchmark harness's plumbing, on synthetic numbers and one tiny real run (no timing asserted)."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from typing import Any

import pytest

from bench.harness import (
    Registry,
    Results,
    RunResult,
    Target,
    ratio,
    replace_section,
    run_rounds,
    summarize,
    summary_table,
    targets_table,
)
from bench.loadgen import PLACEHOLDER, Bodies, percentiles
from bench.procs import CpuMeter
from bench.run import SCENARIOS, TARGET_PAIRS, target_pairs_adjacent


def _result(rate: float, *, server_cpu: float = 1.0, p99: float = 10.0) -> RunResult:
    ok = int(rate * 2)
    return RunResult(
        msgs_per_s=rate,
        ok=ok,
        seconds=2.0,
        latency_ms={"p50": p99 / 2, "p99": p99},
        cpu_s={"server": server_cpu, "postgres": 0.5, "machine_busy": 0.8},
        rss_mib={"server": 80.0},
        statuses={"202": ok},
    )


def test_registry_runs_rounds_interleaved_and_reports_unavailable() -> None:
    registry: Registry[list[str]] = Registry()
    calls: list[str] = []
    rates = {"a": iter([100.0, 120.0, 110.0]), "b": iter([50.0, 60.0, 40.0])}

    def run(name: str, ctx: list[str]) -> RunResult:
        ctx.append(name)
        return _result(next(rates[name]))

    registry.add_fn("a", "hub", "A", functools.partial(run, "a"))
    registry.add_fn("b", "baseline", "B", functools.partial(run, "b"), quick=False)
    registry.add_fn("c", "delivery", "C", lambda ctx: _result(1.0), unavailable=lambda: "not built yet")
    with pytest.raises(ValueError, match="twice"):
        registry.add_fn("a", "hub", "again", lambda ctx: _result(1.0))

    assert [s.name for s in registry.select(quick=True)] == ["a", "c"]
    assert [s.name for s in registry.select(quick=False, only=["b"])] == ["b"]

    results = run_rounds(registry.select(quick=False), calls, 3, log=lambda _: None)
    assert calls == ["a", "b", "b", "a", "a", "b"]  # A/B, then B/A, then A/B
    assert results.not_measured == {"c": "not built yet"}
    assert "c" not in results.runs

    got = ratio(results, "a", "b")
    assert got is not None
    assert got[1] == [2.0, 2.0, 2.75] and got[0] == 2.0
    assert ratio(results, "a", "c") is None

    s = summarize("a", results.runs["a"])
    assert (s.n, s.median, s.low, s.high) == (3, 110.0, 100.0, 120.0)
    assert s.cpu_ms["server"] == pytest.approx(1000 / 220)  # CPU s * 1000 / messages, median of runs
    assert s.busy == pytest.approx(0.8)
    assert s.errors == 0


def test_markdown_tables_and_section_replacement() -> None:
    results = Results()
    for rate in (10.0, 30.0, 20.0):
        results.add("hub.pg.4k.c64", _result(rate))
    results.add("bad", RunResult(msgs_per_s=1.0, ok=1, seconds=1.0, statuses={"202": 1, "503": 2}))
    results.not_measured["delivery.push"] = "not built yet"
    table = summary_table(results)
    assert "| hub.pg.4k.c64 | 3 | 20 | 10 | 30 | 100% |" in table
    assert "| bad | 1 |" in table and table.rstrip().split("\n")[3].endswith("| 2 |")
    assert "not measured: not built yet" in table

    targets = targets_table(
        [
            Target("ratio", 1.6, 1.5),
            Target("p99", 80.0, 50.0, higher_is_better=False, unit="ms"),
            Target("push", None, 0.5),
        ]
    )
    assert "| ratio | >= 1.5 x | 1.60 x | met |" in targets
    assert "| p99 | <= 50 ms | 80.00 ms | **not met** |" in targets
    assert "| push | >= 0.5 x |  | not measured |" in targets

    doc = "# Performance\n\n## Validation\n\nkeep me\n\n## Results\n\nold\n\n## Later\n\nkeep too\n"
    new = replace_section(doc, "Results", "new table")
    assert "keep me" in new and "keep too" in new and "new table" in new and "old" not in new
    assert replace_section("# P\n", "Added", "x").endswith("## Added\n\nx\n")


def test_load_generator_bodies_and_percentiles() -> None:
    template = b"<a><Identificatie>" + PLACEHOLDER + b"</Identificatie></a>"
    bodies = Bodies(template, "B001")
    first, second = bodies.next(), bodies.next()
    assert first == b"<a><Identificatie>B00100000001</Identificatie></a>"
    assert second.count(b"B00100000002") == 1 and len(first) == len(template)
    with pytest.raises(ValueError):
        Bodies(template, "TOOLONG")

    p = percentiles([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert (p["p50"], p["p99"], p["max"]) == pytest.approx((50.0, 99.0, 100.0))
    assert percentiles([]) == {}


def test_cpu_meter_counts_this_process() -> None:
    meter = CpuMeter([os.getpid()], self_group=None)
    meter.start()
    # Busy for 50 ms of this process's CPU time: /proc counts in 10 ms ticks, so a shorter loop on a
    # fast core could read as zero.
    spent = time.process_time()
    x = 0
    while time.process_time() - spent < 0.05:
        x += 1
    cpu = meter.stop()
    assert cpu["server"] > 0 and 0.0 <= cpu["machine_busy"] <= 1.0
    assert set(cpu) >= {"server", "rabbitmq", "postgres", "machine_busy"}
    assert meter.peak_rss_mib()["server"] > 0


def test_one_tiny_real_closed_loop_run() -> None:
    """bench.bare's driver loop for ~0.3 s on a no-op: the plumbing works end to end."""
    from bench.bare import closed_loop

    async def op() -> None:
        await asyncio.sleep(0.001)

    raw = asyncio.run(closed_loop(op, concurrency=4, warmup=0.05, seconds=0.3))
    result = RunResult.from_json(raw)
    assert result.ok > 0 and result.msgs_per_s > 0
    assert result.latency_ms["p99"] >= 1.0
    assert result.cpu_ms_per_msg("server") is not None


def test_each_target_pair_runs_back_to_back_in_either_direction() -> None:
    order = [s.name for s in target_pairs_adjacent(SCENARIOS.select(quick=False, only=[]))]
    assert sorted(order) == sorted(s.name for s in SCENARIOS.select(quick=False, only=[]))
    for base, hub in TARGET_PAIRS:
        assert order.index(hub) == order.index(base) + 1  # reversed on odd rounds: still neighbours


def test_tail_account_puts_each_request_and_probe_wake_in_its_window() -> None:
    from bench.tail import analyse

    # Requests due every 10 ms over 1 s; those due in [0.50, 0.60) wait 80 ms, one opens a connection.
    requests = []
    for i in range(100):
        due = 0.5 + i * 0.01 if i < 50 else 1.0 + (i - 50) * 0.01
        slow = 0.5 <= due < 0.6
        requests.append((due, due + 0.0005, due + (0.080 if slow else 0.005), "202", i == 3))
    trace = {"started": 100.0, "window": [0.5, 1.6], "requests": requests}
    # The probe started 0.5 s later by the same clock: its t=0.05 is the load generator's 0.55.
    probe: dict[str, Any] = {
        "started": 100.5,
        "wakes": [(0.05, 0.030, 0.0002, 0.012), (0.40, 0.0001, 0.0002, 0.0)],
        "samples": [
            (0.0, {"cpu.some": 1.0, "cpu:postgres": 2.0}),
            (0.1, {"cpu.some": 1.05, "cpu:postgres": 2.0}),
            (1.0, {"cpu.some": 1.5, "cpu:postgres": 2.3}),
        ],
    }
    account = analyse(trace, probe, probe["started"] - trace["started"])
    assert account["n"] == 100
    assert account["new_connections"] == 1
    worst = account["worst_windows"][0]
    assert worst["t"] == 0.5 and worst["worst"] == 80.0 and worst["late"] == 30.0
    assert worst["fsync"] == 12.0 and worst["cpu:postgres"] == 0  # PostgreSQL idle: waiting
    assert account["fsync_max_ms"] == 12.0
    assert account["per_s"]["cpu.some"] == 0.5
