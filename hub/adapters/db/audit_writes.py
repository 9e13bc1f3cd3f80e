"""The writes of the audit store, as ops the group-commit writer applies a batch at a time.

A batch costs a fixed handful of statements whatever its size: one SELECT for the event sequence
numbers, one executemany per table, one UPDATE for all forwarded messages, one for all successful
attempts and one per kind of status change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, String, any_, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.adapters.db.body_crypto import Sealed
from hub.adapters.db.rows import bericht_values
from hub.adapters.db.tables import audit_events, bericht_bodies, berichten, weigeringen
from hub.service.ports import BerichtStatus, NieuwBericht, Weigering


def _now() -> datetime:
    return datetime.now(UTC)


# The batch's statements, built once: building one and computing its cache key costs ~0.1 ms of
# Python each time, several times per batch, which at small batches was a good part of a request.
# They come in two sets: "message_id IN (the batch's ids)" is `= ANY(:ids)` with one array parameter on
# PostgreSQL, where an expanding IN list made SQLAlchemy render the statement again for every
# execution (~10 % of a delivery worker's CPU); SQLite has no arrays and keeps the expanding IN.
_INSERT_BERICHTEN = insert(berichten)
_INSERT_BODIES = insert(bericht_bodies)
_INSERT_EVENTS = insert(audit_events)
_INSERT_REFUSALS = insert(weigeringen)


def ids_match(column: ColumnElement[str], *, postgresql: bool) -> ColumnElement[bool]:
    """`column` is one of the ids bound as "ids" (a list)."""
    if postgresql:
        return column == any_(bindparam("ids", type_=ARRAY(String)))
    return column.in_(bindparam("ids", expanding=True))


@dataclass(frozen=True, slots=True)
class _Statements:
    postgresql: bool
    forward: Any
    stored: Any
    answered: Any
    count_attempts: Any
    last_seq: Any
    transitions: dict[tuple[BerichtStatus, frozenset[BerichtStatus], bool], Any] = field(default_factory=dict)

    def transition(self, to: BerichtStatus, from_: frozenset[BerichtStatus], with_error: bool) -> Any:
        key = (to, from_, with_error)
        statement = self.transitions.get(key)
        if statement is None:
            values: dict[str, Any] = {"status": to.value, "updated_at": bindparam("at_")}
            if to is BerichtStatus.DELIVERED:
                values["delivered_at"] = bindparam("at_")
            if with_error:
                values["last_error"] = bindparam("error_")
            statement = self.transitions[key] = (
                update(berichten)
                .where(
                    ids_match(berichten.c.message_id, postgresql=self.postgresql),
                    berichten.c.status.in_(sorted(s.value for s in from_)),
                )
                .values(**values)
                .returning(*_changed(self.postgresql))
            )
        return statement


_EARLIER = audit_events.alias("earlier")
# A changed row's last event number, returned by the UPDATE that changes it: the batch's events then
# need no SELECT of their own to be numbered (number_events).
_LAST_SEQ_OF_ROW = (
    select(func.coalesce(func.max(_EARLIER.c.seq), 0))
    .where(_EARLIER.c.message_id == berichten.c.message_id)
    .correlate(berichten)
    .scalar_subquery()
)


def _changed(postgresql: bool) -> tuple[ColumnElement[Any], ...]:
    """What an UPDATE of berichten returns: the changed ids, and on PostgreSQL their last event seq
    (SQLAlchemy renders SQLite's RETURNING unqualified, which would turn the subquery's correlation
    into `message_id = message_id`; there number_events reads them with one SELECT instead)."""
    if postgresql:
        return (berichten.c.message_id, _LAST_SEQ_OF_ROW)
    return (berichten.c.message_id,)


def _build(postgresql: bool) -> _Statements:
    def ids(column: ColumnElement[str]) -> ColumnElement[bool]:
        return ids_match(column, postgresql=postgresql)

    return _Statements(
        postgresql=postgresql,
        forward=(
            update(berichten)
            .where(ids(berichten.c.message_id), berichten.c.status == BerichtStatus.RECEIVED.value)
            .values(status=BerichtStatus.FORWARDED.value, updated_at=bindparam("at_"))
            .returning(*_changed(postgresql))
        ),
        stored=select(berichten.c.message_id).where(ids(berichten.c.message_id)),
        answered=(
            update(berichten)
            .where(ids(berichten.c.message_id), berichten.c.answered_at.is_(None))
            .values(answered_at=bindparam("at_"))
            .returning(berichten.c.message_id)
        ),
        count_attempts=(
            update(berichten)
            .where(ids(berichten.c.message_id))
            .values(attempts=berichten.c.attempts + 1, updated_at=bindparam("at_"))
        ),
        last_seq=_last_seq_by_id() if postgresql else (
            select(audit_events.c.message_id, func.max(audit_events.c.seq))
            .where(ids(audit_events.c.message_id))
            .group_by(audit_events.c.message_id)
        ),
    )


def _last_seq_by_id() -> Any:
    """PostgreSQL: the last event seq of each id, one index look-up per id whatever the plan.

    A GROUP BY over `message_id = ANY(:ids)` is prepared once per connection; a generic plan made
    while the table was small could keep scanning it all as it grows."""
    wanted = func.unnest(bindparam("ids", type_=ARRAY(String))).table_valued("id").render_derived()
    last = (
        select(func.max(audit_events.c.seq))
        .where(audit_events.c.message_id == wanted.c.id)
        .correlate(wanted)
        .scalar_subquery()
    )
    return select(wanted.c.id, func.coalesce(last, 0))


_BY_DIALECT = {True: _build(True), False: _build(False)}


def statements(conn: AsyncConnection) -> _Statements:
    return _BY_DIALECT[conn.dialect.name == "postgresql"]


@dataclass(frozen=True, slots=True)
class StoreReceived:
    bericht: NieuwBericht
    at: datetime = field(default_factory=_now)
    sealed: Sealed | None = None  # the body as stored (encrypted); None: bericht.body as it is


@dataclass(frozen=True, slots=True)
class MarkForwarded:
    message_id: str
    queue: str
    at: datetime = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class AddEvent:
    message_id: str
    kind: str
    detail: dict[str, Any]
    at: datetime = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class RecordRefusal:
    weigering: Weigering


@dataclass(frozen=True, slots=True)
class RecordAttempt:
    """A delivery attempt: attempts + 1, last_error unless it succeeded, event 'delivery_attempted'."""

    message_id: str
    channel: str
    outcome: str
    detail: dict[str, Any]
    at: datetime = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class Transition:
    """A compare-and-set of the status: applied only when the status is one of `from_`."""

    message_id: str
    to: BerichtStatus
    from_: frozenset[BerichtStatus]
    event: str
    detail: dict[str, Any]
    last_error: str | None = None
    at: datetime = field(default_factory=_now)


AuditOp = StoreReceived | MarkForwarded | AddEvent | RecordRefusal | RecordAttempt | Transition


class UnknownMessage(LookupError):
    """mark_forwarded for a message_id that is not stored."""


class NotInState(LookupError):
    """A Transition whose message was not in one of the states it applies to (someone else won)."""


async def apply_batch(conn: AsyncConnection, ops: Sequence[AuditOp]) -> list[BaseException | None]:
    outcomes: list[BaseException | None] = [None] * len(ops)
    sql = statements(conn)
    last_seq: dict[str, int] = {}  # message_id -> its last event's seq before this batch, where known
    received = [op for op in ops if isinstance(op, StoreReceived)]
    if received:
        await conn.execute(_INSERT_BERICHTEN, [bericht_values(op.bericht) for op in received])
        await conn.execute(_INSERT_BODIES, [_body_values(op) for op in received])

    forwarded = {op.message_id for op in ops if isinstance(op, MarkForwarded)}
    if forwarded:
        # One timestamp for the batch: these rows all changed in the same transaction. Only a row
        # still `received` changes: a worker may have taken the message from the queue and settled it
        # (delivered, in a mailbox) before this commit; that newer status stands.
        changed = await conn.execute(sql.forward, {"ids": list(forwarded), "at_": _now()})
        missing = forwarded - set(_returned(changed, last_seq))
        if missing:  # settled already (they stand), or not stored at all (an error for the caller)
            found = await conn.execute(sql.stored, {"ids": list(missing)})
            missing -= set(found.scalars())
        for i, op in enumerate(ops):
            if isinstance(op, MarkForwarded) and op.message_id in missing:
                outcomes[i] = UnknownMessage(op.message_id)

    answering = [op.bericht for op in received if op.bericht.answers_message_id]
    answered: set[str] = set()
    if answering:
        # The first answer to a heenbericht closes its deadline; a later one changes nothing.
        found = await conn.execute(
            sql.answered, {"ids": list({b.answers_message_id for b in answering}), "at_": _now()}
        )
        answered = set(found.scalars())

    # Successful attempts only count: one UPDATE for all of them (unless a message is attempted twice
    # in the batch), instead of one round trip each. They run before the transitions, as each attempt
    # is submitted before its `delivered` transition.
    ok_attempts = [op for op in ops if isinstance(op, RecordAttempt) and op.outcome == "ok"]
    counted = {op.message_id for op in ok_attempts}
    if not ok_attempts or len(counted) != len(ok_attempts):
        counted = set()
    else:
        at = max(op.at for op in ok_attempts)
        await conn.execute(sql.count_attempts, {"ids": list(counted), "at_": at})

    together = _transitions_together(ops)
    for i, op in enumerate(ops):
        if isinstance(op, Transition) and not together:
            await _apply_transitions(conn, sql, ops, [i], outcomes, last_seq)  # in order, among the attempts
        elif isinstance(op, RecordAttempt) and not (op.outcome == "ok" and op.message_id in counted):
            attempt = {"attempts": berichten.c.attempts + 1, "updated_at": op.at}
            if op.outcome != "ok":
                attempt["last_error"] = str(op.detail.get("error", op.outcome))[:300]
            await conn.execute(
                update(berichten).where(berichten.c.message_id == op.message_id).values(**attempt)
            )

    if together:
        transitions = [i for i, op in enumerate(ops) if isinstance(op, Transition)]
        await _apply_transitions(conn, sql, ops, transitions, outcomes, last_seq)

    events = _events(ops, outcomes, answered)
    if events:
        await number_events(conn, events, (op.bericht.message_id for op in received), last_seq)
        await conn.execute(_INSERT_EVENTS, events)

    refusals = [_refusal_values(op.weigering) for op in ops if isinstance(op, RecordRefusal)]
    if refusals:
        await conn.execute(_INSERT_REFUSALS, refusals)
    return outcomes


def _returned(changed: Any, last_seq: dict[str, int]) -> list[str]:
    """The ids an UPDATE (statements of _changed) changed; their last event seq into `last_seq`."""
    ids = []
    for row in changed:
        ids.append(row[0])
        if len(row) > 1:
            last_seq[row[0]] = row[1]
    return ids


def _transitions_together(ops: Sequence[AuditOp]) -> bool:
    """May the batch's transitions be applied set-wise, one UPDATE per kind instead of one each?

    Yes when each message has at most one transition in the batch and no failed attempt (which sets
    last_error, as a dead-letter transition does): then their order among the other ops does not
    matter. A worker's batch of deliveries is such a batch; 16 of them cost one round trip, not 16,
    and a lone transition takes the prebuilt statement too.
    """
    ids = [op.message_id for op in ops if isinstance(op, Transition)]
    if not ids or len(set(ids)) != len(ids):
        return False
    failed = {op.message_id for op in ops if isinstance(op, RecordAttempt) and op.outcome != "ok"}
    return failed.isdisjoint(ids)


async def _apply_transitions(
    conn: AsyncConnection,
    sql: _Statements,
    ops: Sequence[AuditOp],
    indices: list[int],
    outcomes: list[BaseException | None],
    last_seq: dict[str, int],
) -> None:
    """The Transitions at `indices`, one compare-and-set UPDATE per kind of change; the last event
    numbers of the rows they change go into `last_seq`."""
    groups: dict[tuple[BerichtStatus, frozenset[BerichtStatus], str | None], list[int]] = {}
    for i in indices:
        op = ops[i]
        if isinstance(op, Transition):
            groups.setdefault((op.to, op.from_, op.last_error), []).append(i)
    for (to, from_, last_error), members in groups.items():
        transitions = [op for op in (ops[i] for i in members) if isinstance(op, Transition)]
        # One timestamp for the group: the rows change in one transaction (each event keeps its own).
        at = max(op.at for op in transitions)
        params: dict[str, Any] = {"ids": [op.message_id for op in transitions], "at_": at}
        if last_error is not None:
            params["error_"] = last_error[:300]
        changed = await conn.execute(sql.transition(to, from_, last_error is not None), params)
        done = set(_returned(changed, last_seq))
        for i, op in zip(members, transitions, strict=True):
            if op.message_id not in done:
                outcomes[i] = NotInState(op.message_id)


def _events(
    ops: Sequence[AuditOp], outcomes: list[BaseException | None], answered: set[str]
) -> list[dict[str, Any]]:
    """The audit events the ops produce, in queue order (which becomes seq order), without seq yet."""
    events: list[dict[str, Any]] = []
    for op, outcome in zip(ops, outcomes, strict=True):
        if outcome is not None:
            continue
        if isinstance(op, StoreReceived):
            b = op.bericht
            events.append(
                _event(
                    b.message_id,
                    b.received_at,
                    "received",
                    {
                        "request_id": b.request_id,
                        "sha256": b.sha256,
                        "size": b.size,
                    }
                    | ({"submitted_by": str(b.submitted_by)} if b.submitted_by else {}),
                )
            )
            events.append(
                _event(
                    b.message_id,
                    op.at,
                    "accepted",
                    {
                        "receiver": str(b.receiver),
                        "routing_version": b.routing_version,
                    },
                )
            )
            if b.answers_message_id in answered:
                detail = {"by": b.message_id, "message": b.berichttype, "retourcodes": list(b.retourcodes)}
                events.append(_event(b.answers_message_id, op.at, "answered", detail))
        elif isinstance(op, MarkForwarded):
            events.append(_event(op.message_id, op.at, "published", {"queue": op.queue}))
        elif isinstance(op, AddEvent):
            events.append(_event(op.message_id, op.at, op.kind, op.detail))
        elif isinstance(op, RecordAttempt):
            events.append(
                _event(
                    op.message_id,
                    op.at,
                    "delivery_attempted",
                    {"channel": op.channel, "outcome": op.outcome} | op.detail,
                )
            )
        elif isinstance(op, Transition):
            events.append(_event(op.message_id, op.at, op.event, op.detail))
    return events


def _event(message_id: str, at: datetime, kind: str, detail: dict[str, Any]) -> dict[str, Any]:
    return {"message_id": message_id, "at": at, "kind": kind, "detail": detail}


async def number_events(
    conn: AsyncConnection,
    events: list[dict[str, Any]],
    new_ids: Iterable[str],
    known: Mapping[str, int] | None = None,
) -> None:
    """Give each event the next seq of its message.

    `known`: the last seq of some messages as this transaction read it (the UPDATEs that changed their
    rows return it). This process writes through one writer task, so reading the current maximum here
    is race-free within it; another process racing on the same message hits UNIQUE(message_id, seq)
    and the batch is retried item by item with fresh numbers.
    """
    # A message stored in this very batch has no events yet (its id is new: the intake makes it when
    # storing), so only the others need a look-up. That spares the SELECT in the common batch of
    # store_received calls alone; were the assumption ever wrong, UNIQUE(message_id, seq) says so.
    last: dict[str, int] = dict(known or {})
    ids = {e["message_id"] for e in events} - set(new_ids) - last.keys()
    if ids:
        result = await conn.execute(statements(conn).last_seq, {"ids": list(ids)})
        last.update((message_id, seq) for message_id, seq in result)
    for e in events:
        e["seq"] = last[e["message_id"]] = last.get(e["message_id"], 0) + 1


def _body_values(op: StoreReceived) -> dict[str, Any]:
    sealed = op.sealed or Sealed(None, op.bericht.body)
    return {"message_id": op.bericht.message_id, "body": sealed.data, "key_id": sealed.key_id}


def _refusal_values(w: Weigering) -> dict[str, Any]:
    return {
        "request_id": w.request_id,
        "at": w.at,
        "code": w.code.value,
        "detail": w.detail,
        "afzender_kind": w.afzender.kind.value if w.afzender else None,
        "afzender_code": w.afzender.code if w.afzender else None,
        "standaard": w.standaard,
        "berichttype": w.berichttype,
        "sha256": w.sha256,
        "size": w.size,
        "path": w.path[:200] if w.path else None,
    }
