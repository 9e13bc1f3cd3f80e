"""The 2xx promise under SIGKILL: kill the hub while senders post, restart it, and count.

Every message that got a 202 must be in the receiver's queue exactly once; every message without a 2xx
is retried by its sender (as the protocol asks) until it is accepted; in the end every message is in
the queue, and a second copy can only exist for a message whose first attempt went unanswered
(docs/architecture.md). Runs against the real RabbitMQ and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import aiohttp
import pytest

from tests.support.berichten import example, with_header
from tests.support.hubproc import HubProcess, delete_topology, drain_queue, postgres_database, prepare_hub

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres, pytest.mark.slow]

SENDERS = 8
MESSAGES = 240
KILLS = 2


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    with postgres_database() as url:
        hub = prepare_hub(url, tmp_path, {"gemeente": "0363"})
        yield hub
        hub.stop()
        asyncio.run(delete_topology(hub))


async def test_sigkill_while_posting_loses_nothing_and_duplicates_nothing_promised(hub: HubProcess) -> None:
    template = example("iwmo-3.2", "WMO301")
    bodies = [
        with_header(
            template,
            afzender="0363",
            ontvanger="12345678",
            identificatie=f"K{i:06d}{uuid.uuid4().hex[:4]}",
            dagtekening=date(2026, 1, 5),
        )
        for i in range(MESSAGES)
    ]
    first_answer: dict[int, int | None] = {}  # message index -> status of its first attempt (None: no answer)
    accepted: dict[int, str] = {}  # message index -> message_id of its 2xx
    all_2xx_ids: dict[int, set[str]] = collections.defaultdict(set)
    work: asyncio.Queue[int] = asyncio.Queue()
    for i in range(MESSAGES):
        work.put_nowait(i)
    headers = {"Authorization": f"Bearer {hub.tokens['gemeente']}", "Content-Type": "application/xml"}
    statuses: collections.Counter[str] = collections.Counter()

    async def sender(session: aiohttp.ClientSession) -> None:
        while True:
            try:
                i = work.get_nowait()
            except asyncio.QueueEmpty:
                return
            while True:  # a sender retries until it has a 2xx, as the protocol asks
                try:
                    async with session.post(f"{hub.url}/v1/berichten", data=bodies[i], headers=headers) as r:
                        status = r.status
                        answer = await r.json() if r.content_type == "application/json" else {}
                except (TimeoutError, aiohttp.ClientError):
                    status, answer = None, {}
                first_answer.setdefault(i, status)
                statuses[str(status)] += 1
                if status in (200, 202):
                    accepted[i] = answer["message_id"]
                    all_2xx_ids[i].add(answer["message_id"])
                    break
                assert status in (None, 503), f"unexpected answer {status}: {answer}"
                await asyncio.sleep(0.2)

    async def killer() -> None:
        for _ in range(KILLS):
            await asyncio.sleep(1.0)
            hub.kill()
            await asyncio.sleep(0.3)
            await asyncio.to_thread(hub.start)

    hub.start()
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(killer(), *(sender(session) for _ in range(SENDERS)))

    assert len(accepted) == MESSAGES, "every message is accepted in the end"
    for i, ids in all_2xx_ids.items():
        assert len(ids) == 1, f"message {i} was accepted under two ids: {ids}"

    copies = collections.Counter(
        m.message_id for m in await drain_queue(hub.queue("aanbieder:12345678"), expect=MESSAGES, wait=15)
    )
    promised_first_time = [i for i, s in first_answer.items() if s == 202]
    unanswered_first = [i for i, s in first_answer.items() if s != 202]
    lost = [i for i in range(MESSAGES) if copies[accepted[i]] == 0]
    duplicated_promised = [i for i in promised_first_time if copies[accepted[i]] != 1]
    extra = set(copies) - set(accepted.values())
    second_copies = sum(n - 1 for n in copies.values() if n > 1)
    print(
        f"\ncrash test: sent={MESSAGES} kills={KILLS} attempts={dict(statuses)} "
        f"accepted_first_try={len(promised_first_time)} retried={len(unanswered_first)} "
        f"in_queue={sum(copies.values())} distinct={len(copies)} second_copies={second_copies} "
        f"lost={len(lost)}"
    )
    assert hub.proc is not None and hub.proc.poll() is None, "the restarted hub is still running"
    assert not lost, f"lost messages: {lost[:10]}"
    assert not duplicated_promised, (
        f"202'd on the first try but not exactly once in the queue: {duplicated_promised}"
    )
    assert not extra, "the queue holds messages that were never accepted"
    assert second_copies <= len(unanswered_first)
