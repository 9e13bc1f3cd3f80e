"""The AMQP publisher against the real RabbitMQ on 127.0.0.1:5672."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from urllib.parse import urlsplit

import aio_pika
import pytest

from hub.adapters.broker import AmqpPublisher, Topology
from hub.domain.parties import PartyKind, PartyRef
from hub.service.ports import BerichtStatus, BrokerUnavailable, StoredBericht

pytestmark = pytest.mark.rabbitmq

AMQP_URL = os.environ.get("HUB_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def _topology() -> Topology:
    tag = uuid.uuid4().hex[:8]
    return Topology(
        exchange=f"test.{tag}.berichten",
        queue_prefix=f"test.{tag}.ontvanger.",
        dead_letter_exchange=f"test.{tag}.dlx",
        dead_letter_queue=f"test.{tag}.deadletter",
        delivery_limit=5,
    )


def _stored(receiver: PartyRef) -> StoredBericht:
    now = datetime.now(UTC)
    mid = str(uuid.uuid4())
    return StoredBericht(
        message_id=mid,
        conversation_id=mid,
        standaard="iWmo",
        release="3.2",
        berichttype="WMO301",
        berichtcode="414",
        afzender=PartyRef(PartyKind.GEMEENTE, "0363"),
        ontvanger=receiver.code,
        receiver=receiver,
        identificatie="ID1",
        dagtekening=date(2026, 1, 5),
        answers_message_id=None,
        sha256="0" * 64,
        size=3,
        status=BerichtStatus.RECEIVED,
        received_at=now,
        updated_at=now,
    )


@pytest.fixture
async def publisher() -> AsyncIterator[AmqpPublisher]:
    topology = _topology()
    pub = AmqpPublisher(AMQP_URL, topology)
    await pub.start()
    yield pub
    await pub.close()
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for name in [*list(pub.declared_queues()), topology.dead_letter_queue]:
            await channel.queue_delete(name)
        await channel.exchange_delete(topology.exchange)
        await channel.exchange_delete(topology.dead_letter_exchange)


async def test_publish_lands_in_the_receivers_durable_quorum_queue(publisher: AmqpPublisher) -> None:
    receiver = PartyRef(PartyKind.AANBIEDER, "12345678")
    bericht = _stored(receiver)
    queue_name = await publisher.publish(bericht, b"<Bericht/>")
    assert queue_name == publisher.topology.queue_name("aanbieder.12345678")

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        message = await queue.get(timeout=5)
        assert message is not None
        await message.ack()
    assert message.body == b"<Bericht/>"
    assert message.message_id == bericht.message_id
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.headers["berichttype"] == "WMO301"
    assert message.headers["receiver"] == "aanbieder:12345678"
    assert message.headers["afzender"] == "gemeente:0363"


async def test_queue_is_declared_quorum_with_delivery_limit_and_dead_lettering(
    publisher: AmqpPublisher,
) -> None:
    receiver = PartyRef(PartyKind.GEMEENTE, "0599")
    name = await publisher.ensure_queue("gemeente.0599")
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        # Re-declaring with other arguments fails (PRECONDITION_FAILED): proves the arguments in force.
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
            await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "classic"})
    await publisher.publish(_stored(receiver), b"x")


async def test_unroutable_publish_is_an_error_not_a_silent_drop(publisher: AmqpPublisher) -> None:
    receiver = PartyRef(PartyKind.GEMEENTE, "0014")
    await publisher.ensure_queue("gemeente.0014")
    # Delete the queue behind the publisher's back: the mandatory publish now has nowhere to go.
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(publisher.topology.queue_name("gemeente.0014"))
    with pytest.raises(BrokerUnavailable):
        await publisher.publish(_stored(receiver), b"x")
    # The next attempt declares the queue again and succeeds.
    assert await publisher.publish(_stored(receiver), b"x") == publisher.topology.queue_name("gemeente.0014")


async def test_start_fails_cleanly_when_the_broker_is_not_there() -> None:
    pub = AmqpPublisher("amqp://guest:guest@127.0.0.1:1/", _topology(), timeout=1.0)
    with pytest.raises(BrokerUnavailable):
        await pub.start()
    await pub.close()


async def test_background_start_keeps_trying_until_rabbitmq_is_there() -> None:
    """RabbitMQ down at start-up, up later: the gateway connects by itself (a failed attempt used to
    cancel the background starter, so it tried once and then never again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = urlsplit(AMQP_URL)

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port or 5672)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    topology = _topology()
    url = AMQP_URL.replace(f"{target.hostname}:{target.port or 5672}", f"127.0.0.1:{port}")
    pub = AmqpPublisher(url, topology, timeout=1.0)
    pub.start_in_background(interval=0.2)
    try:
        await asyncio.sleep(1.0)  # several attempts fail: nothing listens on the port yet
        with pytest.raises(BrokerUnavailable):
            await pub.ping()
        server = await asyncio.start_server(forward, "127.0.0.1", port)  # "RabbitMQ is back"
        async with server:
            for _ in range(50):
                with contextlib.suppress(BrokerUnavailable):
                    await pub.ping()
                    break
                await asyncio.sleep(0.2)
            await pub.ping()
            await pub.close()
            connection = await aio_pika.connect(AMQP_URL)
            async with connection:
                channel = await connection.channel()
                await channel.queue_delete(topology.dead_letter_queue)
                await channel.exchange_delete(topology.exchange)
                await channel.exchange_delete(topology.dead_letter_exchange)
            server.close()
    finally:
        await pub.close()
