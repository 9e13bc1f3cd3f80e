"""Audit look-ups with 10 million rows in PostgreSQL.

Seeds a dedicated database `hub_bench_scale` (dropped and re-created; migrated with the hub's own
Alembic migrations) with N berichten and N audit events using INSERT ... SELECT generate_series, with
the secondary indexes dropped during the load and rebuilt after it (much faster than maintaining
them row by row), then ANALYZE. Then measures, through the hub's own SqlAlchemyAuditStore, the
look-ups the gateway and the status API make: find_by_identity, get, events and conversation, each
for random existing messages, in ms per call (median and p99 over `lookups` calls, sequential, one
connection at a time).

Run: `python -m bench scale` (part of it), or `python -m bench.seed_audit --rows 10000000 [--keep-db]`.
The database is dropped at the end unless --keep-db; drop it by hand with
`psql -h 127.0.0.1 -U postgres -c 'DROP DATABASE hub_bench_scale'`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import date
from functools import partial
from typing import Any

import asyncpg

from hub.adapters.db import create_audit_store
from hub.adapters.db.migrate import upgrade
from hub.domain.parties import PartyKind, PartyRef

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DB = "hub_bench_scale"
DSN = f"postgresql://postgres@127.0.0.1:5432/{DB}"
URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{DB}"
TABLES = ("berichten", "audit_events")

# Row i: message_id = md5(i) as a uuid; conversations of 3 messages (a heenbericht and its answers);
# senders: 342 gemeenten x 10,000 aanbieders spread; identificatie unique per sender.
BERICHTEN_SQL = """
INSERT INTO berichten (message_id, conversation_id, standaard, release, berichttype, berichtcode,
    afzender_kind, afzender_code, ontvanger, receiver_kind, receiver_code, identificatie, dagtekening,
    sha256, size, status, received_at, updated_at, request_id, routing_version)
SELECT md5(i::text)::uuid::text,
       md5((i - i % 3)::text)::uuid::text,
       'iWmo', '3.2', 'WMO301', '414',
       'gemeente', lpad((i % 342)::text, 4, '0'),
       (10000000 + i % 10000)::text, 'aanbieder', (10000000 + i % 10000)::text,
       'S' || i::text, DATE '2020-01-01' + (i % 2000)::int,
       md5(i::text) || md5(i::text), 4096, 'forwarded',
       TIMESTAMPTZ '2020-01-01' + i * INTERVAL '15 seconds',
       TIMESTAMPTZ '2020-01-01' + i * INTERVAL '15 seconds',
       md5(i::text), 'seed'
FROM generate_series($1::bigint, $2::bigint) AS i
"""
EVENTS_SQL = """
INSERT INTO audit_events (message_id, seq, at, kind, detail)
SELECT md5(i::text)::uuid::text, 1, TIMESTAMPTZ '2020-01-01' + i * INTERVAL '15 seconds', 'received',
       '{"size": 4096}'
