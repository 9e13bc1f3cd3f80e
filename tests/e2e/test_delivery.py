"""Delivery end to end: `hub serve` + `hub worker` processes, real RabbitMQ and PostgreSQL, and a real
receiver server started by the test. Retry delays are shortened by settings (1 s base, 2 s cap).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest

from tests.support.berichten import example, with_header
from tests.support.hubproc import (
    AMQP_URL,
    REPO,
    HubProcess,
    delete_topology,
    free_port,
    postgres_database,
    prepare_hub,
    run_cli,
)
from tests.support.receiver import Receiver, always

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres, pytest.mark.slow]

PUSH = "12345678"  # routed by push to the test's receiver
MAILBOX = "87654321"  # fetches its mailbox
STUCK = "11223344"  # routed by push to a second receiver that stops answering


@pytest.fixture
async def stuck() -> AsyncIterator[Receiver]:
    r = Receiver()
    yield r
    r.responding.set()
    await r.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    yield r
    await r.stop()


@pytest.fixture
def hub(tmp_path: Path, receiver: Receiver, stuck: Receiver) -> Iterator[HubProcess]:
    rules = tmp_path / "routing_rules"
    shutil.copytree(REPO / "routing_rules", rules)
    (rules / "channels.csv").write_text(
        "party,kanaal,endpoint,valid_from,valid_until\n"
        f"aanbieder:{PUSH},push,{receiver.endpoint},,\n"
        f"aanbieder:{MAILBOX},mailbox,,,\n"
        f"aanbieder:{STUCK},push,{stuck.endpoint},,\n"
        "gemeente:0363,amqp,,,\n"
    )
    with postgres_database() as url:
        hub = prepare_hub(
            url,
            tmp_path,
            {"gemeente": "0363", "mailbox": MAILBOX, "push": PUSH},
            HUB_ROUTING_RULES=str(rules),
            HUB_RETRY_BASE_SECONDS="1",
            HUB_RETRY_CAP_SECONDS="2",
            HUB_RETRY_MAX_ATTEMPTS="6",
            HUB_AMQP_SETTLE_SECONDS="1",
        )
        hub.start()
        yield hub
        hub.stop()
        asyncio.run(delete_topology(hub))


async def _send(session: aiohttp.ClientSession, hub: HubProcess, ontvanger: str, n: int) -> list[str]:
    headers = {"Authorization": f"Bearer {hub.tokens['gemeente']}", "Content-Type": "application/xml"}
    ids = []
    for _ in range(n):
        body = with_header(
            example("iwmo-3.2", "WMO301"),
            afzender="0363",
            ontvanger=ontvanger,
            identificatie=uuid.uuid4().hex[:12],
            dagtekening=date(2026, 1, 5),
        )
        async with session.post(f"{hub.url}/v1/berichten", data=body, headers=headers) as r:
            assert r.status == 202, await r.text()
            ids.append((await r.json())["message_id"])
    return ids


async def _status(
    session: aiohttp.ClientSession, hub: HubProcess, mid: str, token: str | None = None
) -> dict[str, Any]:
    async with session.get(
        f"{hub.url}/v1/berichten/{mid}",
        headers={"Authorization": f"Bearer {token or hub.tokens['gemeente']}"},
    ) as r:
        assert r.status == 200
        answer: dict[str, Any] = await r.json()
        return answer


async def _wait_status(
    session: aiohttp.ClientSession,
    hub: HubProcess,
    mid: str,
    status: str,
    within: float = 30,
    token: str | None = None,
) -> dict[str, Any]:
    for _ in range(int(within * 5)):
        answer = await _status(session, hub, mid, token)
        if answer["status"] == status:
            return answer
        await asyncio.sleep(0.2)
    raise AssertionError(f"{mid} never reached {status}: {answer['status']} {answer['events'][-3:]}")


async def test_receiver_down_for_a_while_then_back_gets_everything_once(
    hub: HubProcess, receiver: Receiver
) -> None:
    metrics_port = free_port()
    hub.start_worker(metrics_port=metrics_port)
    async with aiohttp.ClientSession() as session:
        ids = await _send(session, hub, PUSH, 20)
        await asyncio.sleep(3)  # attempts fail: connection refused, retried with backoff
        assert not receiver.arrivals
        await receiver.start()
        assert await receiver.wait_for(20), f"arrived: {len(receiver.accepted)} of 20"
        for mid in ids:
            answer = await _wait_status(session, hub, mid, "delivered")
            kinds = [e["event"] for e in answer["events"]]
            assert kinds.count("delivered") == 1 and "delivery_attempted" in kinds
        # The worker's own /metrics counted it all.
        async with session.get(f"http://127.0.0.1:{metrics_port}/metrics") as r:
            metrics = await r.text()
    assert set(receiver.accepted) == set(ids)
    assert all(n == 1 for n in receiver.accepted.values()), "each message accepted exactly once"
    assert receiver.headers[ids[0]]["X-Message-Id"] == ids[0]
    succeeded = _sample(metrics, 'hub_deliveries_succeeded_total{channel="push",receiver_kind="aanbieder"}')
    retried = _sample(metrics, 'hub_deliveries_retried_total{channel="push",receiver_kind="aanbieder"}')
    assert succeeded == 20 and retried >= 20


def _sample(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not in the worker's metrics")


async def test_receiver_answering_500_then_200_and_400_dead_letter_then_replay(
    hub: HubProcess, receiver: Receiver
) -> None:
    refusing = False

    def behaviour(mid: str, seen: int) -> int:
        if refusing:
            return 400
        return 500 if seen < 2 else 200

    receiver.behaviour = behaviour
    await receiver.start()
    hub.start_worker()
    async with aiohttp.ClientSession() as session:
        (flaky,) = await _send(session, hub, PUSH, 1)
        answer = await _wait_status(session, hub, flaky, "delivered")
        assert answer["attempts"] == 3 and receiver.arrivals[flaky] == 3

        # A 400 is not retried: straight to the dead letters, with the reason.
        refusing = True
        [bad] = await _send(session, hub, PUSH, 1)
        answer = await _wait_status(session, hub, bad, "dead_lettered")
        assert receiver.arrivals[bad] == 1 and "400" in answer["last_error"]
        listed = [json.loads(line) for line in run_cli(hub.env, "deadletters", "list").splitlines()]
        assert [d["message_id"] for d in listed] == [bad]

        # Fixed at the receiver, then replayed by ops: delivered, same message_id, audited.
        refusing = False
        out = json.loads(run_cli(hub.env, "replay", bad))
        assert out["replayed"] is True
        answer = await _wait_status(session, hub, bad, "delivered")
        replayed = next(e for e in answer["events"] if e["event"] == "replayed")
        assert replayed["detail"]["by"].startswith("cli:")
        assert receiver.accepted[bad] == 1
        assert run_cli(hub.env, "deadletters", "list") == ""


async def test_an_amqp_receiver_consumes_its_own_queue_and_the_hub_records_the_delivery(
    hub: HubProcess,
) -> None:
    """Gemeente 0363 takes delivery over AMQP: the worker does not consume its queue, and marks its
    messages delivered only once the receiver has taken them (so they leave the backlog and retention
    may purge their bodies)."""
    hub.start_worker()
    # Its queue exists before its first message (its own RabbitMQ user could not declare it).
    assert await _queue_exists(hub.queue("gemeente:0363")), "the worker did not declare the AMQP queue"
    body = with_header(
        example("iwmo-3.2", "WMO315"),
        afzender=MAILBOX,
        ontvanger="0363",
        identificatie=uuid.uuid4().hex[:12],
        dagtekening=date(2026, 1, 5),
    )
    headers = {"Authorization": f"Bearer {hub.tokens['mailbox']}", "Content-Type": "application/xml"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{hub.url}/v1/berichten", data=body, headers=headers) as r:
            assert r.status == 202, await r.text()
            mid = (await r.json())["message_id"]
        await asyncio.sleep(4)  # several discovery rounds, settle margin passed: still in the queue
        assert (await _status(session, hub, mid, token=hub.tokens["mailbox"]))["status"] == "forwarded"

        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(hub.queue("gemeente:0363"), passive=True)
            message = await queue.get(timeout=5)
            assert message is not None and message.message_id == mid and message.body == body
            await message.ack()
        answer = await _wait_status(session, hub, mid, "delivered", token=hub.tokens["mailbox"])
        taken = [e for e in answer["events"] if e["event"] == "taken_from_queue"]
        assert len(taken) == 1 and taken[0]["detail"]["channel"] == "amqp"
        assert not [e for e in answer["events"] if e["event"] == "delivery_attempted"]


async def _queue_exists(name: str, within: float = 20) -> bool:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        for _ in range(int(within * 4)):
            channel = await connection.channel()  # a passive declare of a missing queue closes it
            try:
                await channel.declare_queue(name, passive=True)
                return True
            except aio_pika.exceptions.ChannelClosed:
                await asyncio.sleep(0.25)
    return False


async def test_sigterm_lets_the_worker_finish_the_push_it_holds(hub: HubProcess, receiver: Receiver) -> None:
    await receiver.start(responding=False)  # takes the POST, answers only when the test says so
    worker = hub.start_worker()
    async with aiohttp.ClientSession() as session:
        (mid,) = await _send(session, hub, PUSH, 1)
        for _ in range(150):
            if receiver.waiting:
                break
            await asyncio.sleep(0.1)
        assert receiver.waiting == 1, "the push never reached the receiver"
        worker.send_signal(signal.SIGTERM)
        await asyncio.sleep(1.5)
        assert worker.poll() is None, "the worker quit with a push in hand"
        receiver.responding.set()
        for _ in range(150):
            if worker.poll() is not None:
                break
            await asyncio.sleep(0.1)
        assert worker.returncode == 0, hub.log_tail()
        answer = await _status(session, hub, mid)
    assert answer["status"] == "delivered" and receiver.accepted[mid] == 1


async def test_mailbox_message_stays_until_acked(hub: HubProcess) -> None:
    hub.start_worker()
    headers = {"Authorization": f"Bearer {hub.tokens['mailbox']}"}
    async with aiohttp.ClientSession() as session:
        ids = await _send(session, hub, MAILBOX, 3)
        async with session.get(f"{hub.url}/v1/mailbox?limit=2", headers=headers) as r:
            page = await r.json()
        assert [b["message_id"] for b in page["berichten"]] == ids[:2] and page["next"]
        async with session.get(f"{hub.url}/v1/mailbox?after={page['next']}", headers=headers) as r:
            assert [b["message_id"] for b in (await r.json())["berichten"]] == ids[2:]

        async with session.get(f"{hub.url}/v1/mailbox/{ids[0]}", headers=headers) as r:
            assert r.status == 200 and r.headers["X-Message-Id"] == ids[0]
            assert (await r.read()).startswith(b"<?xml")
        # The receiver "crashes" here: no ack. The message is still there.
        await asyncio.sleep(2.5)  # the worker's hand-off to the mailbox happens meanwhile
        async with session.get(f"{hub.url}/v1/mailbox", headers=headers) as r:
            assert [b["message_id"] for b in (await r.json())["berichten"]] == ids

        for mid in ids:
            async with session.post(f"{hub.url}/v1/mailbox/{mid}/ack", headers=headers) as r:
                assert (await r.json()) == {"message_id": mid, "acked": True, "already": False}
        async with session.post(f"{hub.url}/v1/mailbox/{ids[0]}/ack", headers=headers) as r:
            assert (await r.json())["already"] is True
        async with session.get(f"{hub.url}/v1/mailbox", headers=headers) as r:
            assert (await r.json())["berichten"] == []
        # Another party cannot see or ack it.
        other = {"Authorization": f"Bearer {hub.tokens['push']}"}
        async with session.post(f"{hub.url}/v1/mailbox/{ids[0]}/ack", headers=other) as r:
            assert r.status == 404
        answer = await _status(session, hub, ids[0])
        assert answer["status"] == "delivered"
        assert {"mailbox_fetched", "acked"} <= {e["event"] for e in answer["events"]}


async def test_two_workers_deliver_each_message_once(hub: HubProcess, receiver: Receiver) -> None:
    receiver.behaviour = always(200)
    await receiver.start()
    hub.start_worker("worker-a")
    hub.start_worker("worker-b")
    async with aiohttp.ClientSession() as session:
        ids = await _send(session, hub, PUSH, 60)
        assert await receiver.wait_for(60)
        await asyncio.sleep(1.0)  # let any duplicate arrive before counting
        for mid in ids[-3:]:
            await _wait_status(session, hub, mid, "delivered")
    assert set(receiver.accepted) == set(ids)
    assert max(receiver.arrivals.values()) == 1, "no message delivered twice"


async def test_a_receiver_that_stops_answering_does_not_hold_up_the_others(
    hub: HubProcess, receiver: Receiver, stuck: Receiver
) -> None:
    await stuck.start(responding=False)  # takes connections, never answers (until released)
    await receiver.start()
    hub.start_worker()
    async with aiohttp.ClientSession() as session:
        held = await _send(session, hub, STUCK, 8)
        for _ in range(100):  # the worker has the stuck receiver's first messages in hand
            if stuck.waiting:
                break
            await asyncio.sleep(0.1)
        assert stuck.waiting, "the worker never reached the stuck receiver"
        flowing = await _send(session, hub, PUSH, 10)
        assert await receiver.wait_for(10), f"{len(receiver.accepted)} of 10 while another receiver hangs"
        assert not stuck.accepted, "the stuck receiver answered nothing meanwhile"
        stuck.responding.set()
        assert await stuck.wait_for(8)
        for mid in [*held, *flowing][-2:]:
            await _wait_status(session, hub, mid, "delivered")
    assert set(receiver.accepted) == set(flowing) and set(stuck.accepted) == set(held)
