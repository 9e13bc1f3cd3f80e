"""`python -m bench`: measure the hub against the limits of its parts, on this machine, in one run.

    python -m bench              full run (~10 min): 5 interleaved rounds; writes docs/performance.md
    python -m bench --quick      smoke run (~2-3 min): 2 short rounds, fewer scenarios; JSON only
    python -m bench --only hub.pg --only bare.pipeline.pg    a subset (substring match)
    python -m bench list         the registered scenarios
    python -m bench scale        10M-row audit lookups, routing with 10,000 aanbieders, 2 gateways, 2 workers

Raw numbers go to bench/results/bench-<time>.json (and scale-<time>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.harness import (
    Results,
    Summary,
    Target,
    descriptions_list,
    ratio,
    replace_section,
    summarize,
    summary_table,
    targets_table,
    versions_table,
)

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
DOC = REPO / "docs" / "performance.md"
RESULTS_HEADING = "Results of `python -m bench`"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _dpkg(package: str) -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", package],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _postgres_version() -> str:
    import asyncio

    import asyncpg

    from tests.support.hubproc import PG_ADMIN_DSN

    async def ask() -> str:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    try:
        return asyncio.run(ask())
    except Exception as exc:  # a version line must not fail the run
        return f"unknown ({type(exc).__name__})"


def machine_and_versions() -> dict[str, str]:
    from lxml import etree

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_gib = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{os.cpu_count()} CPUs ({cpu}), {mem_gib:.0f} GiB RAM, {platform.platform()}",
        "Python": platform.python_version(),
        "lxml / libxml2": f"{'.'.join(map(str, etree.LXML_VERSION))} / "
        f"{'.'.join(map(str, etree.LIBXML_VERSION))}",
        "aiohttp": _version("aiohttp"),
        "aio-pika / aiormq": f"{_version('aio-pika')} / {_version('aiormq')}",
        "SQLAlchemy / asyncpg / aiosqlite": f"{_version('SQLAlchemy')} / {_version('asyncpg')} / "
        f"{_version('aiosqlite')}",
        "RabbitMQ (Debian package)": _dpkg("rabbitmq-server"),
        "PostgreSQL": _postgres_version(),
    }


def _summary(results: Results, name: str) -> Summary | None:
    runs = results.runs.get(name)
    return summarize(name, runs) if runs else None


def _cpu(s: Summary | None, *groups: str) -> float | None:
    if s is None:
        return None
    values = [s.cpu_ms.get(g) for g in groups]
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def ceiling(results: Results, validation: dict[str, Any] | None, backend: str, nproc: int) -> dict[str, Any]:
    """The CPU-bound ceiling: sum of the stages' measured CPU per message, and the hub's distance to it."""
    small = (validation or {}).get("messages", {}).get("small WMO301", {})
    bare_lxml = small.get("stats", {}).get("bare lxml", {}).get("median")
    insert = "bare.insert.pg.c64" if backend == "pg" else "bare.insert.sqlite.c8"
    hub = _summary(results, f"hub.{backend}.4k.c64")
    stages: dict[str, float | None] = {
        "HTTP request + 202 (bare aiohttp, server)": _cpu(
            _summary(results, "bare.aiohttp202.4k.c64"), "server"
        ),
        "lxml parse + validate (single thread)": 1000 / bare_lxml if bare_lxml else None,
        "persistent publish + confirm (client + RabbitMQ)": _cpu(
            _summary(results, "bare.publish.4k.c64"), "server", "rabbitmq"
        ),
        "one audit row per commit (client + database)": _cpu(_summary(results, insert), "server", "postgres")
        if backend == "pg"
        else _cpu(_summary(results, insert), "server"),
        "load generator (per request, in the hub run)": _cpu(hub, "loadgen"),
    }
    known = [v for v in stages.values() if v is not None]
    total = sum(known) if len(known) == len(stages) else None
    out: dict[str, Any] = {"stages_ms": stages, "sum_ms": total}
    if total:
        out["ceiling_msgs_per_s"] = nproc * 1000 / total
        if hub is not None:
            out["hub_msgs_per_s"] = hub.median
            out["hub_share_of_ceiling"] = hub.median / out["ceiling_msgs_per_s"]
            out["hub_cpu_ms_total"] = hub.cpu_total()
    return out


def targets(results: Results, validation: dict[str, Any] | None) -> list[Target]:
    def r(a: str, b: str) -> tuple[float | None, str]:
        got = ratio(results, a, b)
        if got is None:
            return None, "not measured"
        return got[0], "per round: " + ", ".join(f"{x:.2f}" for x in got[1])

    out = []
    for backend, goal in (("pg", 1.5), ("sqlite", 1.0)):
        value, detail = r(f"hub.{backend}.4k.c64", f"bare.pipeline.{backend}.4k.c64")
        out.append(
            Target(f"hub intake / bare pipeline, {backend}, 4 KB, 64 senders", value, goal, detail=detail)
        )
    for backend in ("pg", "sqlite"):
        half = _summary(results, f"hub.{backend}.4k.half-load")
        out.append(
            Target(
                f"p99 at half the hub's max, {backend} (open loop)",
                half.p99_ms if half else None,
                50.0,
                higher_is_better=False,
                unit="ms",
                detail=f"{half.median:,.0f} msgs/s offered/answered; p50 {half.p50_ms or 0:.1f} ms"
                if half
                else "",
            )
        )
    for name, m in ((validation or {}).get("messages") or {}).items():
        per_round = m.get("ratio_hub_bare_per_round", [])
        out.append(
            Target(
                f"hub validation / bare lxml, {name}",
                m.get("ratio_hub_bare_median"),
                0.8,
                detail="per round: " + ", ".join(f"{x:.2f}" for x in per_round),
            )
        )
    push = r("delivery.push", "delivery.bare.consume-post")
    out.append(
        Target(
            "push delivery / bare consume-and-POST loop",
            push[0],
            0.5,
            detail=results.not_measured.get("delivery.push", push[1]),
        )
    )
    return out


def ceiling_table(c: dict[str, Any], backend: str) -> str:
    lines = [f"| stage ({backend}) | CPU ms per message |", "|---|---:|"]
    for stage, v in c["stages_ms"].items():
        lines.append(f"| {stage} | {'' if v is None else f'{v:.3f}'} |")
    if c.get("sum_ms"):
        lines.append(f"| **sum** | **{c['sum_ms']:.3f}** |")
        lines.append(f"| ceiling = cores / sum | {c['ceiling_msgs_per_s']:,.0f} msgs/s |")
    if "hub_msgs_per_s" in c:
        lines.append(
            f"| hub measured (64 senders) | {c['hub_msgs_per_s']:,.0f} msgs/s = "
            f"{100 * c['hub_share_of_ceiling']:.0f}% of the ceiling; "
            f"hub run's CPU, all processes: {c['hub_cpu_ms_total']:.3f} ms/msg |"
        )
    return "\n".join(lines)


def render(report: dict[str, Any]) -> str:
    results = report["_results"]
    parts = [
        f"Generated by `python -m bench{' --quick' if report['quick'] else ''}` on "
        f"{report['versions']['date']}; "
        f"{report['rounds']} interleaved rounds of {report['seconds']:g} s per run "
        f"(after {report['warmup']:g} s warm-up); raw numbers in `bench/results/{report['json_name']}` "
        "(not committed).",
        "### Machine and versions",
        versions_table(report["versions"]),
        "### Targets (ratios from runs of the same round)",
        targets_table(report["targets"]),
        "### CPU-bound ceiling",
        "The sum of each stage's measured CPU cost per message (all processes), and the throughput two "
        "busy cores would give at that cost. The audit stage is the straightforward one commit per "
        "message; the hub's group commit can beat it, so the hub may exceed this ceiling.",
        ceiling_table(report["ceiling"]["pg"], "PostgreSQL"),
        "",
        ceiling_table(report["ceiling"]["sqlite"], "SQLite"),
        "### All scenarios",
        "Medians over the rounds (min/max/spread of throughput across rounds); p50/p99 are medians of "
        "the per-run percentiles; CPU ms per message per process group from /proc over the measured "
        "window: `server` is the process under test (the hub, the bare server or the bare driver), "
        "`loadgen` the load generator; peak RSS is the server process's VmHWM.",
        summary_table(results),
        "",
        descriptions_list(results),
        "### Checks",
        "```\n" + json.dumps(report["checks"], indent=1) + "\n```",
    ]
    return "\n\n".join(parts)


def write_doc(section: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    DOC.write_text(replace_section(text, RESULTS_HEADING, section))


def main_run(args: argparse.Namespace) -> int:
    from bench import validate
    from bench.run import Budget, nproc, run_all

    budget = Budget.for_mode(args.quick)
    if args.rounds:
        budget.rounds = args.rounds
    if args.seconds:
        budget.seconds = args.seconds
    started = time.monotonic()
    versions = machine_and_versions()
    print(f"bench: {versions['machine']}", flush=True)
    validation = None
    if not args.only or any("valid" in o for o in args.only):
        print("validation (bench/validate.py, interleaved hub / bare lxml / xmlschema)", flush=True)
        validation = validate.run(*((2, 0.2, 0.3) if args.quick else (budget.rounds, 1.0, 1.5)))
        for name, m in validation["messages"].items():
            print(f"  {name}: hub / bare lxml = {m['ratio_hub_bare_median']:.2f}", flush=True)
    results, checks = run_all(
        budget,
        quick=args.quick,
        only=[o for o in args.only if "valid" not in o],
        log=lambda s: print(s, flush=True),
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_name = f"bench-{stamp}.json"
    report: dict[str, Any] = {
        "quick": args.quick,
        "rounds": budget.rounds,
        "seconds": budget.seconds,
        "warmup": budget.warmup,
        "versions": versions,
        "checks": checks,
        "json_name": json_name,
        "_results": results,
        "targets": targets(results, validation),
        "ceiling": {b: ceiling(results, validation, b, nproc()) for b in ("pg", "sqlite")},
    }
    section = render(report)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    raw = {k: v for k, v in report.items() if not k.startswith("_")}
    raw["targets"] = [t.__dict__ for t in report["targets"]]
    raw["results"] = results.to_json()
    raw["validation"] = validation
    raw["markdown"] = section
    (RESULTS_DIR / json_name).write_text(json.dumps(raw, indent=1, default=str) + "\n")
    print(section)
    if args.write_doc or (not args.quick and not args.only and not args.no_doc):
        write_doc(section)
        print(f"wrote {DOC.relative_to(REPO)}")
    print(f"raw results: bench/results/{json_name}; took {time.monotonic() - started:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("command", nargs="?", default="run", choices=["run", "list", "scale"])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 short rounds, fewer scenarios")
    ap.add_argument("--only", action="append", default=[], help="run scenarios whose name contains this")
    ap.add_argument("--rounds", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=0.0, help="measured seconds per run")
    ap.add_argument("--write-doc", action="store_true", help="write docs/performance.md even for --quick")
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/performance.md")
    ap.add_argument("--rows", type=int, default=10_000_000, help="scale: audit rows to seed")
    ap.add_argument("--keep-db", action="store_true", help="scale: keep the hub_bench_scale database")
    args = ap.parse_args(argv)
    if args.command == "list":
        from bench.run import HALF_LOAD, SCENARIOS

        for s in [*SCENARIOS, *HALF_LOAD]:
            print(f"{s.name:<32} {s.kind:<9} {'quick' if s.quick else 'full ':<6} {s.description}")
        return 0
    if args.command == "scale":
        from bench import scale

        return scale.main(args)
    return main_run(args)


if __name__ == "__main__":
    sys.exit(main())
