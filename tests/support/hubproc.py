"""Start the real hub (`hub serve` in a subprocess) against the real RabbitMQ and a real database."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import aiohttp

REPO = Path(__file__).resolve().parents[2]
HUB = str(Path(sys.executable).with_name("hub"))
AMQP_URL = os.environ.get("HUB_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_ADMIN_DSN = os.environ.get("HUB_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_cli(env: Mapping[str, str], *args: str) -> str:
    done = subprocess.run(
        [HUB, *args], env=dict(env), capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"hub {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout.strip()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test module; dropped afterwards."""
    import asyncpg  # only the PostgreSQL variant needs it

    name = f"hub_e2e_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class HubProcess:
    env: dict[str, str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def exchange(self) -> str:
        return self.env["HUB_AMQP_EXCHANGE"]

    def queue(self, receiver: str) -> str:
        """The queue of a receiver given as kind:code (e.g. gemeente:0363)."""
        kind, _, code = receiver.partition(":")
        return f"{self.env['HUB_AMQP_QUEUE_PREFIX']}{kind}.{code}"

    def start(self, wait: float = 30.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [HUB, "serve", "--port", str(self.port), "--shutdown-timeout", "5"],
            env=self.env,
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"hub did not listen within {wait}s: {self.log_tail()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        self.stop_workers()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def start_worker(self, name: str = "worker", metrics_port: int = 0) -> subprocess.Popen[bytes]:
        """A `hub worker` process on the same settings, stopped by stop(); /metrics on `metrics_port`."""
        log = (self.log_path.parent / f"{name}.log").open("ab")
        command = [HUB, "worker", "--metrics-port", str(metrics_port)]
        worker = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)
        log.close()
        self.workers.append(worker)
        return worker

    def stop_workers(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        self.workers.clear()

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""


def hub_env(database_url: str, tmp: Path, **extra: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(
        HUB_DATABASE_URL=database_url,
        HUB_AMQP_URL=AMQP_URL,
        HUB_AMQP_EXCHANGE=f"e2e.{tag}",
        HUB_AMQP_QUEUE_PREFIX=f"e2e.{tag}.ontvanger.",
        HUB_ADMIN_TOKEN=f"admin-{uuid.uuid4().hex}",
        HUB_ROUTING_RULES=str(REPO / "routing_rules"),
        HUB_SCHEMA_RELEASES=str(REPO / "xsd" / "releases.toml"),
        # Load tests and benchmarks post from one party as fast as they can: no per-party limits
        # unless a test asks for them (tests/unit/test_access.py tests the limits).
        HUB_RATE_PER_SECOND="0",
        HUB_MAX_CONCURRENT_PER_PARTY="0",
    )
    env.update(extra)
    return env


def prepare_hub(database_url: str, tmp: Path, parties: Mapping[str, str], **extra: str) -> HubProcess:
    """Migrate the database, create a token per party code, and return a hub ready to start."""
    env = hub_env(database_url, tmp, **extra)
    run_cli(env, "migrate")
    hub = HubProcess(env=env, port=free_port(), log_path=tmp / "hub.log")
    for name, code in parties.items():
        hub.tokens[name] = run_cli(env, "parties", "token", "create", "--party", code, "--label", "e2e")
    return hub


async def drain_queue(
    queue_name: str, *, expect: int | None = None, wait: float = 5.0
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Consume (and ack) everything in a queue; waits up to `wait` s for `expect` messages."""
    connection = await aio_pika.connect(AMQP_URL)
    got: list[aio_pika.abc.AbstractIncomingMessage] = []
    async with connection:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(queue_name, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return got
        deadline = time.monotonic() + wait
        while True:
            message = await queue.get(fail=False, timeout=5)
            if message is not None:
                await message.ack()
                got.append(message)
                continue
            if expect is None or len(got) >= expect or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.1)


async def delete_topology(hub: HubProcess) -> None:
    """Remove every queue and exchange a test hub and its workers declared (all named after the exchange)."""
    prefix = hub.exchange + "."
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for name in await _listed("list_queues", prefix):
            try:
                await channel.queue_delete(name)
            except aio_pika.exceptions.AMQPError:
                channel = await connection.channel()
        for name in [hub.exchange, *await _listed("list_exchanges", prefix)]:
            try:
                await channel.exchange_delete(name)
            except aio_pika.exceptions.AMQPError:
                channel = await connection.channel()


async def _listed(what: str, prefix: str) -> list[str]:
    done = await asyncio.create_subprocess_exec(
        "rabbitmqctl", what, "-q", "name", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await done.communicate()
    return [line.strip() for line in out.decode().splitlines() if line.strip().startswith(prefix)]


@asynccontextmanager
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session
