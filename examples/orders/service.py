"""A downstream service's consumer loop, as a real one is written with aio-pika.

Owns one connection per running instance: a channel with a prefetch, a consumer on the
service's queue, and a loop that handles one delivery at a time and settles it itself
(ack after the work is done, nack with requeue when it fails). An instance runs until
:meth:`Service.stop` (the service is taken down or redeployed), until it crashes
(:class:`Crash`, raised by a handler: its channel closes with the delivery
unacknowledged, so the broker redelivers it), or until the broker closes its channel or
connection. Deliveries it never acknowledged go back to the queue when it goes.
What outlives an instance (a database, a sent-mail log, aggregates) is the subclass's
business and is passed in, so a restarted instance carries on from it.
Must not publish or declare.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

Events = Callable[[str], None]


async def parse_order(message: AbstractIncomingMessage, events: Events,
                      who: str) -> dict[str, Any] | None:
    """The OrderPlaced event in ``message``, or None after rejecting it (no requeue: it
    goes to the queue's DLQ) when it is not one; retrying would not make it one."""
    try:
        order = json.loads(message.body)
        if not isinstance(order, dict) or not isinstance(order.get("items"), list):
            raise ValueError("not an OrderPlaced event")
        order.setdefault("order_id", message.message_id)
    except ValueError as exc:
        events(f"{who}: message {message.message_id} rejected to the DLQ: {exc}")
        await message.reject(requeue=False)
        return None
    return order


class Crash(Exception):
    """Raised by a handler to kill its instance without settling the delivery."""


class Service:
    """Subclasses set ``name``, ``queue``, ``prefetch`` and implement :meth:`handle`."""

    name = "service"
    queue = ""
    prefetch = 10

    def __init__(self, url: str, events: Events) -> None:
        self.url = url
        self.events = events
        self.up = False
        self._stopping = False
        self._inbox: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()

    async def handle(self, message: AbstractIncomingMessage) -> None:
        raise NotImplementedError

    def arguments(self) -> dict[str, Any]:
        """basic.consume arguments (a stream consumer's offset, for one)."""
        return {}

    def on_connected(self, server_properties: dict[str, Any]) -> None:
        """The broker's connection.start properties, before consuming."""

    def stop(self) -> None:
        """Finish the delivery in hand, then disconnect; deliveries prefetched but not
        handled yet go back to the queue."""
        self._stopping = True
        self._inbox.put_nowait(None)

    async def run(self) -> str:
        """Consume until stopped; returns ``stopped``, ``crashed`` or ``disconnected``."""
        connection = await aio_pika.connect(self.url, timeout=10)
        outcome = "disconnected"
        try:
            connection.close_callbacks.add(self._on_close)
            channel = await connection.channel()
            channel.close_callbacks.add(self._on_close)
            await channel.set_qos(prefetch_count=self.prefetch)
            queue = await channel.get_queue(self.queue, ensure=False)
            transport = connection.transport
            if transport is not None:
                self.on_connected(dict(transport.connection.server_properties))
            await queue.consume(self._deliver, arguments=self.arguments() or None)
            self.up = True
            while (message := await self._inbox.get()) is not None and not self._stopping:
                try:
                    await self.handle(message)
                except Crash:
                    outcome = "crashed"
                    await channel.close()  # its unacked deliveries return to the queue
                    return outcome
            return "stopped" if self._stopping else outcome
        finally:
            self.up = False
            connection.close_callbacks.discard(self._on_close)
            await connection.close()

    async def _deliver(self, message: AbstractIncomingMessage) -> None:
        self._inbox.put_nowait(message)

    def _on_close(self, *_args: Any) -> None:
        self._inbox.put_nowait(None)
