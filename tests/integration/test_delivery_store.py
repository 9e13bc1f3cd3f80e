"""The delivery side of the store on real SQLite and PostgreSQL: compare-and-set transitions,
mailbox pages, conversations and overdue answers, and retention that frees space."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import event, text, update

from hub.adapters.db import create_audit_store
from hub.adapters.db.audit_store import SqlAlchemyAuditStore
from hub.adapters.db.tables import berichten
from hub.domain.parties import PartyKind, PartyRef
from hub.service.ports import BerichtStatus, NieuwBericht

GEMEENTE = PartyRef(PartyKind.GEMEENTE, "0363")
AANBIEDER = PartyRef(PartyKind.AANBIEDER, "12345678")


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlAlchemyAuditStore]:
    s = await create_audit_store(database_url)
    yield s
    await s.close()


def _nieuw(
    receiver: PartyRef = AANBIEDER,
    *,
    body: bytes = b"<x/>",
    answers: str | None = None,
    conversation: str | None = None,
    due: date | None = None,
    at: datetime | None = None,
) -> NieuwBericht:
    mid = str(uuid.uuid4())
    return NieuwBericht(
        message_id=mid,
        conversation_id=conversation or mid,
        standaard="iWmo",
        release="3.2",
        berichttype="WMO302" if answers else "WMO301",
        berichtcode="414",
        afzender=AANBIEDER if answers else GEMEENTE,
        ontvanger=receiver.code,
        receiver=receiver,
        identificatie=mid[:12],
        dagtekening=date(2026, 1, 5),
        answers_message_id=answers,
        sha256="0" * 64,
        size=len(body),
        body=body,
        received_at=at or datetime.now(UTC),
        request_id="r",
        routing_version="t",
        answer_due=due,
        retourcodes=("0200", "8001") if answers else (),
    )


async def _forwarded(store: SqlAlchemyAuditStore, b: NieuwBericht) -> str:
    await store.store_received(b)
    await store.mark_forwarded(b.message_id, queue="q")
    return b.message_id


async def test_transitions_are_compare_and_set(store: SqlAlchemyAuditStore) -> None:
    mid = await _forwarded(store, _nieuw())
    assert await store.mark_in_mailbox(mid)
    assert not await store.mark_in_mailbox(mid)
    # Two completers race (two workers, or a worker and an ack): exactly one wins.
    results = await asyncio.gather(
        *(store.mark_delivered(mid, channel="mailbox", event="acked") for _ in range(5))
    )
    assert sorted(results) == [False, False, False, False, True]
    assert not await store.mark_dead_lettered(mid, reason="late")
    row = await store.get(mid)
    assert row is not None and row.status is BerichtStatus.DELIVERED and row.delivered_at is not None
    assert [e.kind for e in await store.events(mid)].count("acked") == 1


async def test_mark_forwarded_never_undoes_a_delivery(store: SqlAlchemyAuditStore) -> None:
    b = _nieuw()
    await store.store_received(b)
    assert await store.mark_delivered(b.message_id, channel="push")  # the worker was quicker
    await store.mark_forwarded(b.message_id, queue="q")
    row = await store.get(b.message_id)
    assert row is not None and row.status is BerichtStatus.DELIVERED


async def test_successful_pushes_of_one_batch_count_each_attempt_once(store: SqlAlchemyAuditStore) -> None:
    ids = [await _forwarded(store, _nieuw()) for _ in range(3)]
    # As the worker does: attempt and `delivered` handed to the writer at once, for several messages.
    await asyncio.gather(
        *(
            call
            for mid in ids
            for call in (
                store.record_attempt(mid, channel="push", outcome="ok", detail={"attempt": 1}),
                store.mark_delivered(mid, channel="push"),
            )
        )
    )
    for mid in ids:
        row = await store.get(mid)
        assert row is not None and row.status is BerichtStatus.DELIVERED and row.attempts == 1
        assert [e.kind for e in await store.events(mid)][-2:] == ["delivery_attempted", "delivered"]


async def test_a_delivery_is_its_attempt_and_its_status_in_one_commit(store: SqlAlchemyAuditStore) -> None:
    ids = [await _forwarded(store, _nieuw()) for _ in range(3)]
    assert await store.mark_delivered(ids[2], channel="push")  # settled before: loses below
    batches = store.writer.batches
    results = await asyncio.gather(
        *(store.record_delivered(mid, channel="push", detail={"attempt": 1, "status": 200}) for mid in ids)
    )
    assert results == [True, True, False]
    assert store.writer.batches == batches + 1  # the worker's messages in hand share one commit
    for mid in ids[:2]:
        row = await store.get(mid)
        assert row is not None and row.status is BerichtStatus.DELIVERED and row.attempts == 1
        kinds = [e.kind for e in await store.events(mid)]
        assert kinds[-2:] == ["delivery_attempted", "delivered"]
    # The late copy's attempt is on record; its status and delivered event stay the first ones.
    kinds = [e.kind for e in await store.events(ids[2])]
    assert kinds.count("delivered") == 1 and kinds[-1] == "delivery_attempted"


async def test_transitions_of_one_batch_are_applied_together_and_each_still_compare_and_set(
    store: SqlAlchemyAuditStore,
) -> None:
    ids = [await _forwarded(store, _nieuw()) for _ in range(4)]
    assert await store.mark_delivered(ids[3], channel="push")  # settled before: must lose below
    mailbox, dead = await _forwarded(store, _nieuw()), [await _forwarded(store, _nieuw()) for _ in range(2)]
    batches = store.writer.batches
    # Handed to the writer at once, as a worker with 16 messages in hand does: one batch.
    results = await asyncio.gather(
        *(store.mark_delivered(mid, channel="push") for mid in ids),
        store.mark_in_mailbox(mailbox),
        *(store.mark_dead_lettered(mid, reason="HTTP 400") for mid in dead),
    )
    assert results == [True, True, True, False, True, True, True]
    assert store.writer.batches == batches + 1
    for mid in ids[:3]:
        row = await store.get(mid)
        assert row is not None and row.status is BerichtStatus.DELIVERED and row.delivered_at is not None
        assert [e.kind for e in await store.events(mid)].count("delivered") == 1
    assert [e.kind for e in await store.events(ids[3])].count("delivered") == 1  # no second event
    row = await store.get(mailbox)
    assert row is not None and row.status is BerichtStatus.IN_MAILBOX and row.delivered_at is None
    for mid in dead:
        row = await store.get(mid)
        assert row is not None and row.status is BerichtStatus.DEAD_LETTERED and row.last_error == "HTTP 400"


async def test_events_are_numbered_without_gaps_in_batches_of_every_kind(store: SqlAlchemyAuditStore) -> None:
    """The UPDATEs return each changed row's last event number (on PostgreSQL), so the batch's events
    need no SELECT: the numbers must come out 1, 2, 3... per message all the same, on both databases,
    with other messages' events (more of them) in the same table and the same batch."""
    crowd = [await _forwarded(store, _nieuw()) for _ in range(3)]
    for mid in crowd:
        for n in range(5):
            await store.add_event(mid, "note", {"n": n})
    new = [_nieuw() for _ in range(3)]
    ids = [b.message_id for b in new]
    await asyncio.gather(*(store.store_received(b) for b in new))
    # Forwarded marks, a note on the same message and on a crowded one, in one batch.
    await asyncio.gather(
        *(store.mark_forwarded(mid, queue="q") for mid in ids),
        store.add_event(ids[0], "duplicate_received", {}),
        store.add_event(crowd[0], "note", {"n": 5}),
    )
    # A worker's batch: attempt + delivered per message, and a move to the mailbox.
    await asyncio.gather(
        *(
            call
            for mid in ids[:2]
            for call in (
                store.record_attempt(mid, channel="push", outcome="ok", detail={"attempt": 1}),
                store.mark_delivered(mid, channel="push"),
            )
        ),
        store.mark_in_mailbox(ids[2]),
        store.mark_delivered(crowd[1], channel="push"),
    )
    for mid in [*ids, *crowd]:
        seqs = [e.seq for e in await store.events(mid)]
        assert seqs == list(range(1, len(seqs) + 1)), (mid, seqs)
    assert [e.kind for e in await store.events(ids[0])] == [
        "received", "accepted", "published", "duplicate_received", "delivery_attempted", "delivered",
    ]
    assert [e.kind for e in await store.events(ids[2])][-1] == "in_mailbox"
    assert len(await store.events(crowd[0])) == 9 and len(await store.events(crowd[1])) == 9


