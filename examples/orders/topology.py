"""The demo's topology: orders.yaml read with WarrenMQ's own config loader, declared over
AMQP with aio-pika.

Owns the names the services use (the ``orders`` fanout, the three work queues, each
one's DLQ) and :func:`declare`, which declares exactly what orders.yaml declares
(same types, flags and x-arguments: the loader's friendly keys turned into x-arguments
by ``warrenmq.config.rabbit.declarations``, the document ``warrenmq definitions export``
writes). Against a WarrenMQ started with orders.yaml every declare is a no-op (a
difference would be a 406 PRECONDITION_FAILED); RabbitMQ needs them.
Must not consume or publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, ExchangeType

from warrenmq.config import load_config
from warrenmq.config.rabbit import declarations

CONFIG = Path(__file__).resolve().with_name("orders.yaml")
EXCHANGE = "orders"
WORK_QUEUES = ("inventory", "email", "analytics")
LIFECYCLE = "order-lifecycle"  # x-consistent-hash, keyed on the customer id
SHIPMENT_QUEUES = tuple(f"shipments.{i}" for i in range(4))


def dlq_of(queue: str) -> str:
    """The dead-letter queue of a work queue (orders.yaml binds it under the queue's name)."""
    return f"{queue}.dlq"


ALL_QUEUES = (*WORK_QUEUES, *(dlq_of(q) for q in WORK_QUEUES))


def load(path: Path = CONFIG) -> dict[str, list[dict[str, Any]]]:
    """orders.yaml as a definitions document (exchanges, queues, bindings with x-arguments);
    a bad file raises ``warrenmq.config.ConfigError`` naming file:line:col."""
    document = declarations(load_config(str(path)))
    names = {q["name"] for q in document["queues"]}
    missing = [q for q in ALL_QUEUES if q not in names]
    if missing or EXCHANGE not in {x["name"] for x in document["exchanges"]}:
        raise ValueError(f"{path}: the demo needs exchange {EXCHANGE!r} and queues "
                         f"{', '.join(ALL_QUEUES)}; missing {', '.join(missing) or EXCHANGE}")
    return document


async def declare(channel: AbstractChannel, document: dict[str, list[dict[str, Any]]],
                  skip: frozenset[str] = frozenset()) -> None:
    """Declare every exchange, queue and binding of ``document`` (idempotent), but for
    the exchanges named in ``skip`` and their bindings (a type the broker lacks)."""
    exchanges: dict[str, AbstractExchange] = {}
    for x in document["exchanges"]:
        if x["name"] in skip:
            continue
        exchanges[x["name"]] = await channel.declare_exchange(
            x["name"], _exchange_type(x["type"]), durable=x["durable"],
            auto_delete=x["auto_delete"], internal=x["internal"],
            arguments=x["arguments"] or None)
    for q in document["queues"]:
        await channel.declare_queue(q["name"], durable=q["durable"],
                                    auto_delete=q["auto_delete"],
                                    arguments=q["arguments"] or None)
    for b in document["bindings"]:
        if b["source"] in skip:
            continue
        source = exchanges.get(b["source"]) or await channel.get_exchange(b["source"])
        arguments = b["arguments"] or None
        if b["destination_type"] == "exchange":
            target = await channel.get_exchange(b["destination"])
            await target.bind(source, b["routing_key"], arguments=arguments)
        else:
            queue = await channel.get_queue(b["destination"], ensure=False)
            await queue.bind(source, b["routing_key"], arguments=arguments)


def _exchange_type(name: str) -> ExchangeType | str:
    try:
        return ExchangeType(name)
    except ValueError:  # a plugin's type (x-consistent-hash): aio-pika passes the string
        return name


async def consistent_hash_available(url: str) -> bool:
    """Whether the broker has the x-consistent-hash type (RabbitMQ: only with its plugin
    enabled). Probed on a connection of its own: an unknown type closes the connection
    (503 COMMAND_INVALID)."""
    quiet = logging.getLogger("aiormq.connection")  # the expected close is no error here
    was_disabled, quiet.disabled = quiet.disabled, True
    connection = await aio_pika.connect(url, timeout=10)
    try:
        channel = await connection.channel()
        probe = await channel.declare_exchange("orders.probe-consistent-hash",
                                               "x-consistent-hash", auto_delete=True,
                                               durable=False)
        await probe.delete()
        return True
    except aio_pika.exceptions.AMQPError:
        return False
    finally:
        with contextlib.suppress(Exception):
            await connection.close()
        await asyncio.sleep(0)  # let the reader log (not) its exit while still quiet
        quiet.disabled = was_disabled


async def shipment_depths(channel: AbstractChannel) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in SHIPMENT_QUEUES:
        queue = await channel.declare_queue(name, passive=True)
        out[name] = int(queue.declaration_result.message_count or 0)
    return out


async def check_present(channel: AbstractChannel) -> None:
    """Passive declares: the queues exist already (the broker declared orders.yaml at
    start). A missing one closes the channel with 404, raised here."""
    await channel.get_exchange(EXCHANGE, ensure=True)
    for name in ALL_QUEUES:
        await channel.get_queue(name, ensure=True)


async def depths(channel: AbstractChannel) -> dict[str, int]:
    """Each queue's ready message count, from passive queue.declare (any broker)."""
    out: dict[str, int] = {}
    for name in ALL_QUEUES:
        queue = await channel.declare_queue(name, passive=True)
        result = queue.declaration_result
        out[name] = int(result.message_count or 0)
    return out


async def purge_leftovers(channel: AbstractChannel) -> int:
    """Empty the demo's queues of what an earlier run left (``--url`` on a broker used
    before); returns how many messages were purged."""
    purged = 0
    for name in (*ALL_QUEUES, *SHIPMENT_QUEUES):
        queue = await channel.get_queue(name, ensure=False)
        result = await queue.purge()
        purged += int(result.message_count or 0)
    return purged
