"""Per-connection traffic in the management API: RabbitMQ's ``recv_oct``, ``recv_cnt``,
``send_oct``, ``send_cnt`` with ``recv_oct_details``/``send_oct_details`` rates.

A raw-socket client counts every byte it writes and reads, so the broker's counters are
checked exactly (not "more than zero"); the rates come from two samples of the API's
sampler taken over a real second of traffic.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import pytest
from pamqp import commands

from tests.conftest import BrokerHandle
from tests.helpers import TIMEOUT
from tests.mgmthttp import MANAGEMENT, Http
from tests.rawamqp import RawClient


class CountingWriter:
    """A StreamWriter stand-in on the test client's side that counts bytes written."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.writer.write(data)

    def close(self) -> None:
        self.writer.close()

    def get_extra_info(self, name: str) -> Any:
        return self.writer.get_extra_info(name)


class CountingReader:
    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.read_total = 0

    async def read(self, n: int) -> bytes:
        data = await self.reader.read(n)
        self.read_total += len(data)
        return data


@pytest.fixture
async def mgmt(broker_factory: Any) -> tuple[BrokerHandle, Http]:
    handle: BrokerHandle = await broker_factory(top=MANAGEMENT)
    assert handle.server.management_port
    return handle, Http(handle.server.management_port)


async def _raw(port: int) -> tuple[RawClient, CountingReader, CountingWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    counted_reader, counted_writer = CountingReader(reader), CountingWriter(writer)
    client = RawClient(counted_reader, counted_writer)  # type: ignore[arg-type]
    await client.handshake()
    await client.open_channel()
    return client, counted_reader, counted_writer


async def _mine(http: Http, writer: CountingWriter) -> dict[str, Any]:
    port = writer.get_extra_info("sockname")[1]
    found = [c for c in await http.json("/api/connections") if c["peer_port"] == port]
    assert len(found) == 1
    return found[0]


async def _sync(client: RawClient) -> None:
    """A round trip: everything written before it has been read by the broker, and
    everything the broker sent before the answer has been read here."""
    client.send_method(1, commands.Queue.Declare(queue="traffic", durable=False))
    await client.expect(commands.Queue.DeclareOk)


async def test_byte_counters_are_exact(mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    client, reader, writer = await _raw(broker.port)
    try:
        await _sync(client)
        for _ in range(50):
            client.send_method(1, commands.Basic.Publish(exchange="", routing_key="traffic"))
            client.send_content(1, b"x" * 1000)
        await _sync(client)
        item = await _mine(http, writer)
        assert item["recv_oct"] == writer.written
        assert item["send_oct"] == reader.read_total
        # one count per socket read/flush: at least one each, never more than bytes
        assert 1 <= item["recv_cnt"] <= writer.written
        assert 1 <= item["send_cnt"] <= reader.read_total
        assert item["send_pend"] == 0
        assert item["ssl"] is False and item["ssl_protocol"] is None
        for key in ("recv_oct_details", "send_oct_details"):
            assert set(item[key]) == {"rate"}
    finally:
        client.close()


async def test_rates_follow_traffic(mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    client, _, writer = await _raw(broker.port)
    try:
        await _sync(client)
        await asyncio.sleep(1.1)  # a second after any earlier sample: this request samples
        first = await _mine(http, writer)  # the sampler's first reading of this connection
        body = b"y" * 20_000
        for _ in range(20):  # 400 kB in, a declare-ok out
            client.send_method(1, commands.Basic.Publish(exchange="", routing_key="traffic"))
            client.send_content(1, body)
        await _sync(client)
        # over a second later, so this request takes a sample that has seen all of it (a
        # background sample meanwhile would be after the traffic too)
        await asyncio.sleep(2.2)
        second = await _mine(http, writer)
        grew = second["recv_oct"] - first["recv_oct"]
        assert grew >= 400_000
        rate = second["recv_oct_details"]["rate"]
        # the bytes over the seconds between two samples: at most the window (~6 s)
        # apart, at least one second apart
        assert grew / 7.0 <= rate <= grew / 1.0, (rate, grew)
        assert second["send_oct_details"]["rate"] > 0  # the declare-ok
    finally:
        client.close()


async def test_client_library_connection_and_dashboard_fields(
        mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    connection = await aio_pika.connect(broker.url, client_properties={
        "connection_name": "counted"})
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("", exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(b"z" * 5000),
                                               routing_key=queue.name)
        message = await queue.get(timeout=TIMEOUT)
        await message.ack()
        items = await http.json("/api/connections")
        item = next(c for c in items
                    if c["client_properties"].get("connection_name") == "counted")
        assert item["recv_oct"] > 5000 and item["send_oct"] > 5000
        paged = await http.json("/api/connections?page=1&sort=recv_oct_details.rate"
                                "&columns=name,recv_oct,send_oct_details.rate")
        assert paged["items"] and set(paged["items"][0]) <= {"name", "recv_oct",
                                                             "send_oct_details"}
