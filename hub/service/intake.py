"""Intake: from posted bytes to a message that is stored and confirmed in its receiver's queue.

The 2xx promise (docs/architecture.md): `submit` returns only after the row and body are committed
and RabbitMQ has confirmed the persistent publish to the receiver's quorum queue. A crash before that
leaves either nothing, or a RECEIVED row that the sender's retry (same identity) publishes under the
same message_id. The status FORWARDED (event `published`) is committed right after, off the answer's
path: the message is in its queue by then, and the worker delivers a RECEIVED message like a
FORWARDED one, so a crash before that commit loses an audit event, never the message.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Protocol

from hub.domain.bericht import Bericht, Fout, Validatie
from hub.domain.catalogue import BerichtType
from hub.domain.errors import ErrorCode, HubError
from hub.domain.parties import PartyKind, PartyRef, kind_of_code
from hub.domain.routing import Bestemming, Party, RoutingRules
from hub.domain.vandaag import vandaag
from hub.domain.werkdagen import add_werkdagen
from hub.service.observe import IntakeObserver, NullIntakeObserver
from hub.service.ports import (
    AuditStore,
    BerichtStatus,
    BodyUnreadable,
    BrokerUnavailable,
    IdentityConflict,
    NieuwBericht,
    Publisher,
    StoredBericht,
    StoreUnavailable,
    Weigering,
)

log = logging.getLogger(__name__)

# A `received` row younger than this may still be in flight in another gateway process: longer than a
# publish may take (its timeout is 5 s) plus a commit under load.
IN_PROGRESS_WINDOW_S = 10.0

# Bodies below this size are validated on the event loop: the thread hop costs more than it saves.
_INLINE_VALIDATION_BYTES = 16 * 1024

# A FORWARDED mark that finds the database unavailable is tried again after these pauses (seconds);
# after the last, the row stays RECEIVED (the message is in its queue all the same).
_MARK_RETRY_PAUSES = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)  # ~1 minute in all
_SETTLE_S = 5.0


class Validates(Protocol):
    def validate(self, data: bytes, *, on: date | None = None) -> Validatie: ...


class RegisteredParties(Protocol):
    async def registered(self, ref: PartyRef) -> Party | None: ...


class Refused(HubError):
    """A refusal of the message itself, with the validation errors when there are any."""

    def __init__(self, code: ErrorCode, detail: str, errors: tuple[Fout, ...] = ()) -> None:
        super().__init__(code, detail)
        self.errors = errors


class Unavailable(Exception):
    """Not now: nothing was promised; the sender should retry later.

    `what`: "database" or "broker" (down), or "in_progress" (the same message is being accepted by
    another request at this moment).
    """

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what

    def explain(self) -> str:
        if self.what == "in_progress":
            return "the same message is being accepted by another request right now; retry later"
        return f"the hub's {self.what} is unavailable; retry later"


@dataclass(frozen=True, slots=True)
class Accepted:
    message_id: str
    bericht: Bericht
    receiver: PartyRef
    duplicate: bool = False


_Identity = tuple[PartyRef, str, str, date]


@dataclass(frozen=True, slots=True)
class _Request:
    data: bytes
    sha256: str
    sender: PartyRef
    request_id: str
    received_at: datetime
    on: date
    rules: RoutingRules


@dataclass
class _Seen:
    """What one submission learnt about its message, for the observer's labels."""

    type: BerichtType | None = None


