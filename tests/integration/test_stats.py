"""The metrics' hub-wide numbers (hub/adapters/db/stats.py) on real SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import update

from hub.adapters.db import SqlAlchemyAuditStore, create_audit_store
from hub.adapters.db.stats import SqlStats
from hub.adapters.db.tables import berichten
from hub.domain.catalogue import CATALOGUE
from hub.domain.parties import PartyKind, PartyRef
from tests.support.records import nieuw

NOW = datetime(2026, 3, 11, 12, 0, tzinfo=UTC)  # a Wednesday
GEMEENTE = PartyRef(PartyKind.GEMEENTE, "0363")


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlAlchemyAuditStore]:
    s = await create_audit_store(database_url)
    yield s
    await s.close()


async def _set(store: SqlAlchemyAuditStore, message_id: str, **values: object) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(update(berichten).where(berichten.c.message_id == message_id).values(**values))


async def test_backlog_dead_letters_unforwarded_and_overdue(store: SqlAlchemyAuditStore) -> None:
    stats = SqlStats(store.engine, CATALOGUE)
    empty = await stats.read(NOW)
    assert (empty.backlog, empty.dead_lettered, empty.unforwarded, empty.overdue) == ({}, {}, 0, {})

    async def stored(status: str, age: timedelta, **changes: object) -> str:
        b = nieuw(received_at=NOW - age, **changes)
        await store.store_received(b)
        await _set(store, b.message_id, status=status)
        return b.message_id

    # Backlog: forwarded and in_mailbox count, per receiver kind, with the oldest one's time.
    await stored("forwarded", timedelta(hours=5))
    await stored("in_mailbox", timedelta(hours=1))
    await stored("forwarded", timedelta(minutes=3), receiver=GEMEENTE, ontvanger="0363")
    # Not backlog: delivered, dead-lettered, still received.
    await stored("delivered", timedelta(days=2))
    await stored("dead_lettered", timedelta(days=1))
    await stored("dead_lettered", timedelta(days=1), receiver=GEMEENTE, ontvanger="0363")
    await stored("received", timedelta(minutes=5))
    await stored("received", timedelta(seconds=10))  # too young to call stuck

    # Overdue: due before today and unanswered; answered or due today/later is not; nor too old.
    await stored("delivered", timedelta(days=5), answer_due=date(2026, 3, 10))
    await stored("delivered", timedelta(days=5), answer_due=date(2026, 3, 9))
    await stored("delivered", timedelta(days=5), answer_due=date(2026, 3, 11))
    answered = await stored("delivered", timedelta(days=5), answer_due=date(2026, 3, 2))
    await _set(store, answered, answered_at=NOW - timedelta(days=1))
    await stored("delivered", timedelta(days=200), answer_due=date(2025, 8, 1))
    jw = replace(nieuw(received_at=NOW - timedelta(days=9)), standaard="iJw", berichttype="JW315")
    jw = replace(jw, answer_due=date(2026, 3, 4))
    await store.store_received(jw)
    await _set(store, jw.message_id, status="delivered")

    s = await stats.read(NOW)
    assert {k: v.messages for k, v in s.backlog.items()} == {"aanbieder": 2, "gemeente": 1}
    oldest = s.backlog["aanbieder"].oldest_received_at
    assert oldest is not None and oldest == NOW - timedelta(hours=5)
    assert s.dead_lettered == {"aanbieder": 1, "gemeente": 1}
    assert s.unforwarded == 1
    assert s.overdue == {("iWmo", "WMO301"): 2, ("iJw", "JW315"): 1}


def test_tracked_types_are_the_heenberichten_with_a_deadline() -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine("sqlite+aiosqlite://")
    names = {t.naam for t in SqlStats(engine, CATALOGUE).heen_types}
    assert {"WMO301", "JW315", "WMO323"} <= names
    assert not names & {"WMO302", "JW316", "WMO325"}
