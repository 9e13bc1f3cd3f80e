"""Replay over fakes: a replay RabbitMQ does not take leaves the message among the dead letters."""

from __future__ import annotations

from hub.service.ports import BerichtStatus
from hub.service.replay import replay
from tests.support.fakes import FakeAuditStore, FakePublisher
from tests.support.records import nieuw


async def _dead_letter(store: FakeAuditStore) -> str:
    mid = (await store.store_received(nieuw())).message_id
    await store.mark_forwarded(mid, queue="q")
    await store.mark_dead_lettered(mid, reason="400 from the receiver")
    return mid


async def test_a_replay_is_published_under_the_same_message_id() -> None:
    store, publisher = FakeAuditStore(), FakePublisher()
    mid = await _dead_letter(store)
    result = await replay(mid, store=store, publisher=publisher, by="cli:test")
    assert result.ok and [b.message_id for b, _ in publisher.published] == [mid]
    assert store.rows[mid].status is BerichtStatus.FORWARDED


async def test_a_replay_rabbitmq_did_not_take_stays_a_dead_letter_to_replay_again() -> None:
    store, publisher = FakeAuditStore(), FakePublisher()
    mid = await _dead_letter(store)
    publisher.down = True
    result = await replay(mid, store=store, publisher=publisher, by="cli:test")
    assert not result.ok and "replay it again" in result.detail
    assert store.rows[mid].status is BerichtStatus.DEAD_LETTERED
    assert [d.message_id for d in await store.dead_letters(limit=10)] == [mid]
    kinds = [e.kind for e in await store.events(mid)]
    assert kinds[-3:] == ["replayed", "replay_publish_failed", "dead_lettered"]
    publisher.down = False
    assert (await replay(mid, store=store, publisher=publisher, by="cli:test")).ok
