"""Records for store tests: a NieuwBericht with unique ids, changed where a test needs it."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime

from hub.domain.parties import PartyKind, PartyRef
from hub.service.ports import NieuwBericht

GEMEENTE = PartyRef(PartyKind.GEMEENTE, "0363")
AANBIEDER = PartyRef(PartyKind.AANBIEDER, "12345678")


def nieuw(**changes: object) -> NieuwBericht:
    """A WMO301 from gemeente 0363 to aanbieder 12345678 with a unique id and identificatie."""
    message_id = str(uuid.uuid4())
    body = f"<WMO301 id='{message_id}'/>".encode()
    b = NieuwBericht(
        message_id=message_id,
        conversation_id=message_id,
        standaard="iWmo",
        release="3.2",
        berichttype="WMO301",
        berichtcode="414",
        afzender=GEMEENTE,
        ontvanger=AANBIEDER.code,
        receiver=AANBIEDER,
        identificatie=uuid.uuid4().hex[:12],
        dagtekening=date(2025, 3, 14),
        answers_message_id=None,
        sha256=hashlib.sha256(body).hexdigest(),
        size=len(body),
        body=body,
        received_at=datetime.now(UTC),
        request_id=uuid.uuid4().hex,
        routing_version="test-1",
    )
    if "message_id" in changes and "conversation_id" not in changes:
        changes["conversation_id"] = changes["message_id"]
    return replace(b, **changes)  # type: ignore[arg-type]