class Intake:
    def __init__(
        self,
        *,
        validator: Validates,
        rules: Callable[[], RoutingRules],
        store: AuditStore,
        publisher: Publisher,
        parties: RegisteredParties,
        executor: Executor | None = None,
        today: Callable[[], date] = vandaag,
        require_known_conversation: bool = True,
        observer: IntakeObserver | None = None,
    ) -> None:
        self._validator = validator
        self._rules = rules
        self._store = store
        self._publisher = publisher
        self._parties = parties
        self._executor = executor
        self._today = today
        self._require_known_conversation = require_known_conversation
        self._observer: IntakeObserver = observer if observer is not None else NullIntakeObserver()
        self._in_progress: dict[_Identity, asyncio.Future[None]] = {}
        # message_id -> the task committing its FORWARDED mark: published by this process, not yet marked.
        self._marking: dict[str, asyncio.Task[None]] = {}

    async def submit(self, data: bytes, sender: PartyRef, *, request_id: str) -> Accepted:
        started = time.perf_counter()
        seen = _Seen()
        try:
            accepted = await self._submit(data, sender, request_id, seen)
        except Refused as refusal:
            t = seen.type
            self._observer.refused(refusal.code, t.standaard.value if t else None, t.naam if t else None)
            raise
        except Unavailable as exc:
            self._observer.unavailable(exc.what)
            raise
        t = accepted.bericht.type
        self._observer.accepted(t.standaard.value, t.naam, accepted.receiver.kind.value, accepted.duplicate)
        if not accepted.duplicate:
            self._observer.acceptance(time.perf_counter() - started)
        return accepted

    async def _submit(self, data: bytes, sender: PartyRef, request_id: str, seen: _Seen) -> Accepted:
        received_at = datetime.now(UTC)
        on = self._today()
        sha256 = hashlib.sha256(data).hexdigest()
        rules = self._rules()  # one rules object for the whole request, even across a reload
        try:
            validatie = await self._validate(data, on)
            seen.type = validatie.bericht.type if validatie.bericht is not None else validatie.type
            if validatie.bericht is None:
                assert validatie.code is not None
                raise Refused(validatie.code, _summary(validatie), validatie.errors)
            bericht = validatie.bericht
            if not rules.may_send_as(sender, bericht.afzender, on):
                raise Refused(
                    ErrorCode.AFZENDER_MISMATCH,
                    f"the message's sender {bericht.afzender} is not the authenticated party {sender}"
                    " and the directory does not let it send on that party's behalf",
                )
            afzender = _party_of(bericht.afzender)
        except Refused as refusal:
            await self._record_refusal(request_id, sender, refusal, sha256, len(data))
            raise
        request = _Request(data, sha256, sender, request_id, received_at, on, rules)
        identity = (
            afzender,
            bericht.type.naam,
            bericht.identiteit.identificatie,
            bericht.identiteit.dagtekening,
        )
        async with self._one_at_a_time(identity):
            return await self._accept(request, bericht, afzender)

    @asynccontextmanager
    async def _one_at_a_time(self, identity: _Identity) -> AsyncIterator[None]:
        """Requests for one message identity in this process take turns: a second copy posted while
        the first is still being stored and published waits, and then finds it (a duplicate) instead
        of publishing it again. Across processes `_again` tells a message in progress by its age."""
        while (pending := self._in_progress.get(identity)) is not None:
            await asyncio.shield(pending)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._in_progress[identity] = done
        try:
            yield
        finally:
            del self._in_progress[identity]
            done.set_result(None)

    async def _accept(self, r: _Request, bericht: Bericht, afzender: PartyRef) -> Accepted:
        # No look-up of the identity first: a new message (the common case) is stored straight away,
        # and the unique identity index turns a duplicate or a retry into IdentityConflict with the
        # stored row (below), which `_again` answers. Only a message about to be refused is looked
        # up, so that a copy of an accepted one is still answered as that message, never refused.
        try:
            try:
                answered = await self._answered(bericht)
                bestemming = await self._route(r.rules, bericht, r.on, answered)
            except HubError:
                existing = await self._find(afzender, bericht)
                if existing is not None:
                    return await self._again(existing, bericht, r.sha256)
                raise
        except Refused as refusal:
            await self._record_refusal(r.request_id, r.sender, refusal, r.sha256, len(r.data))
            raise
        except HubError as err:
            routing_refusal = Refused(err.code, err.detail)
            await self._record_refusal(r.request_id, r.sender, routing_refusal, r.sha256, len(r.data))
            raise routing_refusal from err
        except StoreUnavailable as exc:
            raise Unavailable("database") from exc

        message_id = str(uuid.uuid4())
        nieuw = NieuwBericht(
            message_id=message_id,
            conversation_id=answered.conversation_id if answered else message_id,
            standaard=bericht.type.standaard.value,
            release=bericht.release,
            berichttype=bericht.type.naam,
            berichtcode=bericht.kop.berichtcode,
            afzender=afzender,
            ontvanger=bericht.ontvanger,
            receiver=bestemming.ontvanger,
            identificatie=bericht.identiteit.identificatie,
            dagtekening=bericht.identiteit.dagtekening,
            answers_message_id=answered.message_id if answered else None,
            sha256=r.sha256,
            size=len(r.data),
            body=r.data,
            received_at=r.received_at,
            request_id=r.request_id,
            routing_version=r.rules.version,
            answer_due=_answer_due(bericht.type, r.on),
            submitted_by=r.sender if r.sender != afzender else None,
            retourcodes=bericht.kop.retourcodes,
        )
        try:
            stored = await self._store.store_received(nieuw)
        except IdentityConflict as conflict:  # stored before: a duplicate, a retry, or another process's
            return await self._stored_before(r, conflict.existing, bericht)
        except StoreUnavailable as exc:
            raise Unavailable("database") from exc
        await self._forward(stored, r.data)
        return Accepted(message_id, bericht, bestemming.ontvanger)

    async def _stored_before(self, r: _Request, existing: StoredBericht, bericht: Bericht) -> Accepted:
        try:
            return await self._again(existing, bericht, r.sha256)
        except Refused as refusal:  # the same identity with other content
            await self._record_refusal(r.request_id, r.sender, refusal, r.sha256, len(r.data))
            raise
        except StoreUnavailable as exc:
            raise Unavailable("database") from exc

    async def _find(self, afzender: PartyRef, bericht: Bericht) -> StoredBericht | None:
        return await self._store.find_by_identity(
            afzender, bericht.type.naam, bericht.identiteit.identificatie, bericht.identiteit.dagtekening
        )

    async def _validate(self, data: bytes, on: date) -> Validatie:
        started = time.perf_counter()
        if self._executor is None or len(data) < _INLINE_VALIDATION_BYTES:
            validatie = self._validator.validate(data, on=on)
        else:
            loop = asyncio.get_running_loop()
            validatie = await loop.run_in_executor(
                self._executor, lambda: self._validator.validate(data, on=on)
            )
        t = validatie.bericht.type if validatie.bericht is not None else validatie.type
        self._observer.validated(
            t.standaard.value if t else None,
            t.naam if t else None,
            time.perf_counter() - started,
            validatie.valid,
        )
        return validatie

    async def _answered(self, bericht: Bericht) -> StoredBericht | None:
        """For a retour or 325: the heenbericht it answers, as the hub stored it."""
        ref = bericht.beantwoordt
        if ref is None:
            return None
        heen = bericht.type.answers
        assert heen is not None
        # The heenbericht was sent by the party this answer goes to (header Afzender for a retour,
        # Ontvanger for a 325): that is Bericht.ontvanger in both cases.
        found = await self._store.find_answered(
            bericht.type.standaard.value, heen, bericht.ontvanger, ref.identificatie, ref.dagtekening
        )
        if found is None and self._require_known_conversation:
            raise Refused(
                ErrorCode.UNKNOWN_CONVERSATION,
                f"this {bericht.type.naam} answers a {heen} (Identificatie {ref.identificatie}, "
                f"Dagtekening {ref.dagtekening.isoformat()}) that the hub has not received",
            )
        return found

    async def _route(
        self, rules: RoutingRules, bericht: Bericht, on: date, answered: StoredBericht | None
    ) -> Bestemming:
        registered: Party | None = None
        kind = kind_of_code(bericht.ontvanger)
        if kind is PartyKind.AANBIEDER:
            registered = await self._parties.registered(PartyRef(kind, bericht.ontvanger))
        return rules.resolve(
            bericht,
            on,
            answer_to=answered.afzender if answered else None,
            registered=(lambda ref: registered if registered and registered.ref == ref else None),
        )

    async def _again(self, existing: StoredBericht, bericht: Bericht, sha256: str) -> Accepted:
        """The same identity again: a duplicate, or the retry of a message not yet forwarded.

        A RECEIVED row this process has published and is still marking is a duplicate too: it is in
        its queue already."""
        if existing.sha256 != sha256:
            raise Refused(
                ErrorCode.IDENTIFICATIE_REUSED,
                f"a different {bericht.type.naam} with Identificatie {bericht.identiteit.identificatie} and "
                f"Dagtekening {bericht.identiteit.dagtekening.isoformat()} was accepted before as "
                f"{existing.message_id}",
            )
        if existing.status is BerichtStatus.RECEIVED and existing.message_id not in self._marking:
            if await self._in_progress_elsewhere(existing):
                raise Unavailable("in_progress")
            try:
                body = await self._store.body(existing.message_id)
            except BodyUnreadable as exc:  # HUB_BODY_KEYS lacks its key: ops must fix that
                log.error("%s", exc)
                raise Unavailable("database") from exc
            if body is None:
                raise Unavailable("database")
            await self._store.add_event(existing.message_id, "retry_received", {})
            await self._forward(existing, body)
            return Accepted(existing.message_id, bericht, existing.receiver)
        await self._store.add_event(existing.message_id, "duplicate_received", {})
        return Accepted(existing.message_id, bericht, existing.receiver, duplicate=True)

    async def _in_progress_elsewhere(self, existing: StoredBericht) -> bool:
        """Is another gateway process still storing and publishing this message right now?

        A young `received` row whose publish has not failed is most likely in flight there (this
        process's own are caught by _one_at_a_time); publishing it again would put a second copy in
        the queue. After IN_PROGRESS_WINDOW it counts as abandoned (its process died) and the
        sender's retry publishes it.
        """
        age = (datetime.now(UTC) - existing.received_at).total_seconds()
        if age >= IN_PROGRESS_WINDOW_S:
            return False
        events = await self._store.events(existing.message_id)
        return not events or events[-1].kind != "publish_failed"

    async def _forward(self, stored: StoredBericht, body: bytes) -> None:
        try:
            queue = await self._publisher.publish(stored, body)
        except BrokerUnavailable as exc:
            self._observer.published(False)
            try:
                await self._store.add_event(stored.message_id, "publish_failed", {"reason": str(exc)})
            except StoreUnavailable:
                log.warning("could not record publish failure for %s", stored.message_id)
            raise Unavailable("broker") from exc
        self._observer.published(True)
        # The promise is kept now (committed row, confirmed publish): the mark is only the audit
        # event, and waiting for its commit would add a second group commit to every answer.
        mark = asyncio.get_running_loop().create_task(
            self._mark_forwarded(stored.message_id, queue), name=f"mark-forwarded-{stored.message_id}"
        )
        self._marking[stored.message_id] = mark
        mark.add_done_callback(lambda _: self._marking.pop(stored.message_id, None))

    async def _mark_forwarded(self, message_id: str, queue: str) -> None:
        for pause in (*_MARK_RETRY_PAUSES, None):
            try:
                await self._store.mark_forwarded(message_id, queue=queue)
                return
            except StoreUnavailable:
                if pause is None:
                    break
                await asyncio.sleep(pause)
            except Exception:  # a bug must not stay an unretrieved task exception
                log.exception("marking %s forwarded failed", message_id)
                return
        # Its worker still delivers it (a RECEIVED message in a queue is delivered like a FORWARDED one).
        log.warning("%s is in its queue but was not marked forwarded: database unavailable", message_id)

    async def settle(self) -> None:
        """Wait (at shutdown, before the store closes) for the FORWARDED marks still being committed;
        at most _SETTLE_S, so that a database outage does not hold up the shutdown."""
        pending = list(self._marking.values())
        if pending:
            await asyncio.wait(pending, timeout=_SETTLE_S)

    async def _record_refusal(
        self, request_id: str, sender: PartyRef, refusal: Refused, sha256: str, size: int
    ) -> None:
        try:
            await self._store.record_refusal(
                Weigering(
                    request_id=request_id,
                    at=datetime.now(UTC),
                    code=refusal.code,
                    detail=refusal.detail,
                    afzender=sender,
                    sha256=sha256,
                    size=size,
                )
            )
        except StoreUnavailable:
            log.warning("could not record refusal %s (%s)", request_id, refusal.code)


def _answer_due(t: BerichtType, received: date) -> date | None:
    """The last day for the retour or 325 (three or ten working days; none for answers themselves)."""
    return add_werkdagen(received, t.answer_within_werkdagen) if t.answer_within_werkdagen else None


def _party_of(code: str) -> PartyRef:
    kind = kind_of_code(code)
    if kind is None:  # the schemas make this impossible; guard anyway
        raise Refused(ErrorCode.SCHEMA_INVALID, f"sender code {code} is not a known kind of party")
    return PartyRef(kind, code)


def _summary(v: Validatie) -> str:
    if v.errors:
        first = v.errors[0].reason
        more = len(v.errors) - 1
        return first if more == 0 else f"{first} (and {more} more)"
    return str(v.code)


__all__ = ["Accepted", "Intake", "Refused", "Unavailable"]
