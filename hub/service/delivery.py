"""Delivery: what to do with one message taken from a receiver's queue.

The worker (hub/adapters/delivery_worker.py) consumes the queues and carries out the Decision this
service returns: acknowledge, wait and retry, or put back. Everything the receiver and ops should know
goes into the audit trail first, so a crash after a decision at worst repeats an attempt; the
receiver can drop the repeat by its X-Message-Id.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Protocol

from hub.domain.directory import Kanaal
from hub.domain.parties import PartyRef
from hub.domain.retry import Classification, RetryPolicy, classify
from hub.domain.routing import RoutingRules
from hub.domain.vandaag import vandaag
from hub.service.observe import DeliveryObserver, NullDeliveryObserver
from hub.service.ports import BerichtStatus, DeliveryStore, StoredBericht

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PushResult:
    status: int | None  # the receiver's HTTP status; None when it did not answer
    error: str | None = None  # what went wrong without an answer (connection refused, timeout ...)


class Pusher(Protocol):
    async def push(self, endpoint: str, body: bytes, headers: dict[str, str]) -> PushResult: ...


class Action(StrEnum):
    ACK = "ack"  # done with this copy (delivered, moved to the mailbox, dead-lettered, or stale)
    RETRY = "retry"  # acknowledge after publishing a copy that comes back after `delay`
    REQUEUE = "requeue"  # not ours to handle (the receiver now consumes its queue itself)


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    delay: float = 0.0
    attempts: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Envelope:
    """One copy of a message as the worker took it from the queue."""

    message_id: str
    body: bytes
    attempts: int = 0  # failed attempts so far (carried in the copy's headers)
    first_attempt_at: float | None = None  # epoch seconds of the first attempt
    headers: dict[str, str] = field(default_factory=dict)


class Delivery:
    def __init__(
        self,
        *,
        store: DeliveryStore,
        stored: Callable[[str], Awaitable[StoredBericht | None]],
        rules: Callable[[], RoutingRules],
        pusher: Pusher,
        policy: Callable[[PartyRef], RetryPolicy],
        clock: Callable[[], float],
        today: Callable[[], date] = vandaag,
        observer: DeliveryObserver | None = None,
    ) -> None:
        self._store = store
        self._get = stored
        self._rules = rules
        self._pusher = pusher
        self._policy = policy
        self._clock = clock
        self._today = today
        self._observer = observer or NullDeliveryObserver()

    async def handle(self, envelope: Envelope) -> Decision:
        stored = await self._get(envelope.message_id)
        if stored is None:
            log.warning("a queue holds message %s that the hub has no row for; dropped", envelope.message_id)
            return Decision(Action.ACK, reason="unknown message")
        # RECEIVED too: the broker confirmed the publish, the intake has not yet committed `forwarded`.
        if stored.status not in (BerichtStatus.RECEIVED, BerichtStatus.FORWARDED, BerichtStatus.IN_MAILBOX):
            # A second copy (a retry after a crash, or a replay raced by an ack): already settled.
            return Decision(Action.ACK, reason=f"already {stored.status.value}")
        bestemming = self._rules().delivery(stored.receiver, self._today())
        if bestemming.kanaal is Kanaal.AMQP:
            return Decision(Action.REQUEUE, reason="the receiver consumes its queue itself")
        if bestemming.kanaal is Kanaal.MAILBOX:
            if stored.status is not BerichtStatus.IN_MAILBOX:
                await self._store.mark_in_mailbox(stored.message_id)
            return Decision(Action.ACK, reason="in mailbox")
        assert bestemming.endpoint is not None, "the routing rules require an endpoint for push"
        return await self._push(stored, envelope, bestemming.endpoint)

    async def _push(self, stored: StoredBericht, envelope: Envelope, endpoint: str) -> Decision:
        kind = stored.receiver.kind.value
        attempt = envelope.attempts + 1
        headers = {
            "Content-Type": "application/xml",
            "X-Message-Id": stored.message_id,
            "X-Conversation-Id": stored.conversation_id,
            "X-Bericht-Type": stored.berichttype,
            "X-Standaard": stored.standaard,
            "X-Delivery-Attempt": str(attempt),
        }
        self._observer.attempted("push", kind)
        started = self._clock()
        result = await self._pusher.push(endpoint, envelope.body, headers)
        took = self._clock() - started
        verdict = classify(result.status)
        outcome = "ok" if verdict is Classification.DELIVERED else verdict.value
        detail: dict[str, object] = {"attempt": attempt, "status": result.status}
        if result.error:
            detail["error"] = result.error
        elif verdict is not Classification.DELIVERED:
            detail["error"] = f"HTTP {result.status}"
        if verdict is Classification.DELIVERED:
            # The attempt and the status in one commit, while the message holds one of the receiver's
            # few delivery slots.
            await self._store.record_delivered(stored.message_id, channel="push", detail=detail)
            self._observer.succeeded("push", kind, took)
            return Decision(Action.ACK, attempts=attempt, reason="delivered")
        await self._store.record_attempt(stored.message_id, channel="push", outcome=outcome, detail=detail)
        if verdict is Classification.PERMANENT:
            return await self._dead(stored, f"the receiver refused it: HTTP {result.status}", attempt)
        policy = self._policy(stored.receiver)
        first = envelope.first_attempt_at if envelope.first_attempt_at is not None else self._clock()
        give_up = policy.give_up(attempt, self._clock() - first)
        if give_up is not None:
            last = result.error or f"HTTP {result.status}"
            return await self._dead(stored, f"{give_up}; last: {last}", attempt)
        self._observer.retried("push", kind)
        return Decision(Action.RETRY, delay=policy.delay(attempt), attempts=attempt, reason=outcome)

    async def _dead(self, stored: StoredBericht, reason: str, attempts: int) -> Decision:
        await self._store.mark_dead_lettered(stored.message_id, reason=reason)
        self._observer.dead_lettered("push", stored.receiver.kind.value)
        return Decision(Action.ACK, attempts=attempts, reason=reason)
