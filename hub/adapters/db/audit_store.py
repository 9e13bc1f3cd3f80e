"""SqlAlchemyAuditStore: the AuditStore port on SQLite or PostgreSQL.

Writes go through the group-commit writer (one transaction per batch; a call returns only after
its batch committed). Reads go straight to the database.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.adapters.db.audit_writes import (
    AddEvent,
    AuditOp,
    MarkForwarded,
    NotInState,
    RecordAttempt,
    RecordRefusal,
    StoreReceived,
    Transition,
    apply_batch,
    ids_match,
)
from hub.adapters.db.batched_lookup import BatchedLookup
from hub.adapters.db.body_crypto import NO_ENCRYPTION, BodyCipher
from hub.adapters.db.delivery_reads import DeliveryReads
from hub.adapters.db.engine import create_engine, unavailable_as_store_error
from hub.adapters.db.group_commit import GroupCommitWriter
from hub.adapters.db.rows import stored_from_new, stored_from_row
from hub.adapters.db.tables import audit_events, bericht_bodies, berichten
from hub.domain.parties import PartyRef
from hub.service.ports import (
    AuditEvent,
    BerichtStatus,
    IdentityConflict,
    NieuwBericht,
    StoredBericht,
    Weigering,
)

READ_TIMEOUT_S = 10.0
# Bodies above this size are encrypted and decrypted in a thread, off the event loop (~1 GB/s).
_THREAD_CRYPTO_BYTES = 256 * 1024


# A message is in its queue from the broker's confirm on, a moment before the intake commits
# `forwarded`: a worker may take it while the row still says `received`.
_UNDELIVERED = frozenset({BerichtStatus.RECEIVED, BerichtStatus.FORWARDED, BerichtStatus.IN_MAILBOX})


_BY_IDS = {  # by dialect: is it PostgreSQL? (audit_writes.ids_match)
    pg: select(berichten).where(ids_match(berichten.c.message_id, postgresql=pg)) for pg in (True, False)
}


def _lost_a_race(op: AuditOp, exc: Exception) -> bool:
    """Two writers numbered an event of one message alike (UNIQUE(message_id, seq)): write again.
    A StoreReceived that fails on the identity index is an identity conflict, not a race to retry;
    one that fails on the events' index lost a race on the `answered` event of its heenbericht."""
    if not isinstance(exc, IntegrityError):
        return False
    return not isinstance(op, StoreReceived) or "audit_events" in str(exc.orig)


