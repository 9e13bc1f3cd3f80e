"""`python -m bench scale`: the numbers that depend on size rather than speed.

1. Routing resolution with the full gemeente list and 100 / 1,000 / 10,000 aanbieders (bench/routing.py).
2. Audit look-ups with 10 million rows in PostgreSQL (bench/seed_audit.py; a few minutes of seeding).
3. Two gateway processes side by side (`hub serve` x 2, the same RabbitMQ exchange and PostgreSQL
   database): throughput and CPU per message per process, compared with one gateway (interleaved);
   latency at half of one gateway's maximum through one and through two;
   then no loss and no duplicates (every 202 is in the queue exactly once) and duplicate detection
   across processes (the same message posted to both at once: one 202, one 200 duplicate, one
   message_id, one copy in the queue).
4. Two delivery workers side by side (`hub worker` x 2 on one push receiver's queue), interleaved with
   one: messages/s and CPU per message per worker process; then, with one worker SIGKILLed half-way,
   every message delivered and recorded `delivered` exactly once in the audit trail (repeats at the
   receiver, which at-least-once allows, are counted).
Writes bench/results/scale-<time>.json and the "Scale" section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
from sqlalchemy import text

from bench.harness import Results, RunResult, replace_section, summary_table
from bench.loadgen import PLACEHOLDER
from bench.run import (
    AANBIEDER,
    GEMEENTE,
    Budget,
    Env,
    _delivery_env,
    _preload_hub,
    _receiver,
    _timed_arrivals,
    half_rate,
    loadgen,
    purge_queues,
    write_templates,
)
from hub.adapters.db.engine import create_engine
from tests.support.hubproc import (
    AMQP_URL,
    HubProcess,
    delete_topology,
    free_port,
    postgres_database,
    prepare_hub,
)

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "performance.md"
HEADING = "Scale (`python -m bench scale`)"


def routing(rounds: int) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "bench.routing", "--rounds", str(rounds)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return done.stdout.strip()


async def _drain(queue_name: str, expect: int, wait: float = 30.0) -> list[str]:
    """Consume the whole queue (auto-ack, prefetch 1000); message_ids in arrival order."""
    ids: list[str] = []
    done = asyncio.Event()
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1000)
        queue = await channel.declare_queue(queue_name, passive=True)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                ids.append(message.message_id or "")
                if len(ids) >= expect:
                    done.set()

        tag = await queue.consume(on_message)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), wait)
        await asyncio.sleep(0.5)  # anything beyond `expect` (a duplicate) arrives too
        await queue.cancel(tag)
    return ids


async def _same_message_to_both(hubs: list[HubProcess], template: bytes, n: int) -> dict[str, Any]:
    """n messages, each posted to both gateways at the same moment; each side retries a 503 after its
    Retry-After as a sender does (the other side may be accepting the message right then)."""
    outcomes: dict[str, int] = {}
    split_ids = 0
    async with aiohttp.ClientSession() as session:
        for i in range(n):
            body = template.replace(PLACEHOLDER, f"D{uuid.uuid4().hex[:7]}{i:04d}".encode())

            async def post(hub: HubProcess, body: bytes = body) -> tuple[int, dict[str, Any]]:
                headers = {
                    "Authorization": f"Bearer {hub.tokens['gemeente']}",
                    "Content-Type": "application/xml",
                }
                for _ in range(50):
                    async with session.post(hub.url + "/v1/berichten", data=body, headers=headers) as r:
                        status, answer = r.status, await r.json()
                        retry_after = float(r.headers.get("Retry-After", "1"))
                    if status != 503:
                        break
                    await asyncio.sleep(min(retry_after, 0.5))
                return status, answer

            answers = await asyncio.gather(*(post(h) for h in hubs))
            key = "+".join(sorted(str(s) for s, _ in answers))
            outcomes[key] = outcomes.get(key, 0) + 1
            if len({a.get("message_id") for status, a in answers if status in (200, 202)}) > 1:
                split_ids += 1
    return {"pairs": n, "status_pairs": outcomes, "pairs_with_two_message_ids": split_ids}


def _server_cpu_ms(res: RunResult) -> dict[str, float]:
    """CPU ms per message of the processes under test: the sum ("server") and each ("server#i")."""
    return {k: v * 1000 / max(res.ok, 1) for k, v in res.cpu_s.items() if k.startswith("server")}


def _rate_line(res: RunResult) -> str:
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in _server_cpu_ms(res).items())
    return f"{res.msgs_per_s:,.0f} msgs/s; CPU ms/msg {cpu}"


def _per_process_cpu(results: Results) -> dict[str, list[dict[str, float]]]:
    return {name: [_server_cpu_ms(r) for r in runs] for name, runs in results.runs.items()}


def two_gateways(rounds: int, seconds: float, log: Any) -> dict[str, Any]:
    budget = Budget(rounds=rounds, seconds=seconds, warmup=1.0, large_seconds=seconds)
    out: dict[str, Any] = {}
    with postgres_database() as url:
        tmp = Path(__import__("tempfile").mkdtemp(prefix="hub-bench-scale-"))
        tag = uuid.uuid4().hex[:6]
        first = prepare_hub(
            url,
            tmp,
            {"gemeente": GEMEENTE, "aanbieder": AANBIEDER},
            HUB_AMQP_EXCHANGE=f"bench.{tag}.two",
            HUB_AMQP_QUEUE_PREFIX=f"bench.{tag}.two.ontvanger.",
        )
        second = HubProcess(
            env=dict(first.env), port=free_port(), log_path=tmp / "hub2.log", tokens=first.tokens
        )
        hubs = [first, second]
        env = Env(budget, tmp, write_templates(tmp))
        env.hubs = {"one": first, "two": second}
        queue = first.queue(f"aanbieder:{AANBIEDER}")
        env.queues = [queue]
        try:
            for h in hubs:
                h.start()
            results = Results()
            token = first.tokens["gemeente"]
            urls = [h.url + "/v1/berichten" for h in hubs]
            pids = [h.proc.pid for h in hubs if h.proc is not None]

            def interleaved(scenario: str, concurrency: int, rate: float | None) -> None:
                """One gateway and two, in alternating order, `rounds` times."""
                for r in range(rounds):
                    order = ["1 gateway", "2 gateways"] if r % 2 == 0 else ["2 gateways", "1 gateway"]
                    for variant in order:
                        two = variant == "2 gateways"
                        res = loadgen(
                            env,
                            urls if two else urls[:1],
                            "4k",
                            concurrency,
                            token=token,
                            server_pids=pids if two else pids[:1],
                            rate=rate,
                            count_for=variant,
                        )
                        results.add(f"{scenario}, {variant}", res)
                        p99 = res.latency_ms.get("p99", 0.0)
                        log(f"  round {r + 1} {scenario}, {variant}: {_rate_line(res)}; p99 {p99:.1f} ms")
                        purge_queues(env)

            interleaved("hub.pg.4k.c64", 64, None)
            # Latency at half of one gateway's maximum, through one gateway and through two: does the
            # tail come from one gateway process being busy (docs/performance.md)?
            out["half_rate"] = half_rate(results.runs["hub.pg.4k.c64, 1 gateway"])
            interleaved("hub.pg.4k.half-load", 0, out["half_rate"])
            out["table"] = summary_table(results)
            out["per_process_cpu_ms"] = _per_process_cpu(results)
            # Guarantees: a fixed number of fresh messages through both, then everything drained.
            fresh = 400
            before = env.answered.get("2 gateways", 0)
            res = loadgen(env, urls, "4k", 16, token=token, server_pids=pids, seconds=3.0, count_for="check")
            sent_ok = env.answered["check"]
            template = env.templates["4k"].read_bytes()
            dup = asyncio.run(_same_message_to_both(hubs, template, 50))
            expect = sent_ok + 50
            ids = asyncio.run(_drain(queue, expect))
            out["guarantees"] = {
                "answered_2xx_fresh": sent_ok,
                "same_message_to_both": dup,
                "expected_in_queue": expect,
                "in_queue": len(ids),
                "distinct_message_ids_in_queue": len(set(ids)),
                "lost": max(0, expect - len(set(ids))),
                "duplicates_in_queue": len(ids) - len(set(ids)),
                "ok": len(ids) == expect == len(set(ids))
                and dup["pairs_with_two_message_ids"] == 0
                and dup["status_pairs"].get("200+202", 0) == dup["pairs"],
            }
            del fresh, before, res
        finally:
            for h in hubs:
                h.stop()
            asyncio.run(delete_topology(first))
    return out


async def _delivered_trail(url: str, prefix: str) -> dict[str, int]:
    """Of the messages whose Identificatie starts with `prefix`: rows by status, and 'delivered'
    events per message (each must have exactly one)."""
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            statuses: dict[str, int] = dict(
                (
                    await conn.execute(
                        text(
                            "SELECT status, count(*) FROM berichten"
                            " WHERE identificatie LIKE :p GROUP BY status"
                        ),
                        {"p": prefix + "%"},
                    )
                ).all()
            )
            per_message = (
                await conn.execute(
                    text(
                        "SELECT count(*) FILTER (WHERE n = 1), count(*) FILTER (WHERE n > 1) FROM ("
                        " SELECT b.message_id, count(e.seq) AS n FROM berichten b"
                        " LEFT JOIN audit_events e ON e.message_id = b.message_id AND e.kind = 'delivered'"
                        " WHERE b.identificatie LIKE :p GROUP BY b.message_id) AS t"
                    ),
                    {"p": prefix + "%"},
                )
            ).one()
    finally:
        await engine.dispose()
    return {
        **{f"rows_{k}": int(v) for k, v in statuses.items()},
        "one_delivered_event": int(per_message[0]),
        "several_delivered_events": int(per_message[1]),
    }


def two_workers(rounds: int, seconds: float, log: Any) -> dict[str, Any]:
    """One and two `hub worker` processes on the same receiver queue, interleaved; then a kill."""
    budget = Budget(rounds=rounds, seconds=seconds, warmup=1.0, large_seconds=seconds)
    out: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        tmp = Path(__import__("tempfile").mkdtemp(prefix="hub-bench-workers-"))
        env = Env(budget, tmp, {}, stack=stack)
        d = _delivery_env(env)
        n = max(200, int(400 * seconds))
        results = Results()
        for r in range(rounds):
            order = [1, 2] if r % 2 == 0 else [2, 1]
            for workers in order:
                _receiver(d, "reset")
                _preload_hub(env, d, "push", n)
                procs = [d.hub.start_worker(name=f"worker{i}", metrics_port=0) for i in range(workers)]
                try:
                    res = _timed_arrivals(d, n, [p.pid for p in procs])
                finally:
                    d.hub.stop_workers()
                name = f"delivery.push, {workers} worker{'s' if workers > 1 else ''}"
                results.add(name, res)
                log(f"  round {r + 1} {workers} worker(s): {_rate_line(res)}")
        out["table"] = summary_table(results)
        out["per_process_cpu_ms"] = _per_process_cpu(results)
        # The guarantee: two workers, one killed (SIGKILL) once a third has arrived.
        _receiver(d, "reset")
        prefix = _preload_hub(env, d, "push", n)
        procs = [d.hub.start_worker(name=f"worker-kill{i}", metrics_port=0) for i in range(2)]
        deadline = time.monotonic() + 120
        while _receiver(d, "stats")["n"] < n // 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        procs[0].kill()
        procs[0].wait(10)
        while _receiver(d, "stats")["n"] < n and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.0)  # repeats and the last commits land
        d.hub.stop_workers()
        stats = _receiver(d, "stats")
        trail = asyncio.run(_delivered_trail(d.hub.env["HUB_DATABASE_URL"], prefix))
        out["guarantees"] = {
            "messages": n,
            "arrived_distinct": stats["n"],
            "posts_at_receiver": int(stats["posts"]),
            "repeats_at_receiver": int(stats["posts"]) - stats["n"],
            "trail": trail,
            "ok": stats["n"] == n
            and trail.get("rows_delivered", 0) == n
            and trail["one_delivered_event"] == n
            and trail["several_delivered_events"] == 0,
        }
    return out


def render(report: dict[str, Any]) -> str:
    seed = report.get("audit", {})
    lines = [
        f"Measured by `python -m bench scale` on {report['date']}; raw numbers in "
        f"`bench/results/{report['json_name']}`.",
        "",
        "### Routing resolution",
        "",
        "`bench/routing.py`: µs per `RoutingRules.resolve` with the full gemeente list plus N aanbieders "
        "(median of rounds):",
        "",
        "```",
        report.get("routing", "not run"),
        "```",
        "",
    ]
    if seed:
        lines += [
            f"### Audit look-ups with {seed['rows']:,} rows (PostgreSQL)",
            "",
            f"Seeding {seed['rows']:,} berichten + {seed['rows']:,} audit events: load "
            f"{seed['seed']['load_s']:.0f} s, indexes {seed['seed']['index_s']:.0f} s, analyze "
            f"{seed['seed']['analyze_s']:.0f} s; database {seed['seed']['database_gib']:.1f} GiB "
            f"({'kept' if seed['kept_db'] else 'dropped afterwards'}).",
            "",
            "| look-up (hub's SqlAlchemyAuditStore) | median ms | p99 ms | calls |",
            "|---|---:|---:|---:|",
        ]
        for name, m in seed["lookups"].items():
            lines.append(f"| {name} | {m['median_ms']:.2f} | {m['p99_ms']:.2f} | {m['calls']:.0f} |")
        lines.append("")
    two = report.get("two_gateways")
    if two:
        lines += [
            "### Two gateway processes",
            "",
            "Two `hub serve` processes on the same PostgreSQL database and RabbitMQ exchange, the load "
            "generator alternating its 64 senders over both; interleaved with one gateway. Then open "
            f"loop at half of one gateway's median maximum ({two.get('half_rate', 0):,.0f} requests/s) "
            "through one gateway and through both (`half-load` rows). `server` is the sum of the "
            "gateways; per process below.",
            "",
            two["table"],
            "",
            "CPU ms per message per gateway process, per round:",
            "",
            "```",
            json.dumps(two["per_process_cpu_ms"], indent=1),
            "```",
            "",
            "Guarantees (fresh messages through both, then 50 messages each posted to both at once, "
            "then the queue drained):",
            "",
            "```",
            json.dumps(two["guarantees"], indent=1),
            "```",
            "",
        ]
    workers = report.get("two_workers")
    if workers:
        lines += [
            "### Two delivery workers",
            "",
            "N messages posted through `hub serve` (PostgreSQL) to a push receiver while no worker runs; "
            "then one or two `hub worker` processes deliver them (interleaved rounds). `server` is the "
            "sum of the workers; per process below.",
            "",
            workers["table"],
            "",
            "CPU ms per message per worker process, per round:",
            "",
            "```",
            json.dumps(workers["per_process_cpu_ms"], indent=1),
            "```",
            "",
            "Guarantees (two workers, the first SIGKILLed once a third of the messages had arrived; the "
            "trail counts `delivered` events per message in the database):",
            "",
            "```",
            json.dumps(workers["guarantees"], indent=1),
            "```",
        ]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from bench import seed_audit

    started = time.monotonic()
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M %Z")}
    parts = args.only or ["routing", "gateways", "workers", "audit"]

    def wanted(part: str) -> bool:
        return any(o in part for o in parts)

    if wanted("routing"):
        print("routing (bench/routing.py)", flush=True)
        report["routing"] = routing(3)
        print(report["routing"], flush=True)
    if wanted("gateways"):
        print("two gateways", flush=True)
        report["two_gateways"] = two_gateways(3, 6.0, lambda s: print(s, flush=True))
        print(json.dumps(report["two_gateways"]["guarantees"], indent=1), flush=True)
    if wanted("workers"):
        print("two workers", flush=True)
        report["two_workers"] = two_workers(3, 2.0, lambda s: print(s, flush=True))
        print(json.dumps(report["two_workers"]["guarantees"], indent=1), flush=True)
    if wanted("audit"):
        report["audit"] = asyncio.run(
            seed_audit.run(args.rows, 500, args.keep_db, log=lambda s: print(s, flush=True))
        )
        print(json.dumps(report["audit"], indent=1), flush=True)
    report["json_name"] = f"scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out = REPO / "bench" / "results" / report["json_name"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    if not args.no_doc and not args.only:  # a part alone does not replace the whole section
        doc = DOC.read_text() if DOC.exists() else "# Performance\n"
        DOC.write_text(replace_section(doc, HEADING, render(report)))
        print(f"wrote {DOC.relative_to(REPO)}")
    print(f"took {time.monotonic() - started:.0f} s")
    return 0
