"""SqlAlchemyAuditStore against real SQLite and PostgreSQL databases (see conftest.database_url)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.adapters.db import SqlAlchemyAuditStore, UnknownMessage, create_audit_store
from hub.adapters.db.engine import create_engine
from hub.adapters.db.migrate import head_revision
from hub.adapters.db.rows import stored_from_new
from hub.adapters.db.tables import audit_events, bericht_bodies, berichten, metadata, weigeringen
from hub.domain.errors import ErrorCode
from hub.domain.parties import PartyKind, PartyRef
from hub.service.ports import (
    BerichtStatus,
    IdentityConflict,
    StoreUnavailable,
    Weigering,
)
from tests.support.records import AANBIEDER, GEMEENTE, nieuw


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlAlchemyAuditStore]:
    s = await create_audit_store(database_url)
    yield s
    await s.close()


@pytest.fixture
async def other_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A second engine: what it sees was committed, not just written on the store's connection."""
    engine = create_engine(database_url, pool_size=1)
    yield engine
    await engine.dispose()


async def count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


# -- schema ---------------------------------------------------------------------------------------


async def test_migration_creates_every_table_at_head(other_engine: AsyncEngine) -> None:
    def look(conn: Connection) -> tuple[set[str], str | None]:
        tables = set(inspect(conn).get_table_names())
        return tables, MigrationContext.configure(conn).get_current_revision()

    async with other_engine.connect() as conn:
        tables, revision = await conn.run_sync(look)
    assert set(metadata.tables) <= tables
    assert revision == head_revision()


async def test_models_and_migrations_agree(other_engine: AsyncEngine) -> None:
    def diff(conn: Connection) -> list[object]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with other_engine.connect() as conn:
        assert await conn.run_sync(diff) == []


# -- writes and reads -----------------------------------------------------------------------------


async def test_the_party_that_sent_on_the_afzenders_behalf_is_in_the_received_event(
    store: SqlAlchemyAuditStore,
) -> None:
    supplier = PartyRef(PartyKind.AANBIEDER, "11223344")
    b = nieuw(submitted_by=supplier)
    await store.store_received(b)
    received = (await store.events(b.message_id))[0]
    assert received.kind == "received" and received.detail["submitted_by"] == "aanbieder:11223344"


async def test_store_get_body_events_round_trip(
    store: SqlAlchemyAuditStore, other_engine: AsyncEngine
) -> None:
    b = nieuw(answers_message_id=str(uuid.uuid4()))
    stored = await store.store_received(b)

    assert await store.get(b.message_id) == stored
    assert stored.status is BerichtStatus.RECEIVED
    assert stored.received_at == b.received_at and stored.received_at.tzinfo is not None
    assert await store.body(b.message_id) == b.body
    events = await store.events(b.message_id)
    assert [(e.seq, e.kind) for e in events] == [(1, "received"), (2, "accepted")]
    assert events[0].detail == {"request_id": b.request_id, "sha256": b.sha256, "size": b.size}
    assert all(e.at.utcoffset() == timedelta(0) for e in events)
    # Returned means committed: a different connection sees row, body and events.
    assert await count(other_engine, "berichten") == 1
    assert await count(other_engine, "bericht_bodies") == 1
    assert await count(other_engine, "audit_events") == 2


async def test_unknown_message_reads_as_none(store: SqlAlchemyAuditStore) -> None:
    missing = str(uuid.uuid4())
    assert await store.get(missing) is None
    assert await store.body(missing) is None
    assert await store.events(missing) == []


