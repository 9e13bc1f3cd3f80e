"""store_received throughput: the group-commit store vs one commit per message, on SQLite and PG.

Run: .venv/bin/python bench/audit_store.py [--rounds 3] [--seconds 2] [--backends sqlite,postgres]

For 1, 16 and 64 concurrent callers, each round runs both variants for a fixed time, in alternating
order (A/B then B/A), so drift of the shared VM hits both alike; the table shows the medians.
  group:    SqlAlchemyAuditStore.store_received (row + body + 2 events, batched by the writer)
  baseline: the same four rows, one transaction per message, straight from the callers
Both use the same engine settings (WAL + synchronous=FULL on SQLite). Creates a scratch database
(a temp file; a PostgreSQL database `hub_bench_<pid>` on 127.0.0.1:5432, dropped at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.adapters.db import create_audit_store
from hub.adapters.db.engine import create_engine
from hub.adapters.db.migrate import upgrade
from hub.adapters.db.rows import bericht_values
from hub.adapters.db.tables import audit_events, bericht_bodies, berichten
from hub.domain.parties import PartyKind, PartyRef
from hub.service.ports import NieuwBericht

PG_BASE = "postgresql+asyncpg://postgres@127.0.0.1:5432"
CONCURRENCY = (1, 16, 64)
BODY = b"<WMO301>" + b"x" * 4000 + b"</WMO301>"  # ~4 KB, the size perf-limits.md measured with
SHA = hashlib.sha256(BODY).hexdigest()


def nieuw() -> NieuwBericht:
    message_id = str(uuid.uuid4())
    return NieuwBericht(
        message_id=message_id,
        conversation_id=message_id,
        standaard="iWmo",
        release="3.2",
        berichttype="WMO301",
        berichtcode="414",
        afzender=PartyRef(PartyKind.GEMEENTE, "0363"),
        ontvanger="12345678",
        receiver=PartyRef(PartyKind.AANBIEDER, "12345678"),
        identificatie=uuid.uuid4().hex[:20],
        dagtekening=date(2025, 1, 1),
        answers_message_id=None,
        sha256=SHA,
        size=len(BODY),
        body=BODY,
        received_at=datetime.now(UTC),
        request_id=message_id,
        routing_version="bench",
    )


async def one_commit_per_message(engine: AsyncEngine, b: NieuwBericht) -> None:
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(insert(berichten), bericht_values(b))
        await conn.execute(insert(bericht_bodies), {"message_id": b.message_id, "body": b.body})
        await conn.execute(
            insert(audit_events),
            [
                {"message_id": b.message_id, "seq": 1, "at": now, "kind": "received", "detail": {}},
                {"message_id": b.message_id, "seq": 2, "at": now, "kind": "accepted", "detail": {}},
            ],
        )


async def rate(write: Callable[[NieuwBericht], Awaitable[object]], callers: int, seconds: float) -> float:
    """Messages per second with `callers` tasks writing back to back for `seconds`."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await write(nieuw())
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return done / (time.perf_counter() - started)


async def bench_backend(url: str, rounds: int, seconds: float) -> dict[tuple[int, str], list[float]]:
    await upgrade(url)
    results: dict[tuple[int, str], list[float]] = {}
    for callers in CONCURRENCY:
        # The baseline gets as many connections as callers on PG (each caller its own transaction);
        # SQLite has one writer whatever the pool. The store needs one for its writer.
        pool = min(callers, 64) if url.startswith("postgresql") else 5
        store = await create_audit_store(url, pool_size=pool)
        engine = create_engine(url, pool_size=pool)
        variants: dict[str, Callable[[NieuwBericht], Awaitable[object]]] = {
            "group": store.store_received,
            "baseline": functools.partial(one_commit_per_message, engine),
        }
        try:
            for r in range(rounds):
                order = ["group", "baseline"] if r % 2 == 0 else ["baseline", "group"]
                for name in order:
                    results.setdefault((callers, name), []).append(
                        await rate(variants[name], callers, seconds)
                    )
        finally:
            await store.close()
            await engine.dispose()
    return results


async def with_database(backend: str, run: Callable[[str], Awaitable[None]]) -> None:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            await run(f"sqlite+aiosqlite:///{Path(folder) / 'bench.sqlite'}")
        return
    name = f"hub_bench_{os.getpid()}"
    admin = create_engine(f"{PG_BASE}/postgres", pool_size=1).execution_options(isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            await run(f"{PG_BASE}/{name}")
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()

    print(
        f"{'backend':<9} {'callers':>7} {'group msg/s':>12} {'baseline msg/s':>15} {'ratio':>6}   (medians)"
    )
    for backend in args.backends.split(","):

        async def run(url: str, backend: str = backend) -> None:
            results = await bench_backend(url, args.rounds, args.seconds)
            for callers in CONCURRENCY:
                group = statistics.median(results[(callers, "group")])
                base = statistics.median(results[(callers, "baseline")])
                print(f"{backend:<9} {callers:>7} {group:>12,.0f} {base:>15,.0f} {group / base:>6.1f}x")

        await with_database(backend, run)


if __name__ == "__main__":
    asyncio.run(main())
