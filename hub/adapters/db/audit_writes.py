"""The writes of the audit store, as ops the group-commit writer applies a batch at a time.

A batch costs a fixed handful of statements whatever its size: one SELECT for the event sequence
numbers, one executemany per table, one UPDATE for all forwarded messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.adapters.db.rows import bericht_values
from hub.adapters.db.tables import audit_events, bericht_bodies, berichten, weigeringen
from hub.service.ports import BerichtStatus, NieuwBericht, Weigering


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class StoreReceived:
    bericht: NieuwBericht
    at: datetime = field(default_factory=_now)


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


AuditOp = StoreReceived | MarkForwarded | AddEvent | RecordRefusal


class UnknownMessage(LookupError):
    """mark_forwarded for a message_id that is not stored."""


async def apply_batch(conn: AsyncConnection, ops: Sequence[AuditOp]) -> list[BaseException | None]:
    outcomes: list[BaseException | None] = [None] * len(ops)
    received = [op for op in ops if isinstance(op, StoreReceived)]
    if received:
        await conn.execute(insert(berichten), [bericht_values(op.bericht) for op in received])
        await conn.execute(
            insert(bericht_bodies),
            [{"message_id": op.bericht.message_id, "body": op.bericht.body} for op in received],
        )

    forwarded = {op.message_id for op in ops if isinstance(op, MarkForwarded)}
    if forwarded:
        # One timestamp for the batch: these rows all changed in the same transaction.
        found = await conn.execute(
            update(berichten)
            .where(berichten.c.message_id.in_(forwarded))
            .values(status=BerichtStatus.FORWARDED.value, updated_at=_now())
            .returning(berichten.c.message_id)
        )
        missing = forwarded - set(found.scalars())
        for i, op in enumerate(ops):
            if isinstance(op, MarkForwarded) and op.message_id in missing:
                outcomes[i] = UnknownMessage(op.message_id)

    events = _events(ops, outcomes)
    if events:
        await _number(conn, events, (op.bericht.message_id for op in received))
        await conn.execute(insert(audit_events), events)

    refusals = [_refusal_values(op.weigering) for op in ops if isinstance(op, RecordRefusal)]
    if refusals:
        await conn.execute(insert(weigeringen), refusals)
    return outcomes


def _events(ops: Sequence[AuditOp], outcomes: list[BaseException | None]) -> list[dict[str, Any]]:
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
                    },
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
        elif isinstance(op, MarkForwarded):
            events.append(_event(op.message_id, op.at, "published", {"queue": op.queue}))
        elif isinstance(op, AddEvent):
            events.append(_event(op.message_id, op.at, op.kind, op.detail))
    return events


def _event(message_id: str, at: datetime, kind: str, detail: dict[str, Any]) -> dict[str, Any]:
    return {"message_id": message_id, "at": at, "kind": kind, "detail": detail}


async def _number(conn: AsyncConnection, events: list[dict[str, Any]], new_ids: Iterable[str]) -> None:
    """Give each event the next seq of its message.

    This process writes through one writer task, so reading the current maximum here is race-free
    within it; another process racing on the same message hits UNIQUE(message_id, seq) and the
    batch is retried item by item with fresh numbers.
    """
    # A message stored in this very batch has no events yet (its id is new: the intake makes it when
    # storing), so only the others need a look-up. That spares the SELECT in the common batch of
    # store_received calls alone; were the assumption ever wrong, UNIQUE(message_id, seq) says so.
    ids = {e["message_id"] for e in events} - set(new_ids)
    last: dict[str, int] = {}
    if ids:
        result = await conn.execute(
            select(audit_events.c.message_id, func.max(audit_events.c.seq))
            .where(audit_events.c.message_id.in_(ids))
            .group_by(audit_events.c.message_id)
        )
        last = {message_id: seq for message_id, seq in result}
    for e in events:
        e["seq"] = last[e["message_id"]] = last.get(e["message_id"], 0) + 1


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
    }