async def test_times_in_other_zones_come_back_as_the_same_instant_in_utc(
    store: SqlAlchemyAuditStore,
) -> None:
    amsterdam_summer = datetime(2025, 7, 1, 14, 30, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    b = nieuw(received_at=amsterdam_summer)
    await store.store_received(b)
    stored = await store.get(b.message_id)
    assert stored is not None
    assert stored.received_at == amsterdam_summer
    assert stored.received_at.tzinfo == UTC


async def test_identity_conflict_names_the_original_and_spares_the_rest_of_the_batch(
    store: SqlAlchemyAuditStore, other_engine: AsyncEngine
) -> None:
    original = nieuw()
    await store.store_received(original)
    again = nieuw(identificatie=original.identificatie)  # same sender, type, id and date
    others = [nieuw() for _ in range(20)]

    results = await asyncio.gather(
        *(store.store_received(b) for b in [*others[:10], again, *others[10:]]), return_exceptions=True
    )

    conflict = results[10]
    assert isinstance(conflict, IdentityConflict)
    assert conflict.existing.message_id == original.message_id
    assert conflict.existing.sha256 == original.sha256
    assert [r for i, r in enumerate(results) if i != 10 and isinstance(r, BaseException)] == []
    for b in others:
        assert await store.get(b.message_id) is not None
    assert await store.get(again.message_id) is None
    assert await count(other_engine, "berichten") == 21
    assert await count(other_engine, "bericht_bodies") == 21
    assert await count(other_engine, "audit_events") == 42


async def test_two_new_messages_with_one_identity_in_one_batch_store_exactly_one(
    store: SqlAlchemyAuditStore,
) -> None:
    first = nieuw()
    second = nieuw(identificatie=first.identificatie)
    results = await asyncio.gather(
        store.store_received(first), store.store_received(second), return_exceptions=True
    )
    assert not isinstance(results[0], BaseException)
    assert isinstance(results[1], IdentityConflict)
    assert results[1].existing.message_id == first.message_id


async def test_same_identificatie_from_another_sender_or_type_is_no_conflict(
    store: SqlAlchemyAuditStore,
) -> None:
    b = nieuw()
    await store.store_received(b)
    await store.store_received(
        nieuw(identificatie=b.identificatie, afzender=PartyRef(PartyKind.GEMEENTE, "0599"))
    )
    await store.store_received(nieuw(identificatie=b.identificatie, berichttype="WMO302"))
    await store.store_received(nieuw(identificatie=b.identificatie, dagtekening=date(2025, 3, 15)))
    assert await store.find_by_identity(
        GEMEENTE, "WMO301", b.identificatie, b.dagtekening
    ) == await store.get(b.message_id)


async def test_200_concurrent_writers_are_each_committed_exactly_once_in_few_batches(
    store: SqlAlchemyAuditStore, other_engine: AsyncEngine
) -> None:
    batches_before = store.writer.batches
    berichten_ = [nieuw() for _ in range(200)]
    stored = await asyncio.gather(*(store.store_received(b) for b in berichten_))

    assert [s.message_id for s in stored] == [b.message_id for b in berichten_]
    async with other_engine.connect() as conn:
        ids = (await conn.execute(select(berichten.c.message_id))).scalars().all()
        bodies = (await conn.execute(select(func.count()).select_from(bericht_bodies))).scalar_one()
        per_message = (
            await conn.execute(
                select(audit_events.c.message_id, func.count()).group_by(audit_events.c.message_id)
            )
        ).all()
    assert sorted(ids) == sorted(b.message_id for b in berichten_)
    assert bodies == 200
    assert {m: n for m, n in per_message} == {b.message_id: 2 for b in berichten_}
    # They were grouped: far fewer transactions than writers (the point of the group commit).
    assert store.writer.batches - batches_before <= 4


async def test_a_bad_item_fails_alone(store: SqlAlchemyAuditStore) -> None:
    good = [nieuw() for _ in range(5)]
    naive = nieuw(received_at=datetime(2025, 1, 1, 12, 0))  # no tzinfo: refused by the column type
    results = await asyncio.gather(*(store.store_received(b) for b in [*good, naive]), return_exceptions=True)
    assert isinstance(results[-1], Exception) and "naive" in str(results[-1])
    assert not any(isinstance(r, BaseException) for r in results[:-1])
    assert await store.get(naive.message_id) is None


async def test_mark_forwarded_sets_status_and_adds_published(store: SqlAlchemyAuditStore) -> None:
    b = nieuw()
    await store.store_received(b)
    await store.mark_forwarded(b.message_id, queue="hub.ontvanger.aanbieder.12345678")

    stored = await store.get(b.message_id)
    assert stored is not None
    assert stored.status is BerichtStatus.FORWARDED
    assert stored.updated_at >= stored.received_at
    events = await store.events(b.message_id)
    assert [(e.seq, e.kind) for e in events][-1] == (3, "published")
    assert events[-1].detail == {"queue": "hub.ontvanger.aanbieder.12345678"}


async def test_mark_forwarded_of_an_unknown_message_raises_and_others_commit(
    store: SqlAlchemyAuditStore,
) -> None:
    b = nieuw()
    await store.store_received(b)
    results = await asyncio.gather(
        store.mark_forwarded(str(uuid.uuid4()), queue="q"),
        store.mark_forwarded(b.message_id, queue="q"),
        return_exceptions=True,
    )
    assert isinstance(results[0], UnknownMessage)
    assert results[1] is None
    stored = await store.get(b.message_id)
    assert stored is not None and stored.status is BerichtStatus.FORWARDED


async def test_add_event_numbers_events_per_message_in_call_order(store: SqlAlchemyAuditStore) -> None:
    b = nieuw()
    await store.store_received(b)
    await store.add_event(b.message_id, "duplicate", {"request_id": "r2", "nested": {"n": [1, 2]}})
    await asyncio.gather(*(store.add_event(b.message_id, "publish_failed", {"try": i}) for i in range(5)))
    await store.add_event(b.message_id, "delivered")

    events = await store.events(b.message_id)
    assert [e.seq for e in events] == list(range(1, 10))
    assert events[2].detail == {"request_id": "r2", "nested": {"n": [1, 2]}}
    assert [e.detail["try"] for e in events[3:8]] == [0, 1, 2, 3, 4]
    assert (events[-1].kind, events[-1].detail) == ("delivered", {})


async def test_find_answered_by_type_sender_code_identificatie_and_date(
    store: SqlAlchemyAuditStore,
) -> None:
    heen = nieuw()
    await store.store_received(heen)
    found = await store.find_answered("iWmo", "WMO301", "0363", heen.identificatie, heen.dagtekening)
    assert found is not None and found.message_id == heen.message_id

    assert await store.find_answered("iJw", "WMO301", "0363", heen.identificatie, heen.dagtekening) is None
    assert await store.find_answered("iWmo", "WMO303", "0363", heen.identificatie, heen.dagtekening) is None
    assert await store.find_answered("iWmo", "WMO301", "0599", heen.identificatie, heen.dagtekening) is None
    next_day = heen.dagtekening + timedelta(days=1)
    assert await store.find_answered("iWmo", "WMO301", "0363", heen.identificatie, next_day) is None


async def test_refusals_are_recorded_without_body(
    store: SqlAlchemyAuditStore, other_engine: AsyncEngine
) -> None:
    at = datetime.now(UTC)
    full = Weigering(
        request_id=uuid.uuid4().hex,
        at=at,
        code=ErrorCode.SCHEMA_INVALID,
        detail="element X: not expected",
        afzender=AANBIEDER,
        standaard="iWmo",
        berichttype="WMO303",
        sha256="0" * 64,
        size=1234,
    )
    bare = Weigering(request_id=uuid.uuid4().hex, at=at, code=ErrorCode.UNAUTHENTICATED, detail="no token")
    await asyncio.gather(store.record_refusal(full), store.record_refusal(bare))

    async with other_engine.connect() as conn:
        rows = (await conn.execute(select(weigeringen).order_by(weigeringen.c.code))).mappings().all()
    assert [(r["request_id"], r["code"]) for r in rows] == [
        (full.request_id, "schema_invalid"),
        (bare.request_id, "unauthenticated"),
    ]
    assert (rows[0]["afzender_kind"], rows[0]["afzender_code"], rows[0]["size"]) == (
        "aanbieder",
        "12345678",
        1234,
    )
    assert rows[0]["at"] == at
    assert rows[1]["afzender_code"] is None and rows[1]["sha256"] is None


async def test_unforwarded_lists_old_received_messages_oldest_first(store: SqlAlchemyAuditStore) -> None:
    now = datetime.now(UTC)
    old, older, recent, forwarded = (
        nieuw(received_at=now - timedelta(minutes=5)),
        nieuw(received_at=now - timedelta(minutes=10)),
        nieuw(received_at=now - timedelta(seconds=1)),
        nieuw(received_at=now - timedelta(minutes=20)),
    )
    for b in (old, older, recent, forwarded):
        await store.store_received(b)
    await store.mark_forwarded(forwarded.message_id, queue="q")

    cutoff = now - timedelta(minutes=1)
    assert [s.message_id for s in await store.unforwarded(cutoff, 10)] == [older.message_id, old.message_id]
    assert [s.message_id for s in await store.unforwarded(cutoff, 1)] == [older.message_id]


async def test_close_commits_what_is_queued(database_url: str, other_engine: AsyncEngine) -> None:
    s = await create_audit_store(database_url)
    pending = [asyncio.ensure_future(s.store_received(nieuw())) for _ in range(30)]
    await asyncio.sleep(0)  # let them queue
    await s.close()
    await asyncio.gather(*pending)
    assert await count(other_engine, "berichten") == 30
    with pytest.raises(StoreUnavailable):
        await s.store_received(nieuw())


# -- availability ---------------------------------------------------------------------------------


async def test_unreachable_database_gives_store_unavailable_quickly() -> None:
    s = await create_audit_store("postgresql+asyncpg://postgres@127.0.0.1:1/nothing")
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await s.store_received(nieuw())
        with pytest.raises(StoreUnavailable):
            await s.get(str(uuid.uuid4()))
        with pytest.raises(StoreUnavailable):
            await s.ping()
        assert time.monotonic() - started < 30  # bounded: no hang (the real bound is connect timeouts)
    finally:
        await s.close()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_store_recovers_after_its_postgres_connections_are_killed(
    store: SqlAlchemyAuditStore, database_url: str
) -> None:
    await store.store_received(nieuw())
    await store.ping()

    killer = create_engine(database_url, pool_size=1)
    try:
        async with killer.connect() as conn:
            killed = (
                await conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
            ).scalar_one()
    finally:
        await killer.dispose()
    assert killed >= 1  # the store's pooled connections were there, and are gone now

    # The writer and the readers notice the dead connections (pre-ping) and reconnect by themselves.
    after = nieuw()
    await store.store_received(after)
    await store.mark_forwarded(after.message_id, queue="q")
    stored = await store.get(after.message_id)
    assert stored is not None and stored.status is BerichtStatus.FORWARDED
    await store.ping()


async def test_a_batch_of_new_messages_and_marks_writes_what_each_call_would(
    store: SqlAlchemyAuditStore,
) -> None:
    """A mark changes only a `received` row, adds `published` to every stored message, and is
    UnknownMessage for one that is not stored; the other writes of the batch commit."""
    waiting, settled = nieuw(), nieuw()
    await asyncio.gather(store.store_received(waiting), store.store_received(settled))
    assert await store.mark_in_mailbox(settled.message_id)  # a worker was quicker than the mark
    new, unknown = nieuw(), str(uuid.uuid4())
    batches = store.writer.batches
    results = await asyncio.gather(
        store.store_received(new),
        store.mark_forwarded(waiting.message_id, queue="q"),
        store.mark_forwarded(settled.message_id, queue="q"),
        store.mark_forwarded(unknown, queue="q"),
        return_exceptions=True,
    )
    assert store.writer.batches == batches + 1  # one batch, in which the unknown id fails alone
    assert results[0] == stored_from_new(new) and results[1] is None and results[2] is None
    assert isinstance(results[3], UnknownMessage)
    rows = {b.message_id: await store.get(b.message_id) for b in (waiting, settled, new)}
    assert {mid: row.status if row else None for mid, row in rows.items()} == {
        waiting.message_id: BerichtStatus.FORWARDED,
        settled.message_id: BerichtStatus.IN_MAILBOX,
        new.message_id: BerichtStatus.RECEIVED,
    }
    assert [(e.seq, e.kind) for e in await store.events(waiting.message_id)] == [
        (1, "received"), (2, "accepted"), (3, "published"),
    ]
    assert [(e.seq, e.kind) for e in await store.events(settled.message_id)] == [
        (1, "received"), (2, "accepted"), (3, "in_mailbox"), (4, "published"),
    ]
    assert (await store.events(waiting.message_id))[-1].detail == {"queue": "q"}
    assert await store.events(unknown) == []
