"""Hub-wide numbers for the metrics gauges, read from the audit database (docs/operations.md).

A few aggregate queries, run at most every few seconds by the metrics collector (never per request):

- backlog: messages routed and confirmed in their queue but not yet delivered (status `forwarded` or
  `in_mailbox`), per receiver kind, with the time the oldest of them was received;
- dead-lettered: messages whose delivery was given up (status `dead_lettered`), per receiver kind;
- unforwarded: rows stuck in `received` (stored, never confirmed by RabbitMQ) for over a minute;
- overdue conversations: heenberichten whose answer is past due (`answer_due` before today, UTC,
  and no `answered_at`): the same definition as `DeliveryStore.overdue`. The intake sets `answer_due`
  from the catalogue's `answer_within_werkdagen` in working days (hub/domain/werkdagen.py: Monday to
  Friday less the Dutch public holidays). Only deadlines of the last `horizon_days` are counted, so
  the query stays bounded (index ix_berichten_answer_due).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.adapters.db.engine import unavailable_as_store_error
from hub.adapters.db.tables import berichten
from hub.domain.catalogue import BerichtType, Rol
from hub.domain.vandaag import dag_van

UNDELIVERED = ("forwarded", "in_mailbox")
DEAD_LETTERED = "dead_lettered"
RECEIVED = "received"


@dataclass(frozen=True, slots=True)
class Backlog:
    messages: int
    oldest_received_at: datetime | None


@dataclass(frozen=True, slots=True)
class HubStats:
    backlog: dict[str, Backlog] = field(default_factory=dict)  # by receiver kind
    dead_lettered: dict[str, int] = field(default_factory=dict)  # by receiver kind
    unforwarded: int = 0
    overdue: dict[tuple[str, str], int] = field(default_factory=dict)  # (standard, heen message type)


class SqlStats:
    def __init__(
        self,
        engine: AsyncEngine,
        types: Iterable[BerichtType],
        *,
        horizon_days: int = 90,
        stuck_after: timedelta = timedelta(minutes=1),
        timeout: float = 10.0,
    ) -> None:
        self._engine = engine
        self._heen = [t for t in types if t.rol is Rol.HEEN and t.answer_within_werkdagen is not None]
        self._horizon = timedelta(days=horizon_days)
        self._stuck_after = stuck_after
        self._timeout = timeout

    @property
    def heen_types(self) -> list[BerichtType]:
        """The message types whose answers are tracked for the overdue gauge."""
        return list(self._heen)

    async def read(self, now: datetime) -> HubStats:
        b = berichten.c
        backlog_q = (
            select(b.receiver_kind, func.count(), func.min(b.received_at))
            .where(b.status.in_(UNDELIVERED))
            .group_by(b.receiver_kind)
        )
        dead_q = (
            select(b.receiver_kind, func.count()).where(b.status == DEAD_LETTERED).group_by(b.receiver_kind)
        )
        stuck_q = select(func.count()).where(b.status == RECEIVED, b.received_at < now - self._stuck_after)
        async with unavailable_as_store_error(self._timeout), self._engine.connect() as conn:
            backlog = {
                kind: Backlog(count, oldest) for kind, count, oldest in (await conn.execute(backlog_q)).all()
            }
            dead = {kind: count for kind, count in (await conn.execute(dead_q)).all()}
            stuck = (await conn.execute(stuck_q)).scalar_one()
            overdue = await self._overdue(conn, now)
        return HubStats(backlog=backlog, dead_lettered=dead, unforwarded=stuck, overdue=overdue)

    async def _overdue(self, conn: AsyncConnection, now: datetime) -> dict[tuple[str, str], int]:
        b = berichten.c
        today = dag_van(now)
        query = (
            select(b.standaard, b.berichttype, func.count())
            .where(
                b.answer_due < today,
                b.answer_due >= today - self._horizon,
                b.answered_at.is_(None),
            )
            .group_by(b.standaard, b.berichttype)
        )
        return {(std, naam): count for std, naam, count in (await conn.execute(query)).all()}
