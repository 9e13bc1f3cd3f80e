"""The delivery decisions over fakes: classification, backoff, giving up, channels, stale copies."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import date

import pytest

from hub.adapters.broker import Topology
from hub.adapters.delivery_worker import RETRY_LEVELS, DeliveryWorker, retry_level
from hub.domain.directory import ChannelRule, Kanaal, Party
from hub.domain.parties import PartyKind, PartyRef
from hub.domain.retry import Classification, RetryPolicy, classify
from hub.domain.routing import RoutingRules
from hub.service.delivery import Action, Delivery, Envelope, PushResult
from hub.service.observe import NullDeliveryObserver
from hub.service.ports import BerichtStatus
from tests.support.fakes import FakeAuditStore
from tests.support.records import nieuw

PUSH = PartyRef(PartyKind.AANBIEDER, "12345678")
MAILBOX = PartyRef(PartyKind.AANBIEDER, "87654321")
AMQP = PartyRef(PartyKind.GEMEENTE, "0363")
GEMEENTE = PartyRef(PartyKind.GEMEENTE, "0599")


class ScriptedPusher:
    def __init__(self, *answers: PushResult) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, str]] = []

    async def push(self, endpoint: str, body: bytes, headers: dict[str, str]) -> PushResult:
        self.calls.append(headers)
        return self.answers.pop(0)


class Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _rules() -> RoutingRules:
    return RoutingRules(
        "t",
        [Party(PUSH, "push"), Party(MAILBOX, "mailbox"), Party(AMQP, "amqp"), Party(GEMEENTE, "g")],
        channels=[
            ChannelRule(PUSH, Kanaal.PUSH, "https://receiver.example/inbox"),
            ChannelRule(AMQP, Kanaal.AMQP, None),
        ],
    )


async def _stored(
    store: FakeAuditStore, receiver: PartyRef, status: BerichtStatus = BerichtStatus.FORWARDED
) -> str:
    mid = (
        await store.store_received(nieuw(afzender=GEMEENTE, receiver=receiver, ontvanger=receiver.code))
    ).message_id
    if status is not BerichtStatus.RECEIVED:
        await store.mark_forwarded(mid, queue="q")
    if status is BerichtStatus.DELIVERED:
        await store.mark_delivered(mid, channel="push")
    return mid


def _delivery(
    store: FakeAuditStore, pusher: ScriptedPusher, clock: Clock, policy: RetryPolicy | None = None
) -> Delivery:
    rules = _rules()
    return Delivery(
        store=store,
        stored=store.get,
        rules=lambda: rules,
        pusher=pusher,
        policy=lambda _r: policy or RetryPolicy(max_attempts=3, max_age_seconds=3600),
        clock=clock,
        today=lambda: date(2026, 1, 6),
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, Classification.DELIVERED),
        (204, Classification.DELIVERED),
        (None, Classification.RETRY),
        (408, Classification.RETRY),
        (429, Classification.RETRY),
        (500, Classification.RETRY),
        (503, Classification.RETRY),
        (400, Classification.PERMANENT),
        (404, Classification.PERMANENT),
        (301, Classification.PERMANENT),
    ],
)
def test_classification(status: int | None, expected: Classification) -> None:
    assert classify(status) is expected


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(base_seconds=5, factor=2, cap_seconds=3600, jitter=0.25)
    rng = random.Random(7)
    for attempts, nominal in ((1, 5), (2, 10), (5, 80), (20, 3600)):
        draws = [policy.delay(attempts, rng) for _ in range(200)]
        assert nominal * 0.75 <= min(draws) and max(draws) <= nominal * 1.25
        assert max(draws) - min(draws) > nominal * 0.2, "jitter spreads retries"
    assert policy.give_up(150, 0) and policy.give_up(1, 5 * 24 * 3600) and policy.give_up(3, 60) is None


def test_retry_levels_keep_the_wanted_delay_on_average_and_the_jitter() -> None:
    assert retry_level(0.1) == 1 and retry_level(10) == 10 and retry_level(10_000) == RETRY_LEVELS[-1]
    assert retry_level(7, draw=lambda: 0.0) == 10 and retry_level(7, draw=lambda: 0.99) == 5
    rng = random.Random(7)
    for wanted in (1.3, 4.0, 6.5, 37.0, 1000.0):
        levels = [retry_level(wanted, rng.random) for _ in range(4000)]
        assert set(levels) <= set(RETRY_LEVELS) and len(set(levels)) == 2
        assert sum(levels) / len(levels) == pytest.approx(wanted, rel=0.05)
    # Jittered delays around 5 s spread over two queues, not all into the 5 s one.
    spread = {retry_level(5 * rng.uniform(0.75, 1.25), rng.random) for _ in range(200)}
    assert spread == {2, 5, 10}


async def test_push_2xx_is_delivered_with_the_message_id_header() -> None:
    store = FakeAuditStore()
    mid = await _stored(store, PUSH)
    pusher = ScriptedPusher(PushResult(200))
    decision = await _delivery(store, pusher, Clock()).handle(Envelope(mid, b"<x/>"))
    assert decision.action is Action.ACK
    assert store.rows[mid].status is BerichtStatus.DELIVERED and store.rows[mid].attempts == 1
    assert pusher.calls[0]["X-Message-Id"] == mid and pusher.calls[0]["X-Delivery-Attempt"] == "1"


async def test_a_message_still_marked_received_is_delivered_too() -> None:
    store = FakeAuditStore()
    mid = await _stored(store, PUSH, BerichtStatus.RECEIVED)
    decision = await _delivery(store, ScriptedPusher(PushResult(200)), Clock()).handle(Envelope(mid, b"x"))
    assert decision.action is Action.ACK and store.rows[mid].status is BerichtStatus.DELIVERED


async def test_5xx_and_no_answer_are_retried_then_given_up() -> None:
    store, clock = FakeAuditStore(), Clock()
    mid = await _stored(store, PUSH)
    delivery = _delivery(
        store, ScriptedPusher(PushResult(503), PushResult(None, "timeout"), PushResult(500)), clock
    )
    first = await delivery.handle(Envelope(mid, b"x"))
    assert first.action is Action.RETRY and first.attempts == 1 and first.delay > 0
    second = await delivery.handle(Envelope(mid, b"x", attempts=1, first_attempt_at=clock.now))
    assert second.action is Action.RETRY and second.attempts == 2
    third = await delivery.handle(Envelope(mid, b"x", attempts=2, first_attempt_at=clock.now))
    assert third.action is Action.ACK and "gave up after 3 attempts" in third.reason
    assert store.rows[mid].status is BerichtStatus.DEAD_LETTERED
    assert "HTTP 500" in (store.rows[mid].last_error or "")


async def test_max_age_ends_retrying() -> None:
    store, clock = FakeAuditStore(), Clock()
    mid = await _stored(store, PUSH)
    delivery = _delivery(store, ScriptedPusher(PushResult(500)), clock, RetryPolicy(max_age_seconds=60))
    decision = await delivery.handle(Envelope(mid, b"x", attempts=4, first_attempt_at=clock.now - 61))
    assert decision.action is Action.ACK and store.rows[mid].status is BerichtStatus.DEAD_LETTERED


async def test_4xx_goes_straight_to_the_dead_letters() -> None:
    store = FakeAuditStore()
    mid = await _stored(store, PUSH)
    decision = await _delivery(store, ScriptedPusher(PushResult(400)), Clock()).handle(Envelope(mid, b"x"))
    assert decision.action is Action.ACK and store.rows[mid].status is BerichtStatus.DEAD_LETTERED


async def test_mailbox_receiver_gets_it_in_the_mailbox_and_amqp_receiver_is_left_alone() -> None:
    store = FakeAuditStore()
    in_mailbox = await _stored(store, MAILBOX)
    own_queue = await _stored(store, AMQP)
    pusher = ScriptedPusher()
    delivery = _delivery(store, pusher, Clock())
    assert (await delivery.handle(Envelope(in_mailbox, b"x"))).action is Action.ACK
    assert store.rows[in_mailbox].status is BerichtStatus.IN_MAILBOX
    assert (await delivery.handle(Envelope(own_queue, b"x"))).action is Action.REQUEUE
    assert not pusher.calls


async def test_a_stale_copy_of_a_delivered_message_is_dropped_without_a_push() -> None:
    store = FakeAuditStore()
    mid = await _stored(store, PUSH, BerichtStatus.DELIVERED)
    pusher = ScriptedPusher()
    decision = await _delivery(store, pusher, Clock()).handle(Envelope(mid, b"x"))
    assert decision.action is Action.ACK and not pusher.calls
    unknown = await _delivery(store, pusher, Clock()).handle(Envelope(str(uuid.uuid4()), b"x"))
    assert unknown.action is Action.ACK and not pusher.calls


class HeldMessage:
    """Enough of an aio-pika incoming message for DeliveryWorker._handle."""

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.body = b"<x/>"
        self.headers: dict[str, object] = {}
        self.routing_key = "aanbieder.12345678"
        self.settled: list[str] = []

    async def ack(self) -> None:
        self.settled.append("ack")

    async def nack(self, requeue: bool = True) -> None:
        self.settled.append("nack")


async def test_a_database_outage_holds_the_message_instead_of_spending_its_delivery_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each nack counts against the quorum queue's delivery limit (20): nacking every second while the
    # database is down would dead-letter a good message after ~20 s of outage.
    monkeypatch.setattr("hub.adapters.delivery_worker.STORE_WAIT_FIRST_S", 0.01)
    monkeypatch.setattr("hub.adapters.delivery_worker.STORE_WAIT_MAX_S", 0.02)
    store = FakeAuditStore()
    mid = await _stored(store, PUSH)
    pusher = ScriptedPusher(PushResult(200))
    rules = _rules()
    delivery = _delivery(store, pusher, Clock())
    worker = DeliveryWorker("amqp://unused", Topology(), delivery, store, lambda: rules)
    message = HeldMessage(mid)
    store.down = True
    handling = asyncio.create_task(worker._handle(message))  # type: ignore[arg-type]
    await asyncio.sleep(1.5)  # many waits of 10-20 ms (and longer than the 1 s the old nack waited)
    assert message.settled == [] and not handling.done()
    store.down = False
    await asyncio.wait_for(handling, 5)
    assert message.settled == ["ack"] and store.rows[mid].status is BerichtStatus.DELIVERED


async def test_a_stopping_worker_gives_a_held_message_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hub.adapters.delivery_worker.STORE_WAIT_FIRST_S", 0.01)
    store = FakeAuditStore()
    mid = await _stored(store, PUSH)
    rules = _rules()
    worker = DeliveryWorker(
        "amqp://unused", Topology(), _delivery(store, ScriptedPusher(), Clock()), store, lambda: rules
    )
    message = HeldMessage(mid)
    store.down = True
    handling = asyncio.create_task(worker._handle(message))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    await worker.stop(grace=5)
    await asyncio.wait_for(handling, 5)
    assert message.settled == ["nack"]


class CountingObserver(NullDeliveryObserver):
    def __init__(self) -> None:
        self.dead: list[tuple[str, str]] = []

    def dead_lettered(self, channel: str, receiver_kind: str) -> None:
        self.dead.append((channel, receiver_kind))


async def test_a_message_rabbitmq_dead_letters_is_recorded_and_counted_once() -> None:
    store = FakeAuditStore()
    mid = await _stored(store, PUSH)
    rules = _rules()
    observer = CountingObserver()
    worker = DeliveryWorker(
        "amqp://unused",
        Topology(),
        _delivery(store, ScriptedPusher(), Clock()),
        store,
        lambda: rules,
        observer=observer,
    )
    for _ in range(2):  # a second copy of the same dead letter is not counted again
        message = HeldMessage(mid)
        await worker._on_dead_letter(message)  # type: ignore[arg-type]
        assert message.settled == ["ack"]
    assert store.rows[mid].status is BerichtStatus.DEAD_LETTERED
    assert observer.dead == [("push", "aanbieder")]
