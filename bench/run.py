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
import shutil
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
import aiohttp
import asyncpg

from bench.harness import Registry, Results, RunResult, run_rounds
from bench.loadgen import PLACEHOLDER
from bench.procs import CpuMeter
from hub.settings import Settings
from tests.support.berichten import declaratie, example, with_header
from tests.support.hubproc import (
    AMQP_URL,
    PG_ADMIN_DSN,
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
        # The full run: 5 rounds of 3.5 s measured per run keep it at ~9 minutes ("well under 15").
        return cls(rounds=2, seconds=2.0, warmup=0.5, large_seconds=2.5) if quick else cls(5, 3.5, 1.0, 4.0)


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
    stack: ExitStack | None = None  # for what scenarios start lazily (the delivery hub and receiver)
    delivery: DeliveryEnv | None = None

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
def environment(budget: Budget, *, pipelines: bool = True, intake: bool = True) -> Iterator[Env]:
    """intake=False: only the temporary folder and templates (the delivery scenarios start their own)."""
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hub-bench-")))
        env = Env(budget, tmp, write_templates(tmp), stack=stack)
        if not intake:
            yield env
            return
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
    trace: Path | None = None,
) -> RunResult:
    """One load-generator run; with `trace`, its per-request timings are written there as JSON."""
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
        "trace": str(trace) if trace else None,
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
    result = loadgen(
        env,
        [env.hub_url(which)],
        size,
        concurrency,
        token=token,
        server_pids=_pid(hub.proc),
        seconds=seconds,
        count_for=which,
    )
    if size == "1m":
        checkpoint()
    return result


def checkpoint() -> None:
    """After a run of 1 MB messages (~60 MB/s of bodies): a CHECKPOINT, outside any measured window,
    so that the WAL and dirty pages it leaves are not written out during the next run, on the same
    PostgreSQL server (they made a later run's `postgres` CPU per message twice as high)."""

    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=10)
        try:
            await conn.execute("CHECKPOINT")
        finally:
            await conn.close()

    try:
        asyncio.run(run())
    except Exception as exc:  # PostgreSQL away for a moment: the next run reports it
        print(f"  (could not checkpoint: {type(exc).__name__}: {exc})", flush=True)


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
                    f"(audit committed and publish confirmed before the 202; 'forwarded' committed "
                    f"right after), {c} concurrent senders",
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
    """Why the delivery scenarios cannot run, or None: `hub worker` and the mailbox routes exist."""
    entry = REPO / "hub" / "entrypoints"
    worker = (entry / "worker.py").exists() or (entry / "commands" / "worker.py").exists()
    mailbox = any("/v1/mailbox" in f.read_text() for f in entry.rglob("*.py"))
    if not worker or not mailbox:
        return "`hub worker` and `/v1/mailbox` do not exist yet (delivery is being built)"
    return None


# -- delivery -------------------------------------------------------------------------------------

PUSH_PARTY, MAILBOX_PARTY = AANBIEDER, "87654321"
# The worker's prefetch per receiver queue (HUB_WORKER_PREFETCH); the bare loop gets the same, so
# both hold as many messages in hand at once.
DELIVERY_PREFETCH = Settings().worker_prefetch
PUSH_CONNECTIONS = Settings().push_connections


@dataclass
class DeliveryEnv:
    """A hub on PostgreSQL whose aanbieder PUSH_PARTY takes push delivery to a local receiver process
    and MAILBOX_PARTY fetches its mailbox; the same receiver serves the bare consume-and-POST loop."""

    hub: HubProcess
    receiver: Server
    templates: dict[str, Path]  # "push", "mailbox": 4 KB WMO301 to each party
    bare_queue: str

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.receiver.port}/inbox"


def delivery_count(env: Env) -> int:
    """Messages per delivery run: ~2-3 s of delivery at ~600 msgs/s in a full run."""
    return max(200, int(400 * env.budget.seconds))