async def test_on_postgresql_marks_and_deliveries_number_their_events_without_a_select(
    store: SqlAlchemyAuditStore,
) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite reads the last event numbers with a SELECT")
    ids = [b.message_id for b in [_nieuw() for _ in range(4)] if await store.store_received(b)]
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", seen)
    try:
        await asyncio.gather(*(store.mark_forwarded(mid, queue="q") for mid in ids))
        await asyncio.gather(*(store.mark_delivered(mid, channel="push") for mid in ids))
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", seen)
    assert not [s for s in statements if s.lstrip().upper().startswith("SELECT")], statements
    for mid in ids:
        assert [e.seq for e in await store.events(mid)] == [1, 2, 3, 4]


async def test_concurrent_reads_by_id_share_one_query(store: SqlAlchemyAuditStore) -> None:
    ids = [await _forwarded(store, _nieuw()) for _ in range(20)]
    unknown = str(uuid.uuid4())
    queries = store._by_id.queries
    rows = await asyncio.gather(*(store.get(mid) for mid in [*ids, unknown, ids[0]]))
    assert [r.message_id if r else None for r in rows] == [*ids, None, ids[0]]
    assert store._by_id.queries - queries <= 2  # 22 look-ups; a straggler may take a second query


async def test_a_received_message_makes_its_receiver_pending(store: SqlAlchemyAuditStore) -> None:
    """A 202'd message whose `forwarded` mark did not get through is in its queue: the worker must
    consume that queue."""
    other = PartyRef(PartyKind.AANBIEDER, "11223344")
    assert other not in await store.pending_receivers()
    await store.store_received(_nieuw(other))
    assert other in await store.pending_receivers()


