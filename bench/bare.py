"""The baselines the hub is measured against, each run as its own process by the harness.

    python -m bench.bare server202 --port P
        bare aiohttp: read the body, answer 202.
    python -m bench.bare pipeline --port P --db URL --amqp URL --name N
        the straightforward design: one aiohttp handler that parses and validates (lxml, the hub's own
        compiled schema), commits one audit row in its own transaction and awaits one confirmed
        persistent publish to a quorum queue, then answers 202.
    python -m bench.bare publish '<json>'    bare aio-pika: persistent publishes with confirms, C in flight
    python -m bench.bare insert '<json>'     bare SQLAlchemy: one audit row per transaction, C callers

The two drivers (publish, insert) meter themselves like bench.loadgen does and print one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aio_pika
from aiohttp import web
from lxml import etree
from sqlalchemy import BigInteger, Column, DateTime, Index, MetaData, String, Table, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.loadgen import percentiles
from bench.procs import CpuMeter
from hub.adapters.db.engine import create_engine, is_sqlite

REPO = Path(__file__).resolve().parent.parent

# The audit row of perf-limits.md: 11 columns, 3 indexes.
metadata = MetaData()
bare_audit = Table(
    "bare_audit",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("identificatie", String(64), nullable=False),
    Column("code", String(8), nullable=False),
    Column("afzender", String(16), nullable=False),
    Column("ontvanger", String(16), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("routing_key", String(64), nullable=False),
    Column("request_id", String(64), nullable=False),
    Index("ix_bare_audit_ident", "afzender", "identificatie"),
    Index("ix_bare_audit_status", "status", "received_at"),
)


def audit_row(body: bytes, identificatie: str = "", code: str = "", afzender: str = "") -> dict[str, Any]:
    rid = str(uuid.uuid4())
    return {
        "id": rid,
        "identificatie": identificatie or rid[:12],
        "code": code or "414",
        "afzender": afzender or "0363",
        "ontvanger": "12345678",
        "received_at": datetime.now(UTC),
        "sha256": hashlib.sha256(body).hexdigest(),
        "size": len(body),
        "status": "forwarded",
        "routing_key": "bare",
        "request_id": rid,
    }


# The hub's create_engine keeps 2 x pool_size connections: 24 per bare server, so that everything the
# harness runs at once stays well below PostgreSQL's default max_connections (100).
POOL = 12


async def open_engine(url: str, pool: int) -> AsyncEngine:
    engine = create_engine(url, pool_size=5 if is_sqlite(url) else pool)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return engine


async def open_queue(amqp: str, name: str) -> tuple[aio_pika.abc.AbstractRobustConnection, Any]:
    """A confirming channel and a direct exchange bound to one durable quorum queue (routing key 'bare')."""
    connection = await aio_pika.connect_robust(amqp)
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.DIRECT, durable=True)
    queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
    await queue.bind(exchange, routing_key="bare")
    return connection, exchange


async def publish(exchange: Any, body: bytes, message_id: str) -> None:
    message = aio_pika.Message(
        body,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message_id,
        content_type="application/xml",
    )
    await exchange.publish(message, routing_key="bare", mandatory=True)


# -- servers ----------------------------------------------------------------------------------------


def server202_app() -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True}, status=202)

    app = web.Application(client_max_size=30 * 1024 * 1024)
    app.router.add_post("/v1/berichten", handle)
    return app


def pipeline_app(db: str, amqp: str, name: str) -> web.Application:
    from hub.validation.registry import SchemaRegistry

    registry = SchemaRegistry.load(REPO / "xsd" / "releases.toml")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    schemas: dict[str | None, Any] = {}
    state: dict[str, Any] = {}

    def schema_for(namespace: str | None) -> Any:
        if namespace not in schemas:
            entry = registry.lookup(namespace or "", date.today())
            schemas[namespace] = entry.pool.take() if entry is not None else None
        return schemas[namespace]

    async def handle(request: web.Request) -> web.Response:
        data = await request.read()
        try:
            doc = etree.fromstring(data, parser)
        except etree.XMLSyntaxError:
            return web.json_response({"error": "not well-formed"}, status=400)
        schema = schema_for(etree.QName(doc).namespace)
        if schema is None or not schema.validate(doc):
            return web.json_response({"error": "invalid"}, status=422)
        row = audit_row(data)
        async with state["engine"].begin() as conn:
            await conn.execute(insert(bare_audit), row)
        await publish(state["exchange"], data, row["id"])
        return web.json_response({"message_id": row["id"]}, status=202)

    async def lifecycle(app: web.Application) -> Any:
        state["engine"] = await open_engine(db, pool=POOL)
        connection, state["exchange"] = await open_queue(amqp, name)
        yield
        await connection.close()
        await state["engine"].dispose()

    app = web.Application(client_max_size=30 * 1024 * 1024)
    app.router.add_post("/v1/berichten", handle)
    app.cleanup_ctx.append(lifecycle)
    return app


# -- drivers ----------------------------------------------------------------------------------------


async def closed_loop(
    op: Callable[[], Awaitable[None]], concurrency: int, warmup: float, seconds: float
) -> dict[str, Any]:
    """`concurrency` tasks run op back to back; count and meter completions in [warmup, warmup+seconds]."""
    meter = CpuMeter([os.getpid()], self_group=None)
    latencies: list[float] = []
    cpu: dict[str, float] = {}
    start = time.perf_counter()
    t0, t1 = start + warmup, start + warmup + seconds

    async def task() -> None:
        while time.perf_counter() < t1:
            began = time.perf_counter()
            await op()
            done = time.perf_counter()
            if t0 <= done <= t1:
                latencies.append(done - began)

    async def window() -> None:
        await asyncio.sleep(warmup)
        meter.start()
        await asyncio.sleep(max(0.0, t1 - time.perf_counter()))
        cpu.update(meter.stop())

    await asyncio.gather(window(), *(task() for _ in range(concurrency)))
    return {
        "ok": len(latencies),
        "statuses": {"ok": len(latencies)},
        "seconds": seconds,
        "msgs_per_s": len(latencies) / seconds,
        "latency_ms": percentiles(latencies),
        "cpu_s": cpu,
        "rss_mib": meter.peak_rss_mib(),
    }


async def drive_publish(spec: dict[str, Any]) -> dict[str, Any]:
    body: bytes = spec["body"]
    connection, exchange = await open_queue(spec["amqp"], spec["name"])
    try:
        return await closed_loop(
            lambda: publish(exchange, body, str(uuid.uuid4())),
            spec["concurrency"],
            spec["warmup"],
            spec["seconds"],
        )
    finally:
        await connection.close()


async def drive_insert(spec: dict[str, Any]) -> dict[str, Any]:
    body: bytes = spec["body"]
    engine = await open_engine(spec["db"], pool=POOL)

    async def one() -> None:
        async with engine.begin() as conn:
            await conn.execute(insert(bare_audit), audit_row(body))

    try:
        return await closed_loop(one, spec["concurrency"], spec["warmup"], spec["seconds"])
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("what", choices=["server202", "pipeline", "publish", "insert"])
    ap.add_argument("spec", nargs="?", default="{}")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--db", default="")
    ap.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    ap.add_argument("--name", default="bench.bare")
    args = ap.parse_args(argv)
    if args.what in ("server202", "pipeline"):
        app = server202_app() if args.what == "server202" else pipeline_app(args.db, args.amqp, args.name)
        web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)
        return 0
    spec = json.loads(args.spec)
    spec["body"] = Path(spec["template"]).read_bytes()
    result = asyncio.run(drive_publish(spec) if args.what == "publish" else drive_insert(spec))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
