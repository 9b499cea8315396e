"""x-consistent-hash over the wire and in every place a type is named: YAML, check-config,
definitions, the management API and the ``warrenmq declare`` CLI.

Covers: pika and aio-pika declare it, bind weights and publish; every message reaches one
queue, the one ``ConsistentHashExchange.destination_for`` documents (hash-property
message_id); a bad weight -> 406 with the plugin's words; a YAML-declared exchange
(hash-header) routes, and after a restart of the broker every key still goes to the
same queue; check-config refuses a non-numeric weight with file, line and key path; the
management API declares one (and refuses bad arguments with the 406's words); a
definitions export carries it; ``warrenmq declare exchange --type x-consistent-hash``
as a subprocess creates it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aio_pika
import pika
import pytest

from tests.conftest import BrokerHandle
from tests.helpers import TIMEOUT, in_pika
from tests.mgmthttp import MANAGEMENT, Http
from tests.process import BrokerProcess, arun_cli, run_cli
from warrenmq.app import start
from warrenmq.config import load_config
from warrenmq.exchange.consistent_hash import ConsistentHashExchange

QUEUES = [f"shard.{i}" for i in range(4)]


async def drain(channel: aio_pika.abc.AbstractChannel, queue: str) -> list[bytes]:
    q = await channel.declare_queue(queue, passive=True)
    out: list[bytes] = []
    for _ in range(2000):  # bounded
        message = await q.get(fail=False, no_ack=True, timeout=TIMEOUT)
        if message is None:
            return out
        out.append(message.body)
    raise AssertionError("more messages than published")


async def test_hash_property_routes_each_message_to_its_documented_queue(
    broker: BrokerHandle,
) -> None:
    def declare(conn: pika.BlockingConnection) -> None:
        ch = conn.channel()
        ch.exchange_declare("chx", "x-consistent-hash",
                            arguments={"hash-property": "message_id"})
        for i, queue in enumerate(QUEUES):
            ch.queue_declare(queue)
            ch.queue_bind(queue, "chx", routing_key=str(1 + i % 2))
        ch.confirm_delivery()
        for n in range(300):
            ch.basic_publish("chx", "same-routing-key", f"m{n}".encode(),
                             pika.BasicProperties(message_id=f"order-{n % 100}"))

    await in_pika(broker, declare)
    exchange = broker.vhost().exchanges["chx"]
    assert isinstance(exchange, ConsistentHashExchange)
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        got = {queue: await drain(channel, queue) for queue in QUEUES}
    assert sum(map(len, got.values())) == 300
    for queue, bodies in got.items():
        for body in bodies:
            n = int(body[1:])
            expected = exchange.destination_for(f"order-{n % 100}".encode())
            assert getattr(expected, "name", None) == queue


async def test_a_bad_weight_is_refused_with_the_plugins_words(broker: BrokerHandle) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange("chx", "x-consistent-hash")
        queue = await channel.declare_queue("q")
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed) as info:
            await queue.bind(exchange, routing_key="heavy")
        assert 'The binding key must be an integer: <<"heavy">>' in str(info.value)


YAML = """
exchanges:
  - {name: orders, type: x-consistent-hash, arguments: {hash-header: customer}}
queues:
  - {name: shard.0}
  - {name: shard.1}
  - {name: shard.2}
bindings:
  - {source: orders, destination: shard.0, routing_key: "1"}
  - {source: orders, destination: shard.1, routing_key: "1"}
  - {source: orders, destination: shard.2, routing_key: "2"}
"""


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "broker.yaml"
    path.write_text(f"listeners: [{{port: 0}}]\nstorage: {{data_dir: {tmp_path / 'data'}}}\n"
                    f"management: {{enabled: false}}\n{body}")
    return path


async def placement(path: Path, customers: list[str]) -> dict[str, str]:
    """customer -> the queue its message reached, on a broker started from ``path``."""
    server = await start(load_config(path))
    try:
        connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{server.ports[0]}/")
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            orders = await channel.get_exchange("orders")
            for customer in customers:
                await orders.publish(aio_pika.Message(customer.encode(),
                                                      headers={"customer": customer}), "")
            found: dict[str, str] = {}
            for queue in ("shard.0", "shard.1", "shard.2"):
                for body in await drain(channel, queue):
                    found[body.decode()] = queue
            return found
    finally:
        await server.close(grace=2)


async def test_yaml_declared_exchange_keeps_every_key_across_a_restart(tmp_path: Path) -> None:
    path = write_config(tmp_path, YAML)
    customers = [f"customer-{n}" for n in range(200)]
    first = await placement(path, customers)
    assert sorted(first) == sorted(customers)
    assert len(set(first.values())) == 3
    again = await placement(path, customers)
    assert again == first


def test_check_config_refuses_a_weight_that_is_not_a_number(tmp_path: Path) -> None:
    path = write_config(tmp_path, YAML.replace('routing_key: "2"', 'routing_key: "heavy"'))
    result = run_cli("check-config", str(path))
    assert result.returncode == 2
    assert (f"{path}:14:57: bindings[2].routing_key: a consistent-hash binding key is the"
            ' queue\'s weight: The binding key must be an integer: <<"heavy">>') \
        in result.stderr, result.stderr
    both = YAML.replace("{hash-header: customer}",
                        "{hash-header: customer, hash-property: message_id}")
    result = run_cli("check-config", str(write_config(tmp_path, both)))
    assert result.returncode == 2
    assert "hash-header and hash-property are mutually exclusive" in result.stderr


async def test_management_api_declares_it_and_exports_it(broker_factory: Any) -> None:
    handle: BrokerHandle = await broker_factory(top=MANAGEMENT)
    http = Http(handle.server.management_port or 0)
    made = await http.request("PUT", "/api/exchanges/%2F/chx",
                              body={"type": "x-consistent-hash",
                                    "arguments": {"hash-header": "customer"}})
    assert made.status in (201, 204)
    refused = await http.request("PUT", "/api/exchanges/%2F/bad",
                                 body={"type": "x-consistent-hash",
                                       "arguments": {"hash-property": "user_id"}})
    assert refused.status == 400
    assert "Unsupported property: user_id" in refused.json["reason"]
    exported = await http.json("/api/definitions")
    assert {"name": "chx", "type": "x-consistent-hash"}.items() <= next(
        x for x in exported["exchanges"] if x["name"] == "chx").items()


async def test_cli_declares_a_consistent_hash_exchange(tmp_path: Path) -> None:
    async with BrokerProcess(tmp_path / "data") as broker:
        env = {"WARRENMQ_URL": broker.http_url}
        result = await arun_cli("declare", "exchange", "chx", "--type", "x-consistent-hash",
                                "--argument", "hash-header=customer", env=env)
        assert result.returncode == 0, result.stderr
        listed = await arun_cli("list", "exchanges", "--json", env=env)
        assert listed.returncode == 0
        assert '"x-consistent-hash"' in listed.stdout
        result = await arun_cli("declare", "exchange", "bad", "--type", "x-nonesuch", env=env)
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert "x-nonesuch" in result.stderr
        assert await broker.stop() == 0
    await asyncio.sleep(0)