def _delivery_env(env: Env) -> DeliveryEnv:
    if env.delivery is not None:
        return env.delivery
    assert env.stack is not None
    stack = env.stack
    folder = env.tmp / "delivery"
    folder.mkdir()
    port = free_port()
    log = (folder / "receiver.log").open("ab")
    proc = subprocess.Popen(
        [PY, "-m", "bench.delivery", "receiver", "--port", str(port)], cwd=REPO, stdout=log, stderr=log
    )
    log.close()
    stack.callback(_stop, proc)
    _wait_port(port, proc)
    receiver = Server("receiver", proc, port)
    rules = folder / "routing_rules"
    shutil.copytree(REPO / "routing_rules", rules)
    (rules / "channels.csv").write_text(
        "party,kanaal,endpoint,valid_from,valid_until\n"
        f"aanbieder:{PUSH_PARTY},push,http://127.0.0.1:{port}/inbox,,\n"
        f"aanbieder:{MAILBOX_PARTY},mailbox,,,\n"
    )
    url = stack.enter_context(postgres_database())
    hub = prepare_hub(
        url,
        folder,
        {"gemeente": GEMEENTE, "mailbox": MAILBOX_PARTY},
        HUB_ROUTING_RULES=str(rules),
        HUB_AMQP_EXCHANGE=f"bench.{env.tag}.delivery",
        HUB_AMQP_QUEUE_PREFIX=f"bench.{env.tag}.delivery.ontvanger.",
        HUB_WORKER_PREFETCH=str(DELIVERY_PREFETCH),
    )
    hub.start()
    stack.callback(_delete_topology, hub)
    stack.callback(hub.stop)
    ident = PLACEHOLDER.decode()
    templates = {}
    for name, party in (("push", PUSH_PARTY), ("mailbox", MAILBOX_PARTY)):
        xml = with_header(
            example("iwmo-3.2", "WMO301"), ontvanger=party, identificatie=ident, dagtekening=date.today()
        )
        templates[name] = folder / f"wmo301-{name}.xml"
        templates[name].write_bytes(xml)
    bare_queue = f"bench.{env.tag}.bare.delivery"
    if not env.hubs:  # without the intake environment nothing else deletes the bare queue
        stack.callback(lambda: asyncio.run(_delete_bare(env)))
    env.queues += [hub.queue(f"aanbieder:{PUSH_PARTY}"), hub.queue(f"aanbieder:{MAILBOX_PARTY}"), bare_queue]
    env.delivery = DeliveryEnv(hub, receiver, templates, bare_queue)
    return env.delivery


def _receiver(d: DeliveryEnv, what: str) -> dict[str, Any]:
    async def ask() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            method = session.post if what == "reset" else session.get
            async with method(f"http://127.0.0.1:{d.receiver.port}/{what}") as r:
                answer: dict[str, Any] = await r.json()
                return answer

    return asyncio.run(ask())


def _preload_hub(env: Env, d: DeliveryEnv, template: str, n: int) -> str:
    """Post n fresh messages; returns their Identificatie prefix."""
    prefix = env.prefix()
    spec = {
        "url": d.hub.url + "/v1/berichten",
        "token": d.hub.tokens["gemeente"],
        "template": str(d.templates[template]),
        "prefix": prefix,
        "n": n,
        "concurrency": 32,
    }
    out = _subprocess_json([PY, "-m", "bench.delivery", "preload", json.dumps(spec)], timeout=300)
    if out["ok"] != n:
        raise RuntimeError(f"preload: {out['ok']} of {n} accepted ({out['statuses']})")
    return prefix


def _timed_arrivals(d: DeliveryEnv, n: int, pids: list[int], wait: float = 180.0) -> RunResult:
    """From the receiver's first arrival to its n-th distinct one; CPU of `pids` over about that window."""
    meter = CpuMeter(pids, self_group=None)
    deadline = time.monotonic() + wait
    started = False
    stats: dict[str, Any] = {"n": 0}
    while time.monotonic() < deadline:
        stats = _receiver(d, "stats")
        if stats["n"] > 0 and not started:
            meter.start()
            started = True
        if stats["n"] >= n:
            break
        time.sleep(0.02)
    else:
        raise RuntimeError(f"only {stats['n']} of {n} messages arrived within {wait:.0f} s")
    cpu = meter.stop()
    seconds = max(1e-6, float(stats["last"]) - float(stats["first"]))
    return RunResult(
        msgs_per_s=(n - 1) / seconds,
        ok=n,
        seconds=seconds,
        cpu_s=cpu,
        rss_mib=meter.peak_rss_mib(),
        statuses={"ok": n},
    )


def delivery_push(env: Env) -> RunResult:
    d = _delivery_env(env)
    n = delivery_count(env)
    _receiver(d, "reset")
    _preload_hub(env, d, "push", n)  # no worker yet: the messages wait in the receiver's queue
    worker = d.hub.start_worker(name="worker", metrics_port=0)
    try:
        return _timed_arrivals(d, n, [worker.pid])
    finally:
        d.hub.stop_workers()


