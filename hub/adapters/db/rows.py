"""Conversions between rows and the port's dataclasses."""

from __future__ import annotations

from typing import Any

from sqlalchemy import RowMapping

from hub.domain.parties import PartyKind, PartyRef
from hub.service.ports import BerichtStatus, NieuwBericht, StoredBericht


def bericht_values(b: NieuwBericht) -> dict[str, Any]:
    return {
        "message_id": b.message_id,
        "conversation_id": b.conversation_id,
        "standaard": b.standaard,
        "release": b.release,
        "berichttype": b.berichttype,
        "berichtcode": b.berichtcode,
        "afzender_kind": b.afzender.kind.value,
        "afzender_code": b.afzender.code,
        "ontvanger": b.ontvanger,
        "receiver_kind": b.receiver.kind.value,
        "receiver_code": b.receiver.code,
        "identificatie": b.identificatie,
        "dagtekening": b.dagtekening,
        "answers_message_id": b.answers_message_id,
        "sha256": b.sha256,
        "size": b.size,
        "status": BerichtStatus.RECEIVED.value,
        "received_at": b.received_at,
        "updated_at": b.received_at,  # not changed since it arrived
        "request_id": b.request_id,
        "routing_version": b.routing_version,
        "attempts": 0,
        "answer_due": b.answer_due,
        "retourcodes": " ".join(b.retourcodes) or None,
    }


def stored_from_new(b: NieuwBericht) -> StoredBericht:
    """What get() will return right after store_received: no read back needed."""
    return StoredBericht(
        message_id=b.message_id,
        conversation_id=b.conversation_id,
        standaard=b.standaard,
        release=b.release,
        berichttype=b.berichttype,
        berichtcode=b.berichtcode,
        afzender=b.afzender,
        ontvanger=b.ontvanger,
        receiver=b.receiver,
        identificatie=b.identificatie,
        dagtekening=b.dagtekening,
        answers_message_id=b.answers_message_id,
        sha256=b.sha256,
        size=b.size,
        status=BerichtStatus.RECEIVED,
        received_at=b.received_at,
        updated_at=b.received_at,
        answer_due=b.answer_due,
        retourcodes=b.retourcodes,
    )


def stored_from_row(row: RowMapping) -> StoredBericht:
    return StoredBericht(
        message_id=row["message_id"],
        conversation_id=row["conversation_id"],
        standaard=row["standaard"],
        release=row["release"],
        berichttype=row["berichttype"],
        berichtcode=row["berichtcode"],
        afzender=PartyRef(PartyKind(row["afzender_kind"]), row["afzender_code"]),
        ontvanger=row["ontvanger"],
        receiver=PartyRef(PartyKind(row["receiver_kind"]), row["receiver_code"]),
        identificatie=row["identificatie"],
        dagtekening=row["dagtekening"],
        answers_message_id=row["answers_message_id"],
        sha256=row["sha256"],
        size=row["size"],
        status=BerichtStatus(row["status"]),
        received_at=row["received_at"],
        updated_at=row["updated_at"],
        delivered_at=row["delivered_at"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        answer_due=row["answer_due"],
        answered_at=row["answered_at"],
        retourcodes=tuple((row["retourcodes"] or "").split()),
        body_purged_at=row["body_purged_at"],
    )
