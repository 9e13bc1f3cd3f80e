"""In-memory fakes of the service ports, for unit tests of the intake and the gateway."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from typing import Any

from hub.domain.parties import PartyRef
from hub.service.ports import (
    AuditEvent,
    BerichtStatus,
    BrokerUnavailable,
    IdentityConflict,
    MailboxPage,
    NieuwBericht,
    RegisteredParty,
    StoredBericht,
    StoreUnavailable,
    TokenInfo,
    Weigering,
)


class FakeAuditStore:
    def __init__(self) -> None:
        self.rows: dict[str, StoredBericht] = {}
        self.bodies: dict[str, bytes] = {}
        self.log: list[AuditEvent] = []
        self.refusals: list[Weigering] = []
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("fake store is down")

    async def store_received(self, b: NieuwBericht) -> StoredBericht:
        self._check()
        existing = await self.find_by_identity(b.afzender, b.berichttype, b.identificatie, b.dagtekening)
        if existing is not None:
            raise IdentityConflict(existing)
        fields = {f.name for f in dataclasses.fields(StoredBericht)}
        values = {k: v for k, v in dataclasses.asdict(b).items() if k in fields}
        values["afzender"], values["receiver"] = b.afzender, b.receiver
        stored = StoredBericht(**values, status=BerichtStatus.RECEIVED, updated_at=b.received_at)
        self.rows[b.message_id] = stored
        self.bodies[b.message_id] = b.body
        await self.add_event(
            b.message_id, "received", {"submitted_by": str(b.submitted_by)} if b.submitted_by else {}
        )
        await self.add_event(b.message_id, "accepted")
        return stored

    async def mark_forwarded(self, message_id: str, *, queue: str) -> None:
        self._check()
        row = self.rows[message_id]
        if row.status is BerichtStatus.RECEIVED:
            self.rows[message_id] = dataclasses.replace(row, status=BerichtStatus.FORWARDED)
        await self.add_event(message_id, "published", {"queue": queue})

    async def add_event(self, message_id: str, kind: str, detail: dict[str, Any] | None = None) -> None:
        self._check()
        seq = sum(1 for e in self.log if e.message_id == message_id) + 1
        self.log.append(AuditEvent(message_id, seq, datetime.now(UTC), kind, detail or {}))

    async def record_refusal(self, weigering: Weigering) -> None:
        self._check()
        self.refusals.append(weigering)

    async def get(self, message_id: str) -> StoredBericht | None:
        self._check()
        return self.rows.get(message_id)

    async def events(self, message_id: str) -> list[AuditEvent]:
        self._check()
        return [e for e in self.log if e.message_id == message_id]

    async def body(self, message_id: str) -> bytes | None:
        self._check()
        return self.bodies.get(message_id)

    async def find_by_identity(
        self, afzender: PartyRef, berichttype: str, identificatie: str, dagtekening: date
    ) -> StoredBericht | None:
        self._check()
        for r in self.rows.values():
            if (r.afzender, r.berichttype, r.identificatie, r.dagtekening) == (
                afzender,
                berichttype,
                identificatie,
                dagtekening,
            ):
                return r
        return None

    async def find_answered(
        self, standaard: str, berichttype: str, afzender_code: str, identificatie: str, dagtekening: date
    ) -> StoredBericht | None:
        self._check()
        for r in self.rows.values():
            if (r.standaard, r.berichttype, r.afzender.code, r.identificatie, r.dagtekening) == (
                standaard,
                berichttype,
                afzender_code,
                identificatie,
                dagtekening,
            ):
                return r
        return None

    async def unforwarded(self, older_than: datetime, limit: int) -> list[StoredBericht]:
        self._check()
        rows = [
            r for r in self.rows.values() if r.status is BerichtStatus.RECEIVED and r.received_at < older_than
        ]
        return rows[:limit]

    async def ping(self) -> None:
        self._check()

    # -- DeliveryStore ------------------------------------------------------------------------

    async def _cas(
        self,
        message_id: str,
        to: BerichtStatus,
        from_: set[BerichtStatus],
        event: str,
        detail: dict[str, Any],
        **changes: Any,
    ) -> bool:
        self._check()
        row = self.rows.get(message_id)
        if row is None or row.status not in from_:
            return False
        self.rows[message_id] = dataclasses.replace(row, status=to, updated_at=datetime.now(UTC), **changes)
        await self.add_event(message_id, event, detail)
        return True

    async def pending_receivers(self) -> list[PartyRef]:
        self._check()
        return sorted(
            {
                r.receiver
                for r in self.rows.values()
                if r.status in (BerichtStatus.RECEIVED, BerichtStatus.FORWARDED)
            },
            key=str,
        )

    async def forwarded_before(self, receiver: PartyRef, before: datetime, *, limit: int) -> list[str]:
        self._check()
        found = sorted(
            (r for r in self.rows.values() if r.status is BerichtStatus.FORWARDED and r.receiver == receiver),
            key=lambda r: r.updated_at,
        )
        return [r.message_id for r in found if r.updated_at < before][:limit]

    async def record_attempt(
        self, message_id: str, *, channel: str, outcome: str, detail: dict[str, Any] | None = None
    ) -> None:
        self._check()
        row = self.rows[message_id]
        error = None if outcome == "ok" else str((detail or {}).get("error", outcome))
        self.rows[message_id] = dataclasses.replace(
            row, attempts=row.attempts + 1, last_error=error or row.last_error
        )
        await self.add_event(
            message_id, "delivery_attempted", {"channel": channel, "outcome": outcome} | (detail or {})
        )

    async def mark_delivered(self, message_id: str, *, channel: str, event: str = "delivered") -> bool:
        return await self._cas(
            message_id,
            BerichtStatus.DELIVERED,
            {BerichtStatus.RECEIVED, BerichtStatus.FORWARDED, BerichtStatus.IN_MAILBOX},
            event,
            {"channel": channel},
            delivered_at=datetime.now(UTC),
        )

    async def record_delivered(self, message_id: str, *, channel: str, detail: dict[str, Any]) -> bool:
        await self.record_attempt(message_id, channel=channel, outcome="ok", detail=detail)
        return await self.mark_delivered(message_id, channel=channel)

    async def mark_in_mailbox(self, message_id: str) -> bool:
        return await self._cas(
            message_id,
            BerichtStatus.IN_MAILBOX,
            {BerichtStatus.RECEIVED, BerichtStatus.FORWARDED},
            "in_mailbox",
            {},
        )

    async def mark_dead_lettered(self, message_id: str, *, reason: str) -> bool:
        return await self._cas(
            message_id,
            BerichtStatus.DEAD_LETTERED,
            {BerichtStatus.FORWARDED, BerichtStatus.IN_MAILBOX},
            "dead_lettered",
            {"reason": reason},
            last_error=reason,
        )

    async def mark_replayed(self, message_id: str, *, by: str, queue: str) -> None:
        replayable = set(BerichtStatus) - {BerichtStatus.RECEIVED}
        if not await self._cas(
            message_id, BerichtStatus.FORWARDED, replayable, "replayed", {"by": by, "queue": queue}
        ):
            raise LookupError(message_id)

    async def mailbox(
        self, receiver: PartyRef, *, include_forwarded: bool, limit: int, after: str | None = None
    ) -> MailboxPage:
        self._check()
        wanted = {BerichtStatus.IN_MAILBOX} | ({BerichtStatus.FORWARDED} if include_forwarded else set())
        rows = sorted(
            (r for r in self.rows.values() if r.receiver == receiver and r.status in wanted),
            key=lambda r: (r.received_at, r.message_id),
        )
        if after is not None:
            rows = [r for r in rows if r.message_id > after]
        page = rows[:limit]
        return MailboxPage(page, page[-1].message_id if len(rows) > limit else None)

    async def dead_letters(self, *, limit: int, receiver: PartyRef | None = None) -> list[StoredBericht]:
        self._check()
        rows = [
            r
            for r in self.rows.values()
            if r.status is BerichtStatus.DEAD_LETTERED and (receiver is None or r.receiver == receiver)
        ]
        return rows[:limit]

    async def conversation(self, conversation_id: str) -> list[StoredBericht]:
        self._check()
        return sorted(
            (r for r in self.rows.values() if r.conversation_id == conversation_id),
            key=lambda r: r.received_at,
        )

    async def overdue(self, on: date, *, limit: int) -> list[StoredBericht]:
        self._check()
        return [
            r for r in self.rows.values() if r.answer_due and r.answer_due < on and r.answered_at is None
        ][:limit]

    async def purge_bodies(self, delivered_before: datetime, *, batch: int) -> int:
        self._check()
        ids = [
            m
            for m, r in self.rows.items()
            if r.status is BerichtStatus.DELIVERED
            and r.delivered_at
            and r.delivered_at < delivered_before
            and m in self.bodies
        ][:batch]
        for m in ids:
            del self.bodies[m]
            self.rows[m] = dataclasses.replace(self.rows[m], body_purged_at=datetime.now(UTC))
        return len(ids)

    async def reclaim_space(self) -> None:
        self._check()


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[tuple[StoredBericht, bytes]] = []
        self.down = False

    async def publish(self, bericht: StoredBericht, body: bytes) -> str:
        if self.down:
            raise BrokerUnavailable("fake broker is down")
        self.published.append((bericht, body))
        return f"hub.ontvanger.{bericht.receiver.kind.value}.{bericht.receiver.code}"

    async def ping(self) -> None:
        if self.down:
            raise BrokerUnavailable("fake broker is down")


class FakePartyStore:
    """Tokens are "token-<kind>-<code>"; registered parties are added with add_party."""

    def __init__(self) -> None:
        self.parties: dict[PartyRef, RegisteredParty] = {}
        self.tokens: dict[str, PartyRef] = {}
        self.down = False

    async def add_party(self, ref: PartyRef, naam: str) -> RegisteredParty:
        party = RegisteredParty(ref, naam, datetime.now(UTC))
        self.parties[ref] = party
        return party

    async def get_party(self, ref: PartyRef) -> RegisteredParty | None:
        return self.parties.get(ref)

    async def list_parties(self) -> list[RegisteredParty]:
        return list(self.parties.values())

    async def create_token(self, ref: PartyRef, label: str) -> str:
        token = f"token-{ref.kind.value}-{ref.code}"
        self.tokens[token] = ref
        return token

    async def list_tokens(self, ref: PartyRef | None = None) -> list[TokenInfo]:
        return []

    async def revoke_token(self, token_or_id: str) -> bool:
        return self.tokens.pop(token_or_id, None) is not None

    async def party_for_token(self, token: str) -> PartyRef | None:
        if self.down:
            raise StoreUnavailable("fake store is down")
        return self.tokens.get(token)
