"""A receiver on the AMQP channel gets a RabbitMQ user that can consume its own queue and nothing else."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator

import aio_pika
import aiormq
import pytest

from hub.adapters.broker import AmqpPublisher
from hub.bootstrap import topology_of
from hub.domain.parties import PartyKind, PartyRef
from hub.entrypoints.commands.amqp import access_commands
from hub.settings import Settings
from tests.integration.test_broker import AMQP_URL, _stored

pytestmark = pytest.mark.rabbitmq

MINE = PartyRef(PartyKind.GEMEENTE, "0363")
OTHER = PartyRef(PartyKind.GEMEENTE, "0599")


@pytest.fixture
async def setup() -> AsyncIterator[tuple[Settings, str, str]]:
    tag = uuid.uuid4().hex[:8]
    settings = Settings(amqp_exchange=f"test.{tag}", amqp_queue_prefix=f"test.{tag}.ontvanger.")
    publisher = AmqpPublisher(AMQP_URL, topology_of(settings))
    await publisher.start()
    for receiver in (MINE, OTHER):
        await publisher.publish(_stored(receiver), b"<Bericht/>")
    user, password = f"test-{tag}", uuid.uuid4().hex
    for command in access_commands(MINE, user, "/", settings):
        given = password + "\n" if command[1] == "add_user" else None
        await asyncio.to_thread(
            subprocess.run, command, input=given, text=True, check=True, capture_output=True, timeout=60
        )
    yield settings, user, password
    await asyncio.to_thread(
        subprocess.run, ["rabbitmqctl", "delete_user", user], check=False, capture_output=True, timeout=60
    )
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for name in publisher.declared_queues():
            await channel.queue_delete(name)
        topology = publisher.topology
        for exchange in (topology.exchange, topology.dead_letter_exchange):
            await channel.exchange_delete(exchange)
        await channel.queue_delete(topology.dead_letter_queue)
    await publisher.close()


async def test_the_receiver_consumes_its_own_queue_and_nothing_else(setup: tuple[Settings, str, str]) -> None:
    settings, user, password = setup
    topology = topology_of(settings)
    url = AMQP_URL.replace("guest:guest", f"{user}:{password}")
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        mine = await channel.declare_queue(topology.queue_name("gemeente.0363"), passive=True)
        message = await mine.get(timeout=5)
        assert message is not None and message.body == b"<Bericht/>"
        await message.ack()

        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            other = await channel.declare_queue(topology.queue_name("gemeente.0599"), passive=True)
            await other.get(timeout=5)
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await channel.declare_queue("test-not-allowed", durable=True)
