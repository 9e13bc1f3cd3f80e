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
        await self.add_event(b.message_id, "received")
        await self.add_event(b.message_id, "accepted")
        return stored

    async def mark_forwarded(self, message_id: str, *, queue: str) -> None:
        self._check()
        self.rows[message_id] = dataclasses.replace(self.rows[message_id], status=BerichtStatus.FORWARDED)
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