class SqlAlchemyAuditStore(DeliveryReads):
    """The AuditStore and DeliveryStore ports (the delivery reads live in delivery_reads.py)."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_batch: int = 200,
        write_timeout: float = 10.0,
        cipher: BodyCipher = NO_ENCRYPTION,
    ) -> None:
        self.engine = engine
        self.cipher = cipher
        self._by_id: BatchedLookup[str, StoredBericht] = BatchedLookup(self._rows_by_id)
        self.writer: GroupCommitWriter[AuditOp] = GroupCommitWriter(
            engine,
            apply_batch,
            self._explain,
            max_batch=max_batch,
            timeout=write_timeout,
            retryable=_lost_a_race,
        )

    async def close(self) -> None:
        """Commit what is queued, stop the writer and close the connections."""
        await self.writer.close()
        await self.engine.dispose()

    # -- writes (group commit) ---------------------------------------------------------------

    async def store_received(self, bericht: NieuwBericht) -> StoredBericht:
        sealed = None
        if self.cipher.current is not None:
            if bericht.size > _THREAD_CRYPTO_BYTES:
                sealed = await asyncio.to_thread(self.cipher.seal, bericht.message_id, bericht.body)
            else:
                sealed = self.cipher.seal(bericht.message_id, bericht.body)
        await self.writer.submit(StoreReceived(bericht, sealed=sealed))
        return stored_from_new(bericht)

    async def mark_forwarded(self, message_id: str, *, queue: str) -> None:
        await self.writer.submit(MarkForwarded(message_id, queue))

    async def add_event(self, message_id: str, kind: str, detail: dict[str, Any] | None = None) -> None:
        await self.writer.submit(AddEvent(message_id, kind, dict(detail or {})))

    async def record_refusal(self, weigering: Weigering) -> None:
        await self.writer.submit(RecordRefusal(weigering))

    # -- delivery writes (group commit; status changes are compare-and-set) --------------------

    async def record_attempt(
        self, message_id: str, *, channel: str, outcome: str, detail: dict[str, Any] | None = None
    ) -> None:
        await self.writer.submit(RecordAttempt(message_id, channel, outcome, dict(detail or {})))

    async def _transition(self, op: Transition) -> bool:
        try:
            await self.writer.submit(op)
        except NotInState:
            return False
        return True

    async def mark_delivered(self, message_id: str, *, channel: str, event: str = "delivered") -> bool:
        return await self._transition(
            Transition(message_id, BerichtStatus.DELIVERED, _UNDELIVERED, event, {"channel": channel})
        )

    async def record_delivered(self, message_id: str, *, channel: str, detail: dict[str, Any]) -> bool:
        attempt = RecordAttempt(message_id, channel, "ok", dict(detail))
        delivered = Transition(
            message_id, BerichtStatus.DELIVERED, _UNDELIVERED, "delivered", {"channel": channel}
        )
        outcomes = await self.writer.submit_all([attempt, delivered])
        for outcome in outcomes:
            if outcome is not None and not isinstance(outcome, NotInState):
                raise outcome
        return outcomes[1] is None

    async def mark_in_mailbox(self, message_id: str) -> bool:
        return await self._transition(
            Transition(
                message_id,
                BerichtStatus.IN_MAILBOX,
                # RECEIVED too: the worker can take it from the queue before `forwarded` is committed.
                frozenset({BerichtStatus.RECEIVED, BerichtStatus.FORWARDED}),
                "in_mailbox",
                {},
            )
        )

    async def mark_dead_lettered(self, message_id: str, *, reason: str) -> bool:
        return await self._transition(
            Transition(
                message_id,
                BerichtStatus.DEAD_LETTERED,
                _UNDELIVERED,
                "dead_lettered",
                {"reason": reason},
                last_error=reason,
            )
        )

    async def mark_replayed(self, message_id: str, *, by: str, queue: str) -> None:
        replayable = frozenset(s for s in BerichtStatus if s is not BerichtStatus.RECEIVED)
        if not await self._transition(
            Transition(
                message_id, BerichtStatus.FORWARDED, replayable, "replayed", {"by": by, "queue": queue}
            )
        ):
            raise LookupError(f"message {message_id} cannot be replayed (unknown, or never forwarded)")

    async def _explain(self, op: AuditOp, exc: Exception) -> BaseException:
        """The error for an op that failed alone: a stored identity becomes IdentityConflict."""
        if isinstance(op, StoreReceived) and isinstance(exc, IntegrityError):
            b = op.bericht
            existing = await self.find_by_identity(b.afzender, b.berichttype, b.identificatie, b.dagtekening)
            if existing is not None:
                return IdentityConflict(existing)
        return exc

    # -- reads (direct) ----------------------------------------------------------------------

    async def get(self, message_id: str) -> StoredBericht | None:
        """One message's row; concurrent calls share one query (batched_lookup.py)."""
        return await self._by_id.get(message_id)

    async def _rows_by_id(self, message_ids: list[str]) -> dict[str, StoredBericht]:
        async with self._reading() as conn:
            by_ids = _BY_IDS[conn.dialect.name == "postgresql"]
            rows = (await conn.execute(by_ids, {"ids": message_ids})).mappings().all()
        return {r["message_id"]: stored_from_row(r) for r in rows}

    async def events(self, message_id: str) -> list[AuditEvent]:
        query = (
            select(
                audit_events.c.message_id,
                audit_events.c.seq,
                audit_events.c.at,
                audit_events.c.kind,
                audit_events.c.detail,
            )
            .where(audit_events.c.message_id == message_id)
            .order_by(audit_events.c.seq)
        )
        async with self._reading() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [AuditEvent(r["message_id"], r["seq"], r["at"], r["kind"], dict(r["detail"])) for r in rows]

    async def body(self, message_id: str) -> bytes | None:
        """The body as it was sent (decrypted); None when there is none (retention deleted it).

        Raises BodyUnreadable when it is encrypted with a key HUB_BODY_KEYS does not hold (or a wrong one).
        """
        query = select(bericht_bodies.c.body, bericht_bodies.c.key_id).where(
            bericht_bodies.c.message_id == message_id
        )
        async with self._reading() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        data, key_id = bytes(row[0]), row[1]
        if key_id is not None and len(data) > _THREAD_CRYPTO_BYTES:
            return await asyncio.to_thread(self.cipher.open, message_id, key_id, data)
        return self.cipher.open(message_id, key_id, data)

    async def body_key_counts(self) -> dict[str | None, int]:
        """How many stored bodies each key id encrypts (None: stored unencrypted)."""
        query = select(bericht_bodies.c.key_id, func.count()).group_by(bericht_bodies.c.key_id)
        async with self._reading() as conn:
            return {key_id: n for key_id, n in (await conn.execute(query)).all()}

    async def rotate_bodies(self, *, batch: int = 100) -> int:
        """Re-encrypt one bounded batch of bodies not under the current key (plaintext ones too).

        Returns how many were re-encrypted (0: none left). Each update is conditional on the key id it
        read, so two rotations running at once never overwrite each other's work.
        """
        current = self.cipher.current
        if current is None:
            raise ValueError("HUB_BODY_KEYS is empty: there is no key to rotate to")
        stale = (bericht_bodies.c.key_id.is_(None)) | (bericht_bodies.c.key_id != current)
        query = (
            select(bericht_bodies.c.message_id, bericht_bodies.c.key_id, bericht_bodies.c.body)
            .where(stale)
            .order_by(bericht_bodies.c.message_id)
            .limit(batch)
        )
        async with self._reading() as conn:
            rows = (await conn.execute(query)).all()
        done = 0
        for message_id, key_id, data in rows:
            plain = self.cipher.open(message_id, key_id, bytes(data))
            sealed = self.cipher.seal(message_id, plain)
            same_key = (
                bericht_bodies.c.key_id.is_(None) if key_id is None else bericht_bodies.c.key_id == key_id
            )
            async with unavailable_as_store_error(READ_TIMEOUT_S), self.engine.begin() as conn:
                result = await conn.execute(
                    update(bericht_bodies)
                    .where(bericht_bodies.c.message_id == message_id, same_key)
                    .values(body=sealed.data, key_id=sealed.key_id)
                )
            done += result.rowcount
        return done

    async def find_by_identity(
        self, afzender: PartyRef, berichttype: str, identificatie: str, dagtekening: date
    ) -> StoredBericht | None:
        return await self._one(
            berichten.c.afzender_kind == afzender.kind.value,
            berichten.c.afzender_code == afzender.code,
            berichten.c.berichttype == berichttype,
            berichten.c.identificatie == identificatie,
            berichten.c.dagtekening == dagtekening,
        )

    async def find_answered(
        self, standaard: str, berichttype: str, afzender_code: str, identificatie: str, dagtekening: date
    ) -> StoredBericht | None:
        return await self._one(
            berichten.c.berichttype == berichttype,
            berichten.c.afzender_code == afzender_code,
            berichten.c.identificatie == identificatie,
            berichten.c.dagtekening == dagtekening,
            berichten.c.standaard == standaard,
        )

    async def unforwarded(self, older_than: datetime, limit: int) -> list[StoredBericht]:
        query = (
            select(berichten)
            .where(berichten.c.status == BerichtStatus.RECEIVED.value, berichten.c.received_at < older_than)
            .order_by(berichten.c.received_at, berichten.c.message_id)
            .limit(limit)
        )
        async with self._reading() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [stored_from_row(r) for r in rows]

    async def ping(self) -> None:
        async with self._reading() as conn:
            await conn.execute(text("SELECT 1"))

    async def _one(self, *where: Any) -> StoredBericht | None:
        # Identity is unique per sender kind; find_answered matches on the code alone, and codes
        # of different kinds have different forms, so at most one row matches either way.
        query = select(berichten).where(*where).order_by(berichten.c.received_at).limit(1)
        async with self._reading() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else stored_from_row(row)


async def create_audit_store(
    url: str, *, max_batch: int = 200, pool_size: int = 5, cipher: BodyCipher = NO_ENCRYPTION
) -> SqlAlchemyAuditStore:
    """Build the store and start its writer. Does not touch the database: call ping() to check it."""
    store = SqlAlchemyAuditStore(create_engine(url, pool_size=pool_size), max_batch=max_batch, cipher=cipher)
    store.writer.start()
    return store
