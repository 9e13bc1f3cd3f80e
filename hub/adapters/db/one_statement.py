"""The gateway's usual batch written by one PostgreSQL statement, outside a transaction.

Below full load a gateway's batch holds new messages (stored before their publish is confirmed) and
`forwarded` marks of messages stored a moment earlier. In a transaction that takes BEGIN, three
INSERTs, an UPDATE, the INSERT of the `published` events and COMMIT: six round trips, each costing
~0.17 ms of the gateway's CPU. As one statement over arrays, run in autocommit, it is one round trip;
one statement is atomic on its own (all rows or none). Measured for new messages alone: 0.3 instead
of 0.9 ms of CPU for a batch of one, 0.5 instead of 1.1 for four (docs/performance.md, fourth pass).

It writes what apply_batch writes for these ops. A mark changes a row only while it is `received`
(a worker may have settled the message already), adds `published` to every stored message, and is
UnknownMessage for one that is not stored. A unique violation fails the whole statement, as it
failed the whole transaction: the writer then writes the batch op by op, and the guilty one gets its
error (or, for an event number lost to another process, another go). SQLite, retours (whose
heenbericht gets an `answered` event) and batches with other ops take apply_batch's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.adapters.db.audit_writes import (
    AuditOp,
    MarkForwarded,
    StoreReceived,
    UnknownMessage,
    body_values,
    events_of,
    number_events,
)
from hub.adapters.db.rows import bericht_values
from hub.adapters.db.tables import audit_events, bericht_bodies, berichten
from hub.service.ports import BerichtStatus

_BODY_COLUMNS = ("message_id", "body", "key_id")
_EVENT_COLUMNS = ("message_id", "seq", "at", "kind", "detail")
_MARK_COLUMNS = ("message_id", "at", "detail")  # of audit_events: the `published` event of each mark


def fits(ops: Sequence[AuditOp]) -> bool:
    """True for new messages that answer nothing and marks of other messages, each id once."""
    ids: set[str] = set()
    for op in ops:
        if isinstance(op, StoreReceived) and not op.bericht.answers_message_id:
            message_id = op.bericht.message_id
        elif isinstance(op, MarkForwarded):
            message_id = op.message_id
        else:
            return False
        if message_id in ids:
            return False
        ids.add(message_id)
    return True


async def apply(conn: AsyncConnection, ops: Sequence[AuditOp]) -> list[BaseException | None]:
    """Write a batch for which fits() holds, as one statement; the connection must be in autocommit."""
    stores = [op for op in ops if isinstance(op, StoreReceived)]
    marks = [op for op in ops if isinstance(op, MarkForwarded)]
    rows = [bericht_values(op.bericht) for op in stores]
    statement = _statement(conn.dialect, tuple(rows[0]) if rows else None, bool(marks))
    arguments: list[Any] = []
    if stores:
        events = events_of(stores, [None] * len(stores), set())
        await number_events(conn, events, (op.bericht.message_id for op in stores))  # new: no look-up
        arguments += statement.arrays(berichten, rows)
        arguments += statement.arrays(bericht_bodies, [body_values(op) for op in stores])
        arguments += statement.arrays(audit_events, events)
    if marks:
        published = [
            {"message_id": op.message_id, "at": op.at, "detail": {"queue": op.queue}} for op in marks
        ]
        arguments += statement.arrays(audit_events, published, _MARK_COLUMNS)
        arguments.append(datetime.now(UTC))  # updated_at: one time for the batch, as in apply_batch
    result = await conn.exec_driver_sql(statement.sql, tuple(arguments))
    outcomes: list[BaseException | None] = [None] * len(ops)
    if marks:
        stored = set(result.scalars())
        for i, op in enumerate(ops):
            if isinstance(op, MarkForwarded) and op.message_id not in stored:
                outcomes[i] = UnknownMessage(op.message_id)
    return outcomes


class _Statement:
    """The SQL for one shape of batch, and how to turn its rows into the array parameters."""

    def __init__(self, dialect: Dialect, bericht_columns: tuple[str, ...] | None, marks: bool) -> None:
        self._dialect = dialect
        self._columns = {
            berichten.name: bericht_columns or (),
            bericht_bodies.name: _BODY_COLUMNS,
            audit_events.name: _EVENT_COLUMNS,
        }
        self._bind: dict[tuple[str, str], Callable[[Any], Any] | None] = {}
        self._n = 0  # parameters numbered so far, in the order apply() passes them
        ctes = []
        if bericht_columns is not None:
            # The bodies' foreign key is checked at the end of the statement, when the rows are there.
            ctes += [
                f"b AS ({self._insert(berichten, bericht_columns)})",
                f"bo AS ({self._insert(bericht_bodies, _BODY_COLUMNS)})",
            ]
            events = self._insert(audit_events, _EVENT_COLUMNS)
            if not marks:
                self.sql = f"WITH {', '.join(ctes)} {events}"
                return
            ctes.append(f"ev AS ({events})")
        # Every part reads the tables as they were before the statement: a `published` event gets the
        # seq after its message's last one, and a mark of a message that is not stored finds no row.
        marked = self._arrays(audit_events, _MARK_COLUMNS)
        self._n += 1
        at = f"${self._n}::{berichten.c.updated_at.type.compile(dialect=dialect)}"
        ctes += [
            f"m AS (SELECT * FROM unnest({marked}) AS m(message_id, at, detail))",
            f"f AS (UPDATE berichten SET status = '{BerichtStatus.FORWARDED.value}', updated_at = {at}"
            f" WHERE message_id IN (SELECT message_id FROM m) AND status = '{BerichtStatus.RECEIVED.value}')",
            "p AS (INSERT INTO audit_events (message_id, seq, at, kind, detail) SELECT m.message_id,"
            " coalesce((SELECT max(e.seq) FROM audit_events e WHERE e.message_id = m.message_id), 0) + 1,"
            " m.at, 'published', m.detail FROM m"
            " WHERE EXISTS (SELECT 1 FROM berichten s WHERE s.message_id = m.message_id)"
            " RETURNING message_id)",
        ]
        self.sql = f"WITH {', '.join(ctes)} SELECT message_id FROM p"

    def _arrays(self, table: Table, names: tuple[str, ...]) -> str:
        casts = []
        for name in names:
            column = table.c[name]
            self._n += 1
            casts.append(f"${self._n}::{column.type.compile(dialect=self._dialect)}[]")
            # The column type's own conversion (UtcDateTime refuses naive times, JSON serialises).
            impl = column.type.dialect_impl(self._dialect)
            self._bind[table.name, name] = impl.bind_processor(self._dialect)
        return ", ".join(casts)

    def _insert(self, table: Table, names: tuple[str, ...]) -> str:
        arrays = self._arrays(table, names)
        return f"INSERT INTO {table.name} ({', '.join(names)}) SELECT * FROM unnest({arrays})"

    def arrays(
        self, table: Table, rows: list[dict[str, Any]], names: tuple[str, ...] | None = None
    ) -> list[list[Any]]:
        """One array per column of `names` (default: the table's columns in this statement)."""
        out = []
        for name in names or self._columns[table.name]:
            bind = self._bind[table.name, name]
            values = [row[name] for row in rows]
            out.append([bind(v) for v in values] if bind is not None else values)
        return out


_statements: dict[tuple[str, tuple[str, ...] | None, bool], _Statement] = {}


def _statement(dialect: Dialect, bericht_columns: tuple[str, ...] | None, marks: bool) -> _Statement:
    key = (dialect.name, bericht_columns, marks)
    statement = _statements.get(key)
    if statement is None:
        statement = _statements[key] = _Statement(dialect, bericht_columns, marks)
    return statement