async def test_attempts_dead_letters_and_replay(store: SqlAlchemyAuditStore) -> None:
    mid = await _forwarded(store, _nieuw())
    await store.record_attempt(mid, channel="push", outcome="retry", detail={"error": "HTTP 503"})
    assert await store.mark_dead_lettered(mid, reason="the receiver refused it: HTTP 400")
    (dead,) = [d for d in await store.dead_letters(limit=100) if d.message_id == mid]
    assert dead.attempts == 1 and dead.last_error == "the receiver refused it: HTTP 400"
    assert await store.pending_receivers() == [] or AANBIEDER not in await store.pending_receivers()
    await store.mark_replayed(mid, by="test", queue="q")
    assert AANBIEDER in await store.pending_receivers()
    assert [e.kind for e in await store.events(mid)][-3:] == [
        "delivery_attempted",
        "dead_lettered",
        "replayed",
    ]


async def test_mailbox_pages_oldest_first_for_that_receiver_only(store: SqlAlchemyAuditStore) -> None:
    start = datetime.now(UTC) - timedelta(minutes=10)
    mine = [await _forwarded(store, _nieuw(at=start + timedelta(seconds=i))) for i in range(5)]
    await _forwarded(store, _nieuw(PartyRef(PartyKind.AANBIEDER, "87654321")))
    page1 = await store.mailbox(AANBIEDER, include_forwarded=True, limit=3)
    page2 = await store.mailbox(AANBIEDER, include_forwarded=True, limit=3, after=page1.next_cursor)
    assert [b.message_id for b in page1.berichten + page2.berichten] == mine and page2.next_cursor is None
    assert (await store.mailbox(AANBIEDER, include_forwarded=False, limit=10)).berichten == []
    with pytest.raises(ValueError):
        await store.mailbox(AANBIEDER, include_forwarded=True, limit=3, after="garbage")


