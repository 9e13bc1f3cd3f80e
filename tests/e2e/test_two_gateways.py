"""Two gateway processes side by side on one RabbitMQ and one PostgreSQL: the same message posted to
both at once is accepted once, forwarded once, and the other answer is the duplicate (or a 503 that the
sender's retry turns into the duplicate)."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.berichten import example, with_header
from tests.support.hubproc import (
    HubProcess,
    delete_topology,
    drain_queue,
    free_port,
    postgres_database,
    prepare_hub,
)

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres, pytest.mark.slow]

MESSAGES = 30


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[tuple[HubProcess, HubProcess]]:
    with postgres_database() as url:
        first = prepare_hub(url, tmp_path, {"gemeente": "0363"})
        second = dataclasses.replace(
            first, port=free_port(), log_path=tmp_path / "hub-2.log", proc=None, workers=[]
        )
        first.start()
        second.start()
        yield first, second
        second.stop()
        first.stop()
        asyncio.run(delete_topology(first))


async def _post_until_answered(session: aiohttp.ClientSession, hub: HubProcess, body: bytes) -> list[int]:
    """Post like a sender: retry on 503 until a 2xx; return every status seen."""
    headers = {"Authorization": f"Bearer {hub.tokens['gemeente']}", "Content-Type": "application/xml"}
    statuses = []
    for _ in range(100):
        async with session.post(f"{hub.url}/v1/berichten", data=body, headers=headers) as r:
            statuses.append(r.status)
            answer: dict[str, Any] = await r.json()
            if r.status in (200, 202):
                statuses.append(hash(answer["message_id"]))
                return statuses
            assert r.status == 503 and r.headers["Retry-After"], answer
        await asyncio.sleep(0.2)
    raise AssertionError(f"never accepted: {statuses}")


async def test_the_same_message_to_two_gateways_at_once_is_forwarded_once(
    gateways: tuple[HubProcess, HubProcess],
) -> None:
    a, b = gateways
    template = example("iwmo-3.2", "WMO301")
    answers: collections.Counter[str] = collections.Counter()
    ids_per_message = []
    async with aiohttp.ClientSession() as session:
        for i in range(MESSAGES):
            body = with_header(
                template,
                afzender="0363",
                ontvanger="12345678",
                identificatie=f"T{i:03d}{uuid.uuid4().hex[:8]}",
                dagtekening=date(2026, 1, 5),
            )
            first, second = await asyncio.gather(
                _post_until_answered(session, a, body), _post_until_answered(session, b, body)
            )
            final = sorted([first[-2], second[-2]])
            answers[f"{final[0]}+{final[1]}"] += 1
            assert final == [200, 202], f"one accepted, one duplicate: {first[:-1]} {second[:-1]}"
            assert first[-1] == second[-1], "both answers name the same message_id"
            ids_per_message.append(first[-1])
        got = await drain_queue(a.queue("aanbieder:12345678"), expect=MESSAGES, wait=15)
    copies = collections.Counter(hash(m.message_id) for m in got)
    print(f"\ntwo gateways: {MESSAGES} messages, final answers {dict(answers)}, queue copies {len(got)}")
    assert set(copies) == set(ids_per_message)
    assert all(n == 1 for n in copies.values()), "no message forwarded twice"
