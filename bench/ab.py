"""A/B of one change: this checkout's hub against the hub of an earlier commit, interleaved.

    python -m bench.ab --base HEAD~1                  # PostgreSQL, 4 KB WMO301, 64 senders, 5 rounds
    python -m bench.ab --base 1eeb86f --db sqlite --rounds 3 --seconds 4

This machine's speed drifts by up to 60 % within minutes (perf-limits.md), so a change is judged by
the median of per-round ratios of two hubs run seconds apart, never by numbers from different runs.
Both hubs run at once, each on its own fresh database and AMQP prefix; the base runs from a
`git worktree` of the base commit (its `hub` package first on PYTHONPATH), the order alternates A/B,
B/A. Prints one line per run and, last, a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench.harness import RunResult
from bench.run import (
    GEMEENTE,
    Budget,
    Env,
    _delete_topology,
    loadgen,
    purge_queues,
    write_templates,
)
from tests.support.hubproc import HubProcess, postgres_database, prepare_hub

REPO = Path(__file__).resolve().parent.parent


def _worktree(stack: ExitStack, base: str, tmp: Path) -> Path:
    path = tmp / "base"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), base],
        check=True,
        capture_output=True,
    )
    stack.callback(
        lambda: subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
            check=False,
            capture_output=True,
        )
    )
    return path


def _hub(stack: ExitStack, env: Env, name: str, db: str, code: Path | None) -> HubProcess:
    folder = env.tmp / name
    folder.mkdir()
    url = (
        stack.enter_context(postgres_database())
        if db == "pg"
        else f"sqlite+aiosqlite:///{folder / 'hub.sqlite'}"
    )
    extra = {
        "HUB_AMQP_EXCHANGE": f"bench.{env.tag}.{name}",
        "HUB_AMQP_QUEUE_PREFIX": f"bench.{env.tag}.{name}.ontvanger.",
    }
    if code is not None:
        extra["PYTHONPATH"] = str(code)
        extra["HUB_ROUTING_RULES"] = str(code / "routing_rules")
        extra["HUB_SCHEMA_RELEASES"] = str(code / "xsd" / "releases.toml")
    hub = prepare_hub(url, folder, {"gemeente": GEMEENTE}, **extra)
    hub.start()
    stack.callback(_delete_topology, hub)
    stack.callback(hub.stop)
    env.queues.append(hub.queue(f"aanbieder:{'12345678'}"))
    return hub


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", required=True, help="the commit to compare against (A)")
    parser.add_argument("--db", choices=("pg", "sqlite"), default="pg")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=None, help="open loop at this many requests/s")
    args = parser.parse_args(argv)

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hub-ab-")))
        env = Env(Budget(args.rounds, args.seconds, 1.0, args.seconds), tmp, write_templates(tmp))
        base = _worktree(stack, args.base, tmp)
        hubs = {"A": _hub(stack, env, "a", args.db, base), "B": _hub(stack, env, "b", args.db, None)}
        runs: dict[str, list[RunResult]] = {"A": [], "B": []}
        for round_ in range(args.rounds):
            for side in ("A", "B") if round_ % 2 == 0 else ("B", "A"):
                hub = hubs[side]
                assert hub.proc is not None
                result = loadgen(
                    env,
                    [hub.url + "/v1/berichten"],
                    "4k",
                    0 if args.rate else args.concurrency,
                    token=hub.tokens["gemeente"],
                    server_pids=[hub.proc.pid],
                    rate=args.rate,
                )
                purge_queues(env)
                runs[side].append(result)
                print(
                    f"round {round_} {side}: {result.msgs_per_s:,.0f} msgs/s,"
                    f" p50 {result.latency_ms.get('p50', 0):.1f}"
                    f" p99 {result.latency_ms.get('p99', 0):.1f} ms, CPU ms/msg: server "
                    f"{_cpu_ms(result):.3f}, postgres {_cpu_ms(result, 'postgres'):.3f},"
                    f" rabbitmq {_cpu_ms(result, 'rabbitmq'):.3f}, errors {result.errors()}",
                    flush=True,
                )
        ratios = [
            b.msgs_per_s / a.msgs_per_s for a, b in zip(runs["A"], runs["B"], strict=True) if a.msgs_per_s
        ]
        summary = {
            "base": args.base,
            "db": args.db,
            "ratio_b_over_a": statistics.median(ratios) if ratios else None,
            "per_round": [round(r, 3) for r in ratios],
            **{
                side: {
                    "msgs_per_s": statistics.median(r.msgs_per_s for r in rs),
                    "p99_ms": statistics.median(r.latency_ms.get("p99", 0.0) for r in rs),
                    "server_cpu_ms": statistics.median(_cpu_ms(r) for r in rs),
                    # Machine-wide, but the other hub is idle while this one runs: a change that
                    # moves work into the database shows here, not in the server's CPU.
                    "postgres_cpu_ms": statistics.median(_cpu_ms(r, "postgres") for r in rs),
                    "rabbitmq_cpu_ms": statistics.median(_cpu_ms(r, "rabbitmq") for r in rs),
                }
                for side, rs in runs.items()
            },
        }
        print(json.dumps(summary))


def _cpu_ms(r: RunResult, group: str = "server") -> float:
    return r.cpu_ms_per_msg(group) or 0.0


if __name__ == "__main__":
    main()