def delivery_bare(env: Env) -> RunResult:
    d = _delivery_env(env)
    n = delivery_count(env)
    _receiver(d, "reset")
    spec = {
        "amqp": AMQP_URL,
        "name": d.bare_queue,
        "arguments": {"x-queue-type": "quorum", "x-delivery-limit": 20},
        "template": str(d.templates["push"]),
        "prefix": env.prefix(),
        "n": n,
        "prefetch": DELIVERY_PREFETCH,
        "connections": PUSH_CONNECTIONS,
        "endpoint": d.endpoint,
    }
    _subprocess_json([PY, "-m", "bench.delivery", "bare-preload", json.dumps(spec)], timeout=300)
    consumer = subprocess.Popen(
        [PY, "-m", "bench.delivery", "bare-consume", json.dumps(spec)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        return _timed_arrivals(d, n, [consumer.pid])
    finally:
        try:
            consumer.wait(30)
        except subprocess.TimeoutExpired:
            _stop(consumer)


def delivery_mailbox(env: Env) -> RunResult:
    d = _delivery_env(env)
    n = delivery_count(env)
    _preload_hub(env, d, "mailbox", n)
    assert d.hub.proc is not None
    spec = {
        "url": d.hub.url,
        "token": d.hub.tokens["mailbox"],
        "n": n,
        "concurrency": 8,
        "server_pids": [d.hub.proc.pid],
    }
    out = _subprocess_json([PY, "-m", "bench.delivery", "mailbox", json.dumps(spec)], timeout=300)
    if out["ok"] < n:
        raise RuntimeError(f"mailbox: {out['ok']} of {n} acked ({out['statuses']})")
    return RunResult.from_json(out)


SCENARIOS.add_fn(
    "delivery.push",
    "delivery",
    f"N 4 KB messages posted through `hub serve` (PostgreSQL) to a push receiver while no worker runs; "
    f"then `hub worker` starts and delivers them to a local aiohttp receiver process (prefetch "
    f"{DELIVERY_PREFETCH}, at most {PUSH_CONNECTIONS} connections; status `delivered` committed per "
    "message); messages/s from the receiver's "
    "first arrival to its N-th; `server` CPU is the worker's",
    delivery_push,
    unavailable=_delivery_missing,
)
SCENARIOS.add_fn(
    "delivery.bare.consume-post",
    "baseline",
    f"the same N 4 KB messages published (persistent, confirmed) to a quorum queue, then a bare aio-pika "
    f"consumer (prefetch {DELIVERY_PREFETCH}, at most {PUSH_CONNECTIONS} connections) POSTs each to the "
    "same receiver and acks on 2xx; timed like "
    "delivery.push; `server` CPU is the consumer's",
    delivery_bare,
)
SCENARIOS.add_fn(
    "delivery.mailbox",
    "delivery",
    "N 4 KB messages posted through `hub serve` (PostgreSQL) to a mailbox receiver; a client lists "
    "`/v1/mailbox?limit=100`, GETs each body and POSTs its ack, 8 at a time, until all N are acked; "
    "`server` CPU is `hub serve`'s, `loadgen` the client's",
    delivery_mailbox,
    unavailable=_delivery_missing,
)
_register_hub_intake()


def half_rate(runs: list[RunResult]) -> float:
    """Half of the middle run's throughput (of an even number, the upper middle): the half-load rate."""
    return sorted(r.msgs_per_s for r in runs)[len(runs) // 2] / 2


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


# The targets compare these runs; each hub run goes right after its baseline, so that the two are
# seconds apart in every round (in both directions) rather than a minute (perf-limits.md: this
# machine's speed drifts by up to 60 % within minutes).
TARGET_PAIRS = (
    ("bare.pipeline.pg.4k.c64", "hub.pg.4k.c64"),
    ("bare.pipeline.sqlite.4k.c64", "hub.sqlite.4k.c64"),
    ("delivery.bare.consume-post", "delivery.push"),
)


def target_pairs_adjacent(scenarios: list[Any]) -> list[Any]:
    by_name = {s.name: s for s in scenarios}
    moved = {hub for base, hub in TARGET_PAIRS if base in by_name and hub in by_name}
    out = []
    for s in scenarios:
        if s.name in moved:
            continue
        out.append(s)
        for base, hub in TARGET_PAIRS:
            if s.name == base and hub in moved:
                out.append(by_name[hub])
    return out


def run_all(
    budget: Budget, *, quick: bool, only: list[str], log: Any = print
) -> tuple[Results, dict[str, Any]]:
    """Baselines and hub intake interleaved; then the half-load p99 runs; returns results and checks."""
    results = Results()
    checks: dict[str, Any] = {}
    scenarios = target_pairs_adjacent(SCENARIOS.select(quick=quick, only=only))
    intake = any(s.kind != "delivery" and not s.name.startswith("delivery.") for s in scenarios)
    with environment(budget, intake=intake) as env:
        ports = ", ".join(f"{which} on :{hub.port}" for which, hub in env.hubs.items())
        log(f"environment ready in {env.tmp} (hubs: {ports or 'none yet'})")
        run_rounds(scenarios, env, budget.rounds, between=purge_queues, log=log, results=results)
        for which in ("pg", "sqlite"):
            runs = results.runs.get(f"hub.{which}.4k.c64")
            if runs:
                env.half_rate[which] = half_rate(runs)
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
