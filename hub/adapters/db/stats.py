"""Hub-wide numbers for the metrics gauges, read from the audit database (docs/operations.md).

A few aggregate queries, run at most every few seconds by the metrics collector (never per request):

- backlog: messages routed and confirmed in their queue but not yet delivered (status `forwarded` or
  `in_mailbox`), per receiver kind, with the time the oldest of them was received;
- dead-lettered: messages whose delivery was given up (status `dead_lettered`), per receiver kind;
- unforwarded: rows stuck in `received` (stored, never confirmed by RabbitMQ) for over a minute;
- overdue conversations: heenberichten without an answering message (a row whose
  `answers_message_id` names them) whose answer deadline (`answer_within_werkdagen` of the catalogue)
  has passed. Working days are Monday to Friday in UTC; public holidays are not counted off. Only
  heenberichten received in the last `horizon_days` are looked at, so the query stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.adapters.db.engine import unavailable_as_store_error
from hub.adapters.db.tables import berichten
from hub.domain.catalogue import BerichtType, Rol

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


def werkdagen_back(day: date, n: int) -> date:
    """The day n working days (Monday to Friday) before `day`.

    A heenbericht received on day D with a deadline of n working days is overdue once the day is past
    D + n working days; that is the case exactly for D before werkdagen_back(today, n).
    """
    while n > 0:
        day -= timedelta(days=1)
        if day.weekday() < 5:
            n -= 1
    return day


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
        dead_q = select(b.receiver_kind, func.count()).where(b.status == DEAD_LETTERED).group_by(b.receiver_kind)
        stuck_q = select(func.count()).where(b.status == RECEIVED, b.received_at < now - self._stuck_after)
        async with unavailable_as_store_error(self._timeout), self._engine.connect() as conn:
            backlog = {
                kind: Backlog(count, oldest) for kind, count, oldest in (await conn.execute(backlog_q)).all()
            }
            dead = {kind: count for kind, count in (await conn.execute(dead_q)).all()}
            stuck = (await conn.execute(stuck_q)).scalar_one()
            overdue = await self._overdue(conn, now) if self._heen else {}
        return HubStats(backlog=backlog, dead_lettered=dead, unforwarded=stuck, overdue=overdue)

    async def _overdue(self, conn: AsyncConnection, now: datetime) -> dict[tuple[str, str], int]:
        heen = berichten.alias("heen")
        answer = berichten.alias("answer")
        today = now.astimezone(UTC).date()
        per_type = [
            and_(
                heen.c.standaard == t.standaard.value,
                heen.c.berichttype == t.naam,
                heen.c.received_at
                < datetime.combine(werkdagen_back(today, t.answer_within_werkdagen or 0), time(), UTC),
            )
            for t in self._heen
        ]
        answered = select(answer.c.message_id).where(answer.c.answers_message_id == heen.c.message_id).exists()
        query = (
            select(heen.c.standaard, heen.c.berichttype, func.count())
            .where(
                heen.c.received_at >= now - self._horizon,
                heen.c.status != RECEIVED,
                or_(*per_type),
                ~answered,
            )
            .group_by(heen.c.standaard, heen.c.berichttype)
        )
        return {(std, naam): count for std, naam, count in (await conn.execute(query)).all()}
