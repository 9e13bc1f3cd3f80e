"""RabbitMQ through aio-pika: topology, and persistent publishing with publisher confirms.

Topology (docs/architecture.md): one durable direct exchange; per receiver one durable quorum queue,
bound by its queue key ("gemeente.0363"), with an explicit delivery limit and a dead-letter exchange;
the dead-letter exchange routes everything to one durable quorum queue. Receiver queues are declared
the first time this process publishes to them (10,000 aanbieders should not all be declared at start).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from hub.service.ports import BrokerUnavailable, StoredBericht

log = logging.getLogger(__name__)

# What a dropped or refusing broker raises; all of it means "not confirmed".
_BROKER_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError,
    aio_pika.exceptions.AMQPException,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
    RuntimeError,  # aio-pika raises it for a channel that is closed while reconnecting
)


@dataclass(frozen=True, slots=True)
class Topology:
    exchange: str = "hub.berichten"
    queue_prefix: str = "hub.ontvanger."
    dead_letter_exchange: str = "hub.berichten.dlx"
    dead_letter_queue: str = "hub.berichten.deadletter"
    delivery_limit: int = 20

    def queue_name(self, queue_key: str) -> str:
        return self.queue_prefix + queue_key

    def queue_arguments(self) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": self.dead_letter_exchange,
            "x-delivery-limit": self.delivery_limit,
        }


def queue_key(kind: str, code: str) -> str:
    return f"{kind}.{code}"


class AmqpPublisher:
    """Implements the Publisher port. One robust connection, one confirming channel, many in flight."""

    def __init__(self, url: str, topology: Topology, *, timeout: float = 5.0) -> None:
        self._url = url
        self._topology = topology
        self._timeout = timeout
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._declared: set[str] = set()
        self._declare_lock = asyncio.Lock()
        self._starter: asyncio.Task[None] | None = None

    @property
    def topology(self) -> Topology:
        return self._topology

    async def start(self) -> None:
        """Connect and declare the fixed topology. Raises BrokerUnavailable when RabbitMQ is down."""
        try:
            self._connection = await aio_pika.connect_robust(
                self._url, timeout=self._timeout, client_properties={"connection_name": "hub-gateway"}
            )
            self._connection.reconnect_callbacks.add(self._on_reconnect)
            self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            await self._declare_fixed(self._channel)
        except _BROKER_ERRORS as exc:
            # Not close(): that cancels the background starter, which is who called us.
            await self._disconnect()
            raise BrokerUnavailable(f"RabbitMQ not reachable: {type(exc).__name__}") from exc

    def start_in_background(self, interval: float = 2.0) -> None:
        """Keep trying to connect until RabbitMQ is there; publishes fail fast meanwhile."""

        async def retry() -> None:
            while self._connection is None:
                await asyncio.sleep(interval)
                try:
                    await self.start()
                    log.info("connected to RabbitMQ")
                except BrokerUnavailable:
                    continue

        self._starter = asyncio.get_running_loop().create_task(retry())

    def _on_reconnect(self, *_: Any) -> None:
        # A broker restart may have lost nothing (durable), but re-declare to be safe.
        self._declared.clear()
        self._exchange = None

    async def _declare_fixed(self, channel: AbstractChannel) -> None:
        t = self._topology
        dlx = await channel.declare_exchange(
            t.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
        )
        dlq = await channel.declare_queue(
            t.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dlq.bind(dlx, routing_key="#")
        self._exchange = await channel.declare_exchange(
            t.exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )

    def declared_queues(self) -> list[str]:
        return [self._topology.queue_name(k) for k in sorted(self._declared)]

    async def ensure_queue(self, key: str) -> str:
        """Declare the receiver's queue (once per process) and return its name."""
        name = self._topology.queue_name(key)
        if key in self._declared:
            return name
        async with self._declare_lock:
            if key not in self._declared:
                channel = self._require_channel()
                if self._exchange is None:
                    await self._declare_fixed(channel)
                assert self._exchange is not None
                queue = await channel.declare_queue(
                    name, durable=True, arguments=self._topology.queue_arguments()
                )
                await queue.bind(self._exchange, routing_key=key)
                self._declared.add(key)
        return name

    def _require_channel(self) -> AbstractChannel:
        if self._channel is None:
            raise BrokerUnavailable("not connected to RabbitMQ")
        return self._channel

    async def publish(self, bericht: StoredBericht, body: bytes) -> str:
        key = queue_key(bericht.receiver.kind.value, bericht.receiver.code)
        message = aio_pika.Message(
            body,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=bericht.message_id,
            correlation_id=bericht.conversation_id,
            content_type="application/xml",
            type=bericht.berichttype,
            app_id="istandaarden-hub",
            headers={
                "standaard": bericht.standaard,
                "release": bericht.release,
                "berichttype": bericht.berichttype,
                "afzender": str(bericht.afzender),
                "receiver": str(bericht.receiver),
                "conversation_id": bericht.conversation_id,
            },
        )
        try:
            async with asyncio.timeout(self._timeout):
                queue = await self.ensure_queue(key)
                assert self._exchange is not None
                confirmation = await self._exchange.publish(message, routing_key=key, mandatory=True)
        except aio_pika.exceptions.DeliveryError as exc:
            # Returned as unroutable, or nacked: never a silent drop. Declare the queue again next time
            # (it may have been deleted behind our back).
            self._declared.discard(key)
            raise BrokerUnavailable(f"RabbitMQ did not take the message: {exc}") from exc
        except _BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"RabbitMQ unavailable: {type(exc).__name__}") from exc
        if not isinstance(confirmation, aiormq.spec.Basic.Ack):
            raise BrokerUnavailable(f"RabbitMQ did not confirm the message: {type(confirmation).__name__}")
        return queue

    async def ping(self) -> None:
        if self._connection is None or self._connection.is_closed or self._channel is None:
            raise BrokerUnavailable("not connected to RabbitMQ")
        if self._channel.is_closed:
            raise BrokerUnavailable("RabbitMQ channel closed")

    async def queue_depth(self, name: str) -> int | None:
        """Messages ready in a queue (None when it does not exist), for the metrics gauges.

        A passive declare on a short-lived channel of its own: a missing queue closes that channel,
        never the publishing one. Raises BrokerUnavailable when RabbitMQ cannot be asked.
        """
        connection = self._connection
        if connection is None or connection.is_closed:
            raise BrokerUnavailable("not connected to RabbitMQ")
        try:
            async with asyncio.timeout(self._timeout):
                channel = await connection.channel(publisher_confirms=False)
                try:
                    queue = await channel.declare_queue(name, passive=True)
                    count: int | None = queue.declaration_result.message_count
                    return count
                except aio_pika.exceptions.ChannelNotFoundEntity:
                    return None
                finally:
                    if not channel.is_closed:
                        await channel.close()
        except _BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"RabbitMQ unavailable: {type(exc).__name__}") from exc

    async def close(self) -> None:
        if self._starter is not None:
            self._starter.cancel()
            self._starter = None
        await self._disconnect()

    async def _disconnect(self) -> None:
        if self._connection is not None:
            conn, self._connection = self._connection, None
            self._channel = None
            self._exchange = None
            try:
                await conn.close()
            except _BROKER_ERRORS:
                log.debug("error while closing the RabbitMQ connection", exc_info=True)
