"""Ports: what the service layer needs from the outside world. Adapters implement them; tests fake them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Protocol

from hub.domain.errors import ErrorCode
from hub.domain.parties import PartyRef


class BerichtStatus(StrEnum):
    RECEIVED = "received"  # body and row committed; not (yet) confirmed by the broker
    FORWARDED = "forwarded"  # published to the receiver's queue and confirmed by RabbitMQ


@dataclass(frozen=True, slots=True)
class NieuwBericht:
    """An accepted message as it is first stored, body included. `afzender` is the real sender."""

    message_id: str
    conversation_id: str
    standaard: str
    release: str
    berichttype: str  # WMO301, JW325 ...
    berichtcode: str
    afzender: PartyRef  # who sent it (authenticated; for a retour the header's Ontvanger)
    ontvanger: str  # the header's intended receiver code (for a retour the header's Afzender)
    receiver: PartyRef  # where the hub routes it
    identificatie: str  # this message's own identity (for a retour IdentificatieRetour)
    dagtekening: date
    answers_message_id: str | None  # the heenbericht this one answers, when the hub saw it
    sha256: str
    size: int
    body: bytes
    received_at: datetime
    request_id: str
    routing_version: str


@dataclass(frozen=True, slots=True)
class StoredBericht:
    message_id: str
    conversation_id: str
    standaard: str
    release: str
    berichttype: str
    berichtcode: str
    afzender: PartyRef
    ontvanger: str
    receiver: PartyRef
    identificatie: str
    dagtekening: date
    answers_message_id: str | None
    sha256: str
    size: int
    status: BerichtStatus
    received_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AuditEvent:
    message_id: str
    seq: int
    at: datetime
    kind: str  # received, accepted, published, publish_failed, duplicate, ...
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Weigering:
    """A refused request: kept for the audit trail; never holds the body or a BSN."""

    request_id: str
    at: datetime
    code: ErrorCode
    detail: str
    afzender: PartyRef | None = None  # the authenticated party, when known
    standaard: str | None = None
    berichttype: str | None = None
    sha256: str | None = None
    size: int | None = None


class IdentityConflict(Exception):
    """Storing failed because a message with the same identity is already stored."""

    def __init__(self, existing: StoredBericht) -> None:
        super().__init__(existing.message_id)
        self.existing = existing


class AuditStore(Protocol):
    """The audit trail and message store. Every write is durable (committed) when the call returns."""

    async def store_received(self, bericht: NieuwBericht) -> StoredBericht:
        """Insert the row, the body and the events 'received' + 'accepted' in one transaction.

        Raises IdentityConflict when (afzender, berichttype, identificatie, dagtekening) exists already.
        """
        ...

    async def mark_forwarded(self, message_id: str, *, queue: str) -> None:
        """Status FORWARDED plus event 'published'; durable on return."""
        ...

    async def add_event(self, message_id: str, kind: str, detail: dict[str, Any] | None = None) -> None: ...

    async def record_refusal(self, weigering: Weigering) -> None: ...

    async def get(self, message_id: str) -> StoredBericht | None: ...

    async def events(self, message_id: str) -> list[AuditEvent]: ...

    async def body(self, message_id: str) -> bytes | None: ...

    async def find_by_identity(
        self, afzender: PartyRef, berichttype: str, identificatie: str, dagtekening: date
    ) -> StoredBericht | None: ...

    async def find_answered(
        self, standaard: str, berichttype: str, afzender_code: str, identificatie: str, dagtekening: date
    ) -> StoredBericht | None:
        """The heenbericht a retour/antwoord refers to: of that type, sent by a party with that code."""
        ...

    async def unforwarded(self, older_than: datetime, limit: int) -> list[StoredBericht]: ...

    async def ping(self) -> None:
        """Raise when the database cannot be reached."""
        ...


class Publisher(Protocol):
    async def publish(self, bericht: StoredBericht, body: bytes) -> str:
        """Publish persistently to the receiver's queue and wait for the broker's confirm.

        Returns the queue name. Raises BrokerUnavailable when the broker cannot take it.
        """
        ...

    async def ping(self) -> None:
        """Raise BrokerUnavailable when not connected."""
        ...


class BrokerUnavailable(Exception):
    pass


class StoreUnavailable(Exception):
    pass


@dataclass(frozen=True, slots=True)
class RegisteredParty:
    """A party registered at run time (`hub parties add`), on top of the routing files' directory."""

    ref: PartyRef
    naam: str
    registered_at: datetime


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """An API token as listed: never the token itself (only its sha256 is stored)."""

    id: int
    party: PartyRef
    label: str
    created_at: datetime
    revoked_at: datetime | None


class PartyExists(Exception):
    def __init__(self, existing: RegisteredParty) -> None:
        super().__init__(str(existing.ref))
        self.existing = existing


class PartyStore(Protocol):
    """Registered parties and their API tokens. Writes are committed when the call returns."""

    async def add_party(self, ref: PartyRef, naam: str) -> RegisteredParty:
        """Raises PartyExists when (kind, code) is registered already."""
        ...

    async def get_party(self, ref: PartyRef) -> RegisteredParty | None: ...

    async def list_parties(self) -> list[RegisteredParty]: ...

    async def create_token(self, ref: PartyRef, label: str) -> str:
        """A new token for the party; the plaintext is returned once and never stored."""
        ...

    async def list_tokens(self, ref: PartyRef | None = None) -> list[TokenInfo]: ...

    async def revoke_token(self, token_or_id: str) -> bool:
        """Revoke by plaintext token or by id; False when no such active token exists."""
        ...

    async def party_for_token(self, token: str) -> PartyRef | None:
        """The party a token authenticates, or None (unknown or revoked)."""
        ...
