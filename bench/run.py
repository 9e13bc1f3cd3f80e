"""The main benchmark run: the hub against the limits of its own parts, interleaved, in one go.

Everything under test runs as its own process: two real hubs (`hub serve`, PostgreSQL and SQLite, each
with its own database and AMQP exchange/queue prefix, started by tests/support/hubproc.py), the bare
aiohttp server, and the bare pipelines; the load generator (bench/loadgen.py) and the bare drivers
(bench/bare.py) are separate processes too. See docs/performance.md for what each scenario means.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import aio_pika

from bench.harness import Registry, Results, RunResult, run_rounds
from bench.loadgen import PLACEHOLDER
from tests.support.berichten import declaratie, example, with_header
from tests.support.hubproc import (
    AMQP_URL,
    HubProcess,
    delete_topology,
    free_port,
    postgres_database,
    prepare_hub,
)

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
GEMEENTE, AANBIEDER = "0363", "12345678"


@dataclass
class Budget:
    rounds: int
    seconds: float
    warmup: float
    large_seconds: float  # per run of the 1 MB scenarios

    @classmethod
    def for_mode(cls, quick: bool) -> Budget:
        return cls(rounds=2, seconds=2.0, warmup=0.5, large_seconds=2.5) if quick else cls(5, 5.0, 1.0, 5.0)


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/berichten"


@dataclass
class Env:
    """Everything the scenarios run against; built once by `environment()`."""

    budget: Budget
    tmp: Path
    templates: dict[str, Path]
    hubs: dict[str, HubProcess] = field(default_factory=dict)  # "pg", "sqlite"
    servers: dict[str, Server] = field(default_factory=dict)  # "202", "pipeline.pg", "pipeline.sqlite"
    dbs: dict[str, str] = field(default_factory=dict)  # "bare.pg", "bare.sqlite"
    queues: list[str] = field(default_factory=list)  # purged after every run
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    runs: int = 0
    answered: dict[str, int] = field(default_factory=dict)  # hub -> 202/200 answers, all runs
    half_rate: dict[str, float] = field(default_factory=dict)  # hub -> requests/s for the p99 runs

    def prefix(self) -> str:
        """A fresh 4-character Identificatie prefix per run: messages never repeat within a hub."""
        self.runs += 1
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"
        n, out = self.runs, ""
        for _ in range(3):
            n, d = divmod(n, 36)
            out = digits[d] + out
        return "B" + out

    def hub_url(self, which: str) -> str:
        return self.hubs[which].url + "/v1/berichten"


def _wait_port(port: int, proc: subprocess.Popen[bytes], wait: float = 30.0) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not listen on {port} within {wait}s")


def _start_bare(env: Env, name: str, *args: str) -> Server:
    port = free_port()
    log = (env.tmp / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        [PY, "-m", "bench.bare", *args, "--port", str(port)], cwd=REPO, stdout=log, stderr=log
    )
    log.close()
    _wait_port(port, proc)
    server = Server(name, proc, port)
    env.servers[name] = server
    return server


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def write_templates(folder: Path) -> dict[str, Path]:
    """The 4 KB WMO301 and the ~1 MB WMO323 with the Identificatie placeholder the load generator fills."""
    ident = PLACEHOLDER.decode()
    small = with_header(example("iwmo-3.2", "WMO301"), identificatie=ident, dagtekening=date.today())
    large = declaratie("iwmo", 1450, identificatie=ident, dagtekening=date.today())  # ~1.0 MB
    out = {"4k": folder / "wmo301.xml", "1m": folder / "wmo323.xml"}
    out["4k"].write_bytes(small)
    out["1m"].write_bytes(large)
    return out


@contextmanager
def environment(budget: Budget, *, pipelines: bool = True) -> Iterator[Env]:
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hub-bench-")))
        env = Env(budget, tmp, write_templates(tmp))
        parties = {"gemeente": GEMEENTE, "aanbieder": AANBIEDER}
        pg_url = stack.enter_context(postgres_database())
        for which, url in (("pg", pg_url), ("sqlite", f"sqlite+aiosqlite:///{tmp / 'hub.sqlite'}")):
            folder = tmp / which
            folder.mkdir()
            hub = prepare_hub(
                url,
                folder,
                parties,
                HUB_AMQP_EXCHANGE=f"bench.{env.tag}.{which}",
                HUB_AMQP_QUEUE_PREFIX=f"bench.{env.tag}.{which}.ontvanger.",
            )
            hub.start()
            stack.callback(_delete_topology, hub)
            stack.callback(hub.stop)
            env.hubs[which] = hub
            env.queues += [hub.queue(f"aanbieder:{AANBIEDER}"), hub.queue(f"gemeente:{GEMEENTE}")]
        stack.callback(_stop_servers, env)
        _start_bare(env, "202", "server202")
        env.dbs["bare.pg"] = stack.enter_context(postgres_database())
        env.dbs["bare.sqlite"] = f"sqlite+aiosqlite:///{tmp / 'bare.sqlite'}"
        if pipelines:
            for which in ("pg", "sqlite"):
                name = f"bench.{env.tag}.bare.{which}"
                _start_bare(
                    env, f"pipeline.{which}", "pipeline", "--db", env.dbs[f"bare.{which}"], "--name", name
                )
                env.queues.append(name)
        env.queues.append(f"bench.{env.tag}.bare.publish")
        stack.callback(lambda: asyncio.run(_delete_bare(env)))
        yield env


def _delete_topology(hub: HubProcess) -> None:
    asyncio.run(delete_topology(hub))


def _stop_servers(env: Env) -> None:
    for server in env.servers.values():
        _stop(server.proc)


async def _delete_bare(env: Env) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for name in env.queues:
            if ".bare." in name:
                try:
                    await channel.queue_delete(name)
                    await channel.exchange_delete(name)
                except aio_pika.exceptions.AMQPError:
                    channel = await connection.channel()


async def _purge(names: list[str]) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for name in names:
            try:
                queue = await channel.declare_queue(name, passive=True)
                await queue.purge()
            except aio_pika.exceptions.AMQPError:
                channel = await connection.channel()


def purge_queues(env: Env) -> None:
    """Empty the queues after each run, so no run pays for the backlog of the one before."""
    try:
        asyncio.run(_purge(env.queues))
    except Exception as exc:  # RabbitMQ away for a moment: the next run reports it, the harness goes on
        print(f"  (could not purge the queues: {type(exc).__name__}: {exc})", flush=True)


def _subprocess_json(args: list[str], timeout: float) -> dict[str, Any]:
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} failed: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def loadgen(
    env: Env,
    urls: list[str],
    template: str,
    concurrency: int,
    *,
    token: str = "",
    server_pids: list[int],
    rate: float | None = None,
    seconds: float | None = None,
    count_for: str | None = None,
) -> RunResult:
    spec = {
        "urls": urls,
        "template": str(env.templates[template]),
        "concurrency": concurrency,
        "seconds": seconds or env.budget.seconds,
        "warmup": env.budget.warmup,
        "rate": rate,
        "token": token,
        "prefix": env.prefix(),
        "server_pids": server_pids,
    }
    raw = _subprocess_json([PY, "-m", "bench.loadgen", json.dumps(spec)], timeout=300)
    if count_for is not None:
        env.answered[count_for] = env.answered.get(count_for, 0) + int(raw.get("answered", 0))
    return RunResult.from_json(raw)


def driver(env: Env, what: str, spec: dict[str, Any]) -> RunResult:
    spec = {"warmup": env.budget.warmup, "seconds": env.budget.seconds, **spec}
    return RunResult.from_json(_subprocess_json([PY, "-m", "bench.bare", what, json.dumps(spec)], 300))


# -- scenarios ------------------------------------------------------------------------------------

SCENARIOS: Registry[Env] = Registry()


def _pid(proc: subprocess.Popen[bytes] | None) -> list[int]:
    return [proc.pid] if proc is not None else []


def _hub_run(env: Env, which: str, size: str, concurrency: int) -> RunResult:
    hub = env.hubs[which]
    token = hub.tokens["gemeente" if size == "4k" else "aanbieder"]
    seconds = env.budget.large_seconds if size == "1m" else env.budget.seconds
    return loadgen(
        env,
        [env.hub_url(which)],
        size,
        concurrency,
        token=token,
        server_pids=_pid(hub.proc),
        seconds=seconds,
        count_for=which,
    )


def _register_hub_intake() -> None:
    for which in ("pg", "sqlite"):
        for size in ("4k", "1m"):
            for c in (1, 16, 64):
                if which == "sqlite" and size == "1m" and c != 16:
                    continue
                quick = c == 64 or (which == "pg" and c == 1 and size == "4k") or (size == "1m" and c == 16)
                label = "4 KB WMO301" if size == "4k" else "~1.0 MB WMO323 (1,450 prestaties)"
                SCENARIOS.add_fn(
                    f"hub.{which}.{size}.c{c}",
                    "hub",
                    f"`hub serve` on {'PostgreSQL' if which == 'pg' else 'SQLite'}: POST {label} to 202 "
                    f"(audit committed, publish confirmed, 'forwarded' committed), {c} concurrent senders",
                    functools.partial(_hub_run, which=which, size=size, concurrency=c),
                    quick=quick,
                )


@SCENARIOS.scenario(
    "bare.aiohttp202.4k.c64",
    "baseline",
    "bare aiohttp server: read the 4 KB body, answer 202 (limited by the Python load "
    "generator, not the server: see its CPU)",
)
def bare_202(env: Env) -> RunResult:
    server = env.servers["202"]
    return loadgen(env, [server.url], "4k", 64, server_pids=[server.proc.pid])


@SCENARIOS.scenario(
    "bare.publish.4k.c64",
    "baseline",
    "bare aio-pika: persistent 4 KB publish to a quorum queue, awaiting its confirm, "
    "64 in flight on one confirming channel",
)
def bare_publish(env: Env) -> RunResult:
    return driver(
        env,
        "publish",
        {
            "amqp": AMQP_URL,
            "name": f"bench.{env.tag}.bare.publish",
            "template": str(env.templates["4k"]),
            "concurrency": 64,
        },
    )


def _bare_insert(env: Env, which: str) -> RunResult:
    return driver(
        env,
        "insert",
        {
            "db": env.dbs[f"bare.{which}"],
            "template": str(env.templates["4k"]),
            "concurrency": 64 if which == "pg" else 8,
        },
    )


@SCENARIOS.scenario(
    "bare.insert.pg.c64",
    "baseline",
    "bare SQLAlchemy Core: one 11-column audit row per transaction, 64 callers, 24 connections, PostgreSQL",
)
def bare_insert_pg(env: Env) -> RunResult:
    return _bare_insert(env, "pg")


@SCENARIOS.scenario(
    "bare.insert.sqlite.c8",
    "baseline",
    "bare SQLAlchemy Core: one audit row per transaction, 8 callers, SQLite (WAL, "
    "synchronous=FULL, the hub's engine settings)",
)
def bare_insert_sqlite(env: Env) -> RunResult:
    return _bare_insert(env, "sqlite")


def _pipeline(env: Env, which: str) -> RunResult:
    server = env.servers[f"pipeline.{which}"]
    return loadgen(env, [server.url], "4k", 64, server_pids=[server.proc.pid])


@SCENARIOS.scenario(
    "bare.pipeline.pg.4k.c64",
    "baseline",
    "the straightforward design on PostgreSQL: one aiohttp handler doing lxml parse+validate, "
    "one committed audit row, one awaited confirmed publish, 202; 64 senders",
)
def bare_pipeline_pg(env: Env) -> RunResult:
    return _pipeline(env, "pg")


@SCENARIOS.scenario(
    "bare.pipeline.sqlite.4k.c64",
    "baseline",
    "the same straightforward design with its audit row in SQLite (WAL, synchronous=FULL)",
)
def bare_pipeline_sqlite(env: Env) -> RunResult:
    return _pipeline(env, "sqlite")


def _delivery_missing() -> str | None:
    entry = REPO / "hub" / "entrypoints"
    worker = (entry / "worker.py").exists() or (entry / "commands" / "worker.py").exists()
    web = (entry / "web.py").read_text()
    if not worker or "/v1/mailbox" not in web:
        return "`hub worker` and `/v1/mailbox` do not exist yet (delivery is being built)"
    return (
        "`hub worker` and `/v1/mailbox` landed while this harness was written; their scenario "
        "(and the bare consume-and-POST baseline) is the next step"
    )


def _not_yet(env: Env) -> RunResult:
    raise RuntimeError("delivery scenarios are registered as unavailable")


for _name, _text in (
    ("delivery.push", "queue -> `hub worker` -> push receiver (HTTP), messages/s"),
    ("delivery.mailbox", "queue -> `/v1/mailbox` fetch + ack, messages/s"),
):
    SCENARIOS.add_fn(_name, "delivery", _text, _not_yet, unavailable=_delivery_missing)
_register_hub_intake()


def half_load(env: Env, which: str) -> RunResult:
    hub = env.hubs[which]
    return loadgen(
        env,
        [env.hub_url(which)],
        "4k",
        0,
        token=hub.tokens["gemeente"],
        server_pids=_pid(hub.proc),
        rate=env.half_rate[which],
        count_for=which,
    )


HALF_LOAD: Registry[Env] = Registry()
for _which in ("pg", "sqlite"):
    HALF_LOAD.add_fn(
        f"hub.{_which}.4k.half-load",
        "hub",
        f"open loop (fixed schedule) at half of hub.{_which}.4k.c64's median throughput; latency from the "
        "scheduled start",
        functools.partial(half_load, which=_which),
    )


def check_durable(env: Env) -> dict[str, Any]:
    """Every 202/200 the hubs answered has its row committed as 'forwarded' (and none is left behind)."""
    from sqlalchemy import func, select
    from sqlalchemy.ext.asyncio import create_async_engine

    from hub.adapters.db.tables import berichten

    async def count(url: str) -> dict[str, int]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(berichten.c.status, func.count()).group_by(berichten.c.status)
                )
                return {str(s): int(n) for s, n in rows}
        finally:
            await engine.dispose()

    out: dict[str, Any] = {}
    for which, hub in env.hubs.items():
        statuses = asyncio.run(count(hub.env["HUB_DATABASE_URL"]))
        answered = env.answered.get(which, 0)
        out[which] = {
            "answered_2xx": answered,
            "rows_by_status": statuses,
            "ok": statuses.get("forwarded", 0) >= answered and set(statuses) <= {"forwarded"},
        }
    return out


def run_all(
    budget: Budget, *, quick: bool, only: list[str], log: Any = print
) -> tuple[Results, dict[str, Any]]:
    """Baselines and hub intake interleaved; then the half-load p99 runs; returns results and checks."""
    results = Results()
    checks: dict[str, Any] = {}
    scenarios = SCENARIOS.select(quick=quick, only=only)
    with environment(budget) as env:
        log(
            f"environment ready in {env.tmp} (hubs: pg on :{env.hubs['pg'].port}, "
            f"sqlite on :{env.hubs['sqlite'].port})"
        )
        run_rounds(scenarios, env, budget.rounds, between=purge_queues, log=log, results=results)
        for which in ("pg", "sqlite"):
            runs = results.runs.get(f"hub.{which}.4k.c64")
            if runs:
                env.half_rate[which] = sorted(r.msgs_per_s for r in runs)[len(runs) // 2] / 2
        halves = [
            s for s in HALF_LOAD.select(quick=quick, only=only) if s.name.split(".")[1] in env.half_rate
        ]
        if halves:
            log(f"half-load runs at {env.half_rate} requests/s")
            run_rounds(halves, env, budget.rounds, between=purge_queues, log=log, results=results)
        checks["half_rate"] = dict(env.half_rate)
        checks["durable"] = check_durable(env)
    return results, checks


def nproc() -> int:
    return os.cpu_count() or 1
