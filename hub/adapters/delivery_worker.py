"""The delivery worker's RabbitMQ side: which queues to consume, and carrying out Decisions.

- Queue discovery: every few seconds the worker asks the database which receivers have messages in
  their queue (status forwarded, or received: published, not yet marked) and consumes those whose
  channel is push or mailbox; a receiver on the
  AMQP channel consumes its queue itself, so the worker cancels its consumer there, and records as
  delivered what was forwarded to that queue before the worker last saw it empty (see _settle_amqp).
- One consumer per receiver queue with a bounded prefetch (HUB_WORKER_PREFETCH): a slow or dead
  receiver holds only its own few messages, never another receiver's (no head-of-line blocking
  across receivers). The messages in hand share database reads and commits (batched look-ups,
  group commit), so a larger prefetch costs less per message.
- Retries wait in RabbitMQ, not in the worker: a copy goes to a delay queue (one per level, a fixed
  TTL each) whose dead-letter exchange is the main exchange, so on expiry it returns to the receiver's
  queue by its original routing key. The copy is confirmed before the original is acked: a crash
  in between repeats an attempt, it never loses one.
- Messages RabbitMQ itself dead-letters (the quorum queue's delivery limit: a worker that crashed on
  the same message again and again) arrive in the dead-letter queue; the worker records them as dead
  letters in the audit trail, where `hub deadletters` and replay find them.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from hub.adapters.broker import Topology
from hub.domain.directory import Kanaal
from hub.domain.parties import PartyKind, PartyRef
from hub.domain.routing import RoutingRules, queue_key
from hub.domain.vandaag import vandaag
from hub.service.delivery import Action, Decision, Delivery, Envelope
from hub.service.observe import DeliveryObserver, NullDeliveryObserver
from hub.service.ports import DeliveryStore, StoreUnavailable

PUBLISH_TIMEOUT_S = 10.0  # connect and publish (retry parking) bounds against a stuck RabbitMQ
STORE_WAIT_FIRST_S, STORE_WAIT_MAX_S = 0.5, 10.0  # holding a message while the database is down

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_LEVELS = (1, 2, 5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600)
ATTEMPTS_HEADER = "x-hub-attempts"
FIRST_ATTEMPT_HEADER = "x-hub-first-attempt"


def retry_level(delay: float, draw: Callable[[], float] = random.random) -> int:
    """The delay queue for a wanted delay: one of the two levels around it, drawn so that the mean is
    the wanted delay. Rounding to the nearest level instead would erase the backoff's jitter (levels
    are ~x2 apart, the jitter is +-25 %), and every message of a receiver that was down would come
    back at the same moment."""
    wanted = min(max(delay, RETRY_LEVELS[0]), RETRY_LEVELS[-1])
    i = bisect.bisect_left(RETRY_LEVELS, wanted)
    high = RETRY_LEVELS[i]
    if high == wanted:
        return high
    low = RETRY_LEVELS[i - 1]
    return high if draw() < (wanted - low) / (high - low) else low


class DeliveryWorker:
    def __init__(
        self,
        url: str,
        topology: Topology,
        delivery: Delivery,
        store: DeliveryStore,
        rules: Callable[[], RoutingRules],
        *,
        prefetch: int = 16,
        discover_every: float = 2.0,
        idle_after: float = 600.0,
        today: Callable[[], date] = vandaag,
        amqp_settle_after: float = 30.0,
        observer: DeliveryObserver | None = None,
    ) -> None:
        self._url = url
        self._topology = topology
        self._delivery = delivery
        self._store = store
        self._rules = rules
        self._prefetch = prefetch
        self._discover_every = discover_every
        self._idle_after = idle_after
        self._today = today
        self._amqp_settle_after = timedelta(seconds=amqp_settle_after)
        self._observer = observer or NullDeliveryObserver()
        self._amqp_declared: set[str] = set()  # AMQP receivers' queues declared by this process
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._consumers: dict[str, tuple[AbstractQueue, str]] = {}  # queue key -> (queue, consumer tag)
        self._last_pending: dict[str, float] = {}
        self._discovery: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.handled = 0  # messages handled (for tests and the bench)

    def retry_exchange(self, level: int) -> str:
        return f"{self._topology.exchange}.retry.{level}s"

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(
            self._url, timeout=PUBLISH_TIMEOUT_S, client_properties={"connection_name": "hub-worker"}
        )
        self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        await self._channel.set_qos(prefetch_count=self._prefetch)
        await self._declare(self._channel)
        self._discovery = asyncio.get_running_loop().create_task(self._discover_forever(), name="discovery")

    async def _declare(self, channel: AbstractChannel) -> None:
        t = self._topology
        await channel.declare_exchange(t.exchange, aio_pika.ExchangeType.DIRECT, durable=True)
        dlx = await channel.declare_exchange(
            t.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
        )
        dlq = await channel.declare_queue(
            t.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dlq.bind(dlx, routing_key="#")
        await dlq.consume(self._on_dead_letter)
        for level in RETRY_LEVELS:
            name = self.retry_exchange(level)
            exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.FANOUT, durable=True)
            queue = await channel.declare_queue(
                name,
                durable=True,
                arguments={"x-message-ttl": level * 1000, "x-dead-letter-exchange": t.exchange},
            )
            await queue.bind(exchange)

    async def discover(self) -> None:
        """One round of queue discovery (also called by tests to skip the wait)."""
        assert self._channel is not None
        now = time.monotonic()
        today = self._today()
        rules = self._rules()
        await self._declare_amqp_queues(rules, today)
        for receiver in await self._store.pending_receivers():
            key = queue_key(receiver)
            self._last_pending[key] = now
            kanaal = rules.delivery(receiver, today).kanaal
            if kanaal is Kanaal.AMQP:
                await self._cancel(key)
                await self._settle_amqp(receiver, key)
            elif key not in self._consumers:
                await self._consume(key)
        for key in [k for k, seen in self._last_pending.items() if now - seen > self._idle_after]:
            await self._cancel(key)
            del self._last_pending[key]

    async def _declare_amqp_queues(self, rules: RoutingRules, today: date) -> None:
        """Declare (and bind) the queue of every receiver on the AMQP channel, before its first message:
        its RabbitMQ user may only read its queue (hub amqp access), so it cannot declare it itself."""
        assert self._channel is not None
        for rule in rules.channels:
            key = queue_key(rule.party)
            if key in self._amqp_declared or rules.delivery(rule.party, today).kanaal is not Kanaal.AMQP:
                continue
            await self._receiver_queue(key, bind=True)
            self._amqp_declared.add(key)

    async def _settle_amqp(self, receiver: PartyRef, key: str) -> None:
        """Record the delivery of an AMQP receiver's messages: the hub does not see its consumer.

        A message forwarded (published and confirmed) before the cutoff was in the queue before this
        look; if the queue now holds no ready message, the receiver's consumer has taken it. (One it
        took but never acks, RabbitMQ gives it again: nothing is lost by recording it now.) The margin
        of `amqp_settle_after` covers clock differences between gateway hosts and the time between a
        confirm and the committed `forwarded`.
        """
        cutoff = datetime.now(UTC) - self._amqp_settle_after
        queue = await self._receiver_queue(key)  # the declare's answer counts the ready messages
        result = queue.declaration_result
        if result is None or result.message_count:
            return  # not yet taken: the backlog gauge and its alert show it
        for message_id in await self._store.forwarded_before(receiver, cutoff, limit=1000):
            if await self._store.mark_delivered(message_id, channel="amqp", event="taken_from_queue"):
                self._observer.succeeded("amqp", receiver.kind.value)

    async def _discover_forever(self) -> None:
        while not self._stopping:
            try:
                await self.discover()
            except StoreUnavailable as exc:
                log.warning("queue discovery: database unavailable (%s)", exc)
            except (aio_pika.exceptions.AMQPException, ConnectionError, RuntimeError) as exc:
                log.warning("queue discovery: RabbitMQ unavailable (%s)", type(exc).__name__)
            await asyncio.sleep(self._discover_every)

    async def _receiver_queue(self, key: str, *, bind: bool = False) -> AbstractQueue:
        """Declare a receiver's queue with the hub's arguments (idempotent), and bind it if asked."""
        assert self._channel is not None
        queue = await self._channel.declare_queue(
            self._topology.queue_name(key), durable=True, arguments=self._topology.queue_arguments()
        )
        if bind:
            await queue.bind(await self._channel.get_exchange(self._topology.exchange), routing_key=key)
        return queue

    async def _consume(self, key: str) -> None:
        queue = await self._receiver_queue(key, bind=True)
        tag = await queue.consume(self._on_message)
        self._consumers[key] = (queue, tag)
        log.info("consuming %s", queue.name)

    async def _cancel(self, key: str) -> None:
        found = self._consumers.pop(key, None)
        if found is not None:
            queue, tag = found
            with contextlib.suppress(aio_pika.exceptions.AMQPException, RuntimeError):
                await queue.cancel(tag)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            await self._handle(message)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        headers = message.headers or {}
        envelope = Envelope(
            message_id=message.message_id or "",
            body=message.body,
            attempts=int(str(headers.get(ATTEMPTS_HEADER, 0))),
            first_attempt_at=float(str(headers[FIRST_ATTEMPT_HEADER]))
            if FIRST_ATTEMPT_HEADER in headers
            else None,
        )
        try:
            decision = await self._once_the_store_answers(lambda: self._delivery.handle(envelope))
        except Exception:
            log.exception("delivery of %s failed unexpectedly; put back", envelope.message_id)
            await message.nack(requeue=True)
            return
        if decision is None:  # stopping while the database was down: give it back
            await message.nack(requeue=True)
            return
        self.handled += 1
        if decision.action is Action.ACK:
            await message.ack()
        elif decision.action is Action.REQUEUE:
            await message.nack(requeue=True)
            await self._cancel(message.routing_key or "")
        else:
            await self._retry_later(message, envelope, decision)

    async def _retry_later(
        self, message: AbstractIncomingMessage, envelope: Envelope, decision: Decision
    ) -> None:
        assert self._channel is not None
        level = retry_level(decision.delay)
        headers = dict(message.headers or {})
        headers[ATTEMPTS_HEADER] = decision.attempts
        headers.setdefault(FIRST_ATTEMPT_HEADER, envelope.first_attempt_at or time.time())
        copy = aio_pika.Message(
            message.body,
            headers=headers,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            content_type=message.content_type,
            type=message.type,
            app_id=message.app_id,
        )
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):  # never wait on a stuck broker for ever
                exchange = await self._channel.get_exchange(self.retry_exchange(level))
                # The routing key is the receiver's queue key: the delay queue dead-letters it back there.
                await exchange.publish(copy, routing_key=message.routing_key or "", mandatory=True)
        except Exception:
            log.exception("could not park %s for a retry; put back", envelope.message_id)
            await message.nack(requeue=True)
            return
        await message.ack()

    async def _on_dead_letter(self, message: AbstractIncomingMessage) -> None:
        """RabbitMQ gave up on a message (delivery limit): record it for ops, then drop the copy."""
        reason = "RabbitMQ dead-lettered it (the delivery limit was reached: it failed repeatedly)"
        mid = message.message_id
        if mid:
            marked = await self._once_the_store_answers(
                lambda: self._store.mark_dead_lettered(mid, reason=reason)
            )
            if marked is None:  # stopping while the database was down: give it back
                await message.nack(requeue=True)
                return
            if marked:
                self._count_dead_letter(message.routing_key or "")
        await message.ack()

    async def _once_the_store_answers(self, call: Callable[[], Awaitable[T]]) -> T | None:
        """`call`, again with a growing pause for as long as the database is unavailable; None if the
        worker stops meanwhile. The message stays held meanwhile: a nack would count against the
        quorum queue's delivery limit, and an outage of ~20 s would dead-letter good messages."""
        wait = STORE_WAIT_FIRST_S
        while True:
            try:
                return await call()
            except StoreUnavailable:
                if self._stopping:
                    return None
                await asyncio.sleep(wait)
                wait = min(wait * 2, STORE_WAIT_MAX_S)

    def _count_dead_letter(self, routing_key: str) -> None:
        """For hub_deliveries_dead_lettered_total: the channel in force for the receiver of the key."""
        kind, _, code = routing_key.partition(".")
        try:
            receiver = PartyRef(PartyKind(kind), code)
        except ValueError:
            return
        kanaal = self._rules().delivery(receiver, self._today()).kanaal
        self._observer.dead_lettered(kanaal.value, kind)

    async def stop(self, grace: float = 35.0) -> None:  # > the 30 s a push may take
        """Stop taking messages, let the ones in hand finish (or go back to the queue), disconnect."""
        self._stopping = True
        if self._discovery is not None:
            self._discovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._discovery
        for key in list(self._consumers):
            await self._cancel(key)
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=grace)
        # Whatever is still unacked returns to its queue when the channel closes.
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None

    @property
    def consuming(self) -> set[str]:
        return set(self._consumers)

    def consumes(self, receiver: PartyRef) -> bool:
        return queue_key(receiver) in self._consumers