FROM generate_series($1::bigint, $2::bigint) AS i
"""


def row_identity(i: int) -> tuple[str, PartyRef, str, date]:
    """(message_id, afzender, identificatie, dagtekening) of seeded row i, as the SQL above makes them."""
    import hashlib
    import uuid

    message_id = str(uuid.UUID(hashlib.md5(str(i).encode()).hexdigest()))
    afzender = PartyRef(PartyKind.GEMEENTE, f"{i % 342:04d}")
    return message_id, afzender, f"S{i}", date.fromordinal(date(2020, 1, 1).toordinal() + i % 2000)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def seed(rows: int, chunk: int = 1_000_000, log: Callable[[str], None] = print) -> dict[str, float]:
    await _admin(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    await _admin(f'CREATE DATABASE "{DB}"')
    await upgrade(URL)
    conn = await asyncpg.connect(DSN)
    timings: dict[str, float] = {}
    try:
        # Keep the primary keys; drop every other index and unique constraint, load, rebuild.
        constraints = await conn.fetch(
            "SELECT conrelid::regclass::text AS tbl, conname, pg_get_constraintdef(oid) AS def "
            "FROM pg_constraint WHERE contype = 'u' AND conrelid::regclass::text = ANY($1::text[])",
            list(TABLES),
        )
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY($1::text[]) "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE contype IN ('p', 'u'))",
            list(TABLES),
        )
        for c in constraints:
            await conn.execute(f'ALTER TABLE {c["tbl"]} DROP CONSTRAINT "{c["conname"]}"')
        for ix in indexes:
            await conn.execute(f'DROP INDEX "{ix["indexname"]}"')
        await conn.execute("SET synchronous_commit = off")
        t0 = time.perf_counter()
        for start in range(1, rows + 1, chunk):
            end = min(rows, start + chunk - 1)
            await conn.execute(BERICHTEN_SQL, start, end)
            await conn.execute(EVENTS_SQL, start, end)
            log(f"  seeded {end:,} / {rows:,} rows ({time.perf_counter() - t0:.0f} s)")
        timings["load_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        await conn.execute("SET maintenance_work_mem = '512MB'")
        for c in constraints:
            await conn.execute(f'ALTER TABLE {c["tbl"]} ADD CONSTRAINT "{c["conname"]}" {c["def"]}')
        for ix in indexes:
            await conn.execute(ix["indexdef"])
        timings["index_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        await conn.execute("VACUUM ANALYZE berichten")
        await conn.execute("VACUUM ANALYZE audit_events")
        timings["analyze_s"] = time.perf_counter() - t0
        size = await conn.fetchval(f"SELECT pg_database_size('{DB}')")
        timings["database_gib"] = size / 2**30
    finally:
        await conn.close()
    return timings


async def _time(calls: list[Callable[[], Awaitable[Any]]]) -> dict[str, float]:
    out = []
    for call in calls:
        t0 = time.perf_counter()
        found = await call()
        out.append((time.perf_counter() - t0) * 1000)
        assert found, "a seeded row was not found"
    out.sort()
    return {
        "median_ms": statistics.median(out),
        "p99_ms": out[min(len(out) - 1, int(0.99 * len(out)))],
        "calls": float(len(out)),
    }


async def measure(rows: int, lookups: int) -> dict[str, dict[str, float]]:
    store = await create_audit_store(URL)
    rng = random.Random(42)
    picks = [row_identity(rng.randint(1, rows)) for _ in range(lookups)]
    try:
        await store.ping()
        results: dict[str, dict[str, float]] = {}
        for _ in range(2):  # the first pass warms the pool and the statement cache; the second counts
            results = {
                "find_by_identity": await _time(
                    [partial(store.find_by_identity, p[1], "WMO301", p[2], p[3]) for p in picks]
                ),
                "get": await _time([partial(store.get, p[0]) for p in picks]),
                "events": await _time([partial(store.events, p[0]) for p in picks]),
            }
            conversation = getattr(store, "conversation", None)
            if conversation is not None:
                stored = [await store.get(p[0]) for p in picks[:50]]
                results["conversation"] = await _time(
                    [partial(conversation, s.conversation_id) for s in stored if s is not None]
                )
        return results
    finally:
        await store.close()


async def run(rows: int, lookups: int, keep_db: bool, log: Callable[[str], None] = print) -> dict[str, Any]:
    log(f"seeding {rows:,} berichten and {rows:,} audit events into {DB}")
    timings = await seed(rows, log=log)
    log(f"  seeding took {timings}")
    try:
        lookups_ms = await measure(rows, lookups)
    finally:
        if not keep_db:
            await _admin(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    return {"rows": rows, "seed": timings, "lookups": lookups_ms, "kept_db": keep_db}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--lookups", type=int, default=500)
    ap.add_argument("--keep-db", action="store_true")
    args = ap.parse_args(argv)
    print(json.dumps(asyncio.run(run(args.rows, args.lookups, args.keep_db)), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