async def test_an_answer_closes_the_heenberichts_deadline_and_joins_its_conversation(
    store: SqlAlchemyAuditStore,
) -> None:
    heen = _nieuw(GEMEENTE, due=date(2026, 1, 8))
    late = _nieuw(GEMEENTE, due=date(2026, 1, 8))
    await _forwarded(store, heen)
    await _forwarded(store, late)
    overdue = {b.message_id for b in await store.overdue(date(2026, 1, 9), limit=1000)}
    assert {heen.message_id, late.message_id} <= overdue
    retour = _nieuw(GEMEENTE, answers=heen.message_id, conversation=heen.message_id)
    await _forwarded(store, retour)
    overdue = {b.message_id for b in await store.overdue(date(2026, 1, 9), limit=1000)}
    assert heen.message_id not in overdue and late.message_id in overdue
    conversation = await store.conversation(heen.message_id)
    assert [b.message_id for b in conversation] == [heen.message_id, retour.message_id]
    assert conversation[1].retourcodes == ("0200", "8001")
    answered = [e for e in await store.events(heen.message_id) if e.kind == "answered"]
    assert answered[0].detail == {
        "by": retour.message_id,
        "message": "WMO302",
        "retourcodes": ["0200", "8001"],
    }


async def test_retention_deletes_old_delivered_bodies_only_and_frees_space(
    store: SqlAlchemyAuditStore, database_url: str
) -> None:
    body = os.urandom(64 * 1024)  # incompressible, so freed pages are real
    old = [await _forwarded(store, _nieuw(body=body)) for _ in range(40)]
    recent = await _forwarded(store, _nieuw(body=body))
    undelivered = await _forwarded(store, _nieuw(body=body))
    for mid in [*old, recent]:
        assert await store.mark_delivered(mid, channel="push")
    async with store.engine.begin() as conn:
        await conn.execute(
            update(berichten)
            .where(berichten.c.message_id.in_(old))
            .values(delivered_at=datetime.now(UTC) - timedelta(days=61))
        )
    size_before = await _body_space(store)
    cutoff = datetime.now(UTC) - timedelta(days=60)
    deleted = [await store.purge_bodies(cutoff, batch=15) for _ in range(4)]
    assert deleted == [15, 15, 10, 0], "bounded batches until nothing is left"
    await store.reclaim_space()
    for mid in old:
        assert await store.body(mid) is None
        row = await store.get(mid)
        assert row is not None and row.body_purged_at is not None and row.sha256  # metadata stays
        assert [e.kind for e in await store.events(mid)][-1] == "body_purged"
    assert await store.body(recent) == body and await store.body(undelivered) == body
    after_purge = await _body_space(store)
    if store.engine.url.get_backend_name() == "sqlite":
        # Incremental vacuum gives the pages back to the file system.
        assert after_purge < size_before - 30 * len(body)
    # On both engines the freed space is used again: as many new bodies do not grow the store.
    for _ in range(30):
        await _forwarded(store, _nieuw(body=os.urandom(len(body))))
    await store.reclaim_space()
    assert await _body_space(store) < size_before + 5 * len(body)


async def _body_space(store: SqlAlchemyAuditStore) -> int:
    """Bytes the bodies take: the SQLite file (less its free pages), or the PostgreSQL table."""
    async with store.engine.connect() as conn:
        if store.engine.url.get_backend_name() == "sqlite":
            pages = (await conn.execute(text("PRAGMA page_count"))).scalar_one()
            size = (await conn.execute(text("PRAGMA page_size"))).scalar_one()
            return int(pages * size)
        return int((await conn.execute(text("SELECT pg_total_relation_size('bericht_bodies')"))).scalar_one())
