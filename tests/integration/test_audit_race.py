"""Two gateway processes write audit events of one message at once: the store must number them
without losing any and without a caller seeing the race (it was a 500 before)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime

from hub.adapters.db import create_audit_store
from hub.domain.parties import PartyKind, PartyRef
from hub.service.ports import NieuwBericht


async def test_two_stores_add_events_to_one_message_concurrently(database_url: str) -> None:
    a = await create_audit_store(database_url)
    b = await create_audit_store(database_url)  # a second process, as far as the database can tell
    try:
        mid = str(uuid.uuid4())
        await a.store_received(
            NieuwBericht(
                message_id=mid,
                conversation_id=mid,
                standaard="iWmo",
                release="3.2",
                berichttype="WMO301",
                berichtcode="414",
                afzender=PartyRef(PartyKind.GEMEENTE, "0363"),
                ontvanger="12345678",
                receiver=PartyRef(PartyKind.AANBIEDER, "12345678"),
                identificatie=mid[:12],
                dagtekening=date(2026, 1, 5),
                answers_message_id=None,
                sha256="0" * 64,
                size=1,
                body=b"x",
                received_at=datetime.now(UTC),
                request_id="r",
                routing_version="t",
            )
        )
        for i in range(15):  # one event each at the same moment: both number it after the same max(seq)
            await asyncio.gather(a.add_event(mid, f"probe_a_{i}"), b.add_event(mid, f"probe_b_{i}"))
        events = await a.events(mid)
        assert [e.seq for e in events] == list(range(1, 33))
        assert sum(1 for e in events if e.kind.startswith("probe_")) == 30
    finally:
        await a.close()
        await b.close()
