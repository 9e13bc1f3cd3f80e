"""Two gateway processes write audit events of one message at once: the store must number them
without losing any and without a caller seeing the race (it was a 500 before)."""

from __future__ import annotations

import asyncio

from hub.adapters.db import create_audit_store
from tests.support.records import nieuw


async def test_two_stores_add_events_to_one_message_concurrently(database_url: str) -> None:
    a = await create_audit_store(database_url)
    b = await create_audit_store(database_url)  # a second process, as far as the database can tell
    try:
        mid = (await a.store_received(nieuw())).message_id
        for i in range(15):  # one event each at the same moment: both number it after the same max(seq)
            await asyncio.gather(a.add_event(mid, f"probe_a_{i}"), b.add_event(mid, f"probe_b_{i}"))
        events = await a.events(mid)
        assert [e.seq for e in events] == list(range(1, 33))
        assert sum(1 for e in events if e.kind.startswith("probe_")) == 30
    finally:
        await a.close()
        await b.close()
