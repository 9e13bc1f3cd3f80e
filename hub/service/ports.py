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
    IN_MAILBOX = "in_mailbox"  # taken from the queue into the receiver's mailbox; not yet acked
    DELIVERED = "delivered"  # the receiver has it: its endpoint answered 2xx, or it acked its mailbox
    DEAD_LETTERED = "dead_lettered"  # delivery given up; waits for ops (hub replay)

    @property
    def undelivered(self) -> bool:
        return self in (BerichtStatus.FORWARDED, BerichtStatus.IN_MAILBOX, BerichtStatus.DEAD_LETTERED)


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
    answer_due: date | None = None  # heenberichten: received + the answer deadline in werkdagen
    retourcodes: tuple[str, ...] = ()  # retourberichten and 325
    # The authenticated party when it is not the afzender: it sends on the afzender's behalf
    # (routing_rules/sends_for.csv). Kept in the 'received' event; it may read the message's status.
    submitted_by: PartyRef | None = None


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
    # Delivery and conversation facts (migration 0002); defaults for a message just stored.
    delivered_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = None
    answer_due: date | None = None  # heenberichten: the day by which the retour/325 is due
    answered_at: datetime | None = None  # heenberichten: when the hub accepted its answer
    retourcodes: tuple[str, ...] = ()  # retourberichten and 325: the RetourCodes they carry
    body_purged_at: datetime | None = None


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
    path: str | None = None  # "METHOD /path" of the refused request (migration 0003)


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


class BodyUnreadable(Exception):
    """A stored body cannot be decrypted: its key is not configured (HUB_BODY_KEYS), or the key or the
    stored body is wrong. The message says which message and key id; never any of the body."""


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


@dataclass(frozen=True, slots=True)
class MailboxPage:
    berichten: list[StoredBericht]
    next_cursor: str | None  # pass as `after` for the next page; None when this was the last


class DeliveryStore(Protocol):
    """The delivery side of the audit trail. Every write is committed when the call returns.

    Status changes are conditional (compare-and-set), so two workers, or a worker and a mailbox ack,
    can never both complete one message: the loser gets False.
    """

    async def pending_receivers(self) -> list[PartyRef]:
        """Receivers with messages in their queue (status FORWARDED, or RECEIVED: published, maybe not
        marked yet): whose queues need a consumer."""
        ...

    async def forwarded_before(self, receiver: PartyRef, before: datetime, *, limit: int) -> list[str]:
        """Ids of the receiver's FORWARDED messages last changed before `before`, oldest first."""
        ...

    async def record_attempt(
        self, message_id: str, *, channel: str, outcome: str, detail: dict[str, Any] | None = None
    ) -> None:
        """Event 'delivery_attempted' and attempts + 1 (and last_error unless the outcome is 'ok')."""
        ...

    async def mark_delivered(self, message_id: str, *, channel: str, event: str = "delivered") -> bool:
        """RECEIVED/FORWARDED/IN_MAILBOX -> DELIVERED with delivered_at; False if it was in none of them."""
        ...

    async def record_delivered(self, message_id: str, *, channel: str, detail: dict[str, Any]) -> bool:
        """A successful attempt and DELIVERED, in one commit: record_attempt(outcome 'ok') followed by
        mark_delivered. False if the message was settled already (the attempt is recorded anyway)."""
        ...

    async def mark_in_mailbox(self, message_id: str) -> bool:
        """RECEIVED/FORWARDED -> IN_MAILBOX; False if it was in neither."""
        ...

    async def mark_dead_lettered(self, message_id: str, *, reason: str) -> bool:
        """FORWARDED/IN_MAILBOX -> DEAD_LETTERED with last_error = reason; False otherwise."""
        ...

    async def mark_replayed(self, message_id: str, *, by: str, queue: str) -> None:
        """Any delivered or dead-lettered message -> FORWARDED again, event 'replayed' (after the publish)."""
        ...

    async def mailbox(
        self, receiver: PartyRef, *, include_forwarded: bool, limit: int, after: str | None = None
    ) -> MailboxPage:
        """The receiver's undelivered messages, oldest first (IN_MAILBOX, and FORWARDED when it fetches)."""
        ...

    async def dead_letters(self, *, limit: int, receiver: PartyRef | None = None) -> list[StoredBericht]: ...

    async def conversation(self, conversation_id: str) -> list[StoredBericht]: ...

    async def overdue(self, on: date, *, limit: int) -> list[StoredBericht]:
        """Heenberichten whose answer was due before `on` and has not come."""
        ...

    async def purge_bodies(self, delivered_before: datetime, *, batch: int) -> int:
        """Delete the bodies of messages delivered before the cutoff, one bounded batch; event
        'body_purged' per message. Returns how many were deleted (0: nothing left)."""
        ...

    async def reclaim_space(self) -> None:
        """Give the space of deleted bodies back (SQLite incremental vacuum, PostgreSQL VACUUM)."""
        ...


class HubStore(AuditStore, DeliveryStore, Protocol):
    """The whole message store: what the gateway and the delivery side use together."""
