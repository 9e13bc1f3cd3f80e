"""The reads (and the retention job) of the DeliveryStore port: mailbox pages, dead letters,
conversations, overdue answers, and deleting old bodies."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.adapters.db.audit_writes import number_events
from hub.adapters.db.engine import is_sqlite, unavailable_as_store_error
from hub.adapters.db.rows import stored_from_row
from hub.adapters.db.tables import audit_events, bericht_bodies, berichten
from hub.domain.parties import PartyKind, PartyRef
from hub.service.ports import BerichtStatus, MailboxPage, StoredBericht

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 10.0


class DeliveryReads:
    engine: AsyncEngine

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection for pure reads, in autocommit: each SELECT is its own statement, with no
        BEGIN and ROLLBACK round trips around it (a read needs no transaction of its own)."""
        async with unavailable_as_store_error(READ_TIMEOUT_S), self.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    async def _many(self, query: Any) -> list[StoredBericht]:
        async with self._reading() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [stored_from_row(r) for r in rows]

    async def pending_receivers(self) -> list[PartyRef]:
        query = (
            select(berichten.c.receiver_kind, berichten.c.receiver_code)
            # `received` too: a 202'd message whose `forwarded` mark did not get through (a database
            # outage right after the answer) is in its queue all the same.
            .where(berichten.c.status.in_((BerichtStatus.RECEIVED.value, BerichtStatus.FORWARDED.value)))
            .distinct()
        )
        async with self._reading() as conn:
            rows = (await conn.execute(query)).all()
        return [PartyRef(PartyKind(kind), code) for kind, code in rows]

    async def forwarded_before(self, receiver: PartyRef, before: datetime, *, limit: int) -> list[str]:
        b = berichten.c
        query = (
            select(b.message_id)
            .where(
                b.status == BerichtStatus.FORWARDED.value,
                b.receiver_kind == receiver.kind.value,
                b.receiver_code == receiver.code,
                b.updated_at < before,
            )
            .order_by(b.updated_at)
            .limit(limit)
        )
        async with self._reading() as conn:
            return list((await conn.execute(query)).scalars().all())

    async def mailbox(
        self, receiver: PartyRef, *, include_forwarded: bool, limit: int, after: str | None = None
    ) -> MailboxPage:
        statuses = [BerichtStatus.IN_MAILBOX.value]
        if include_forwarded:
            statuses.append(BerichtStatus.FORWARDED.value)
        query = select(berichten).where(
            berichten.c.receiver_kind == receiver.kind.value,
            berichten.c.receiver_code == receiver.code,
            berichten.c.status.in_(statuses),
        )
        if after:
            at, message_id = _decode_cursor(after)
            query = query.where(
                or_(
                    berichten.c.received_at > at,
                    and_(berichten.c.received_at == at, berichten.c.message_id > message_id),
                )
            )
        query = query.order_by(berichten.c.received_at, berichten.c.message_id).limit(limit + 1)
        found = await self._many(query)
        page = found[:limit]
        more = len(found) > limit
        return MailboxPage(page, _encode_cursor(page[-1]) if more and page else None)

    async def dead_letters(self, *, limit: int, receiver: PartyRef | None = None) -> list[StoredBericht]:
        query = select(berichten).where(berichten.c.status == BerichtStatus.DEAD_LETTERED.value)
        if receiver is not None:
            query = query.where(
                berichten.c.receiver_kind == receiver.kind.value, berichten.c.receiver_code == receiver.code
            )
        return await self._many(query.order_by(berichten.c.updated_at).limit(limit))

    async def conversation(self, conversation_id: str) -> list[StoredBericht]:
        query = (
            select(berichten)
            .where(berichten.c.conversation_id == conversation_id)
            .order_by(berichten.c.received_at, berichten.c.message_id)
        )
        return await self._many(query)

    async def overdue(self, on: date, *, limit: int) -> list[StoredBericht]:
        query = (
            select(berichten)
            .where(berichten.c.answer_due < on, berichten.c.answered_at.is_(None))
            .order_by(berichten.c.answer_due, berichten.c.message_id)
            .limit(limit)
        )
        return await self._many(query)

    async def purge_bodies(self, delivered_before: datetime, *, batch: int) -> int:
        """One bounded batch: pick the oldest delivered bodies, delete them, audit each deletion."""
        now = datetime.now(UTC)
        async with unavailable_as_store_error(READ_TIMEOUT_S * 3), self.engine.begin() as conn:
            ids = list(
                (
                    await conn.execute(
                        select(berichten.c.message_id)
                        .where(
                            berichten.c.status == BerichtStatus.DELIVERED.value,
                            berichten.c.delivered_at < delivered_before,
                            berichten.c.body_purged_at.is_(None),
                        )
                        .order_by(berichten.c.delivered_at)
                        .limit(batch)
                    )
                ).scalars()
            )
            if not ids:
                return 0
            await conn.execute(delete(bericht_bodies).where(bericht_bodies.c.message_id.in_(ids)))
            await conn.execute(
                update(berichten)
                .where(berichten.c.message_id.in_(ids))
                .values(body_purged_at=now, updated_at=now)
            )
            events = [
                {
                    "message_id": mid,
                    "at": now,
                    "kind": "body_purged",
                    "detail": {"delivered_before": delivered_before.isoformat()},
                }
                for mid in ids
            ]
            await number_events(conn, events, ())
            await conn.execute(insert(audit_events), events)
        return len(ids)

    async def reclaim_space(self) -> None:
        if is_sqlite(str(self.engine.url)):
            async with self.engine.connect() as conn:
                mode = (await conn.execute(text("PRAGMA auto_vacuum"))).scalar_one()
                await conn.commit()
                raw = await conn.get_raw_connection()
                driver: Any = raw.driver_connection
                # executescript steps the pragma to its end; a plain execute frees one page only.
                # 2 = INCREMENTAL (files created by this version); older files get a full VACUUM.
                await driver.executescript("PRAGMA incremental_vacuum;" if mode == 2 else "VACUUM;")
            return
        async with self.engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("VACUUM (ANALYZE) bericht_bodies"))


def _encode_cursor(b: StoredBericht) -> str:
    return base64.urlsafe_b64encode(f"{b.received_at.isoformat()}|{b.message_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, _, message_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        parsed = datetime.fromisoformat(at)
    except ValueError as exc:
        raise ValueError("not a cursor this hub gave out") from exc
    return parsed, message_id
