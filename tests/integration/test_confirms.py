"""Publisher confirms (confirm.select, RabbitMQ's extension) over the wire.

Covers: confirm.select → select-ok (and nowait); every publish is acked, routable or
not; 100 publishes pipelined in one write are acked with (possibly multiple=true) acks
whose union is exactly sequence numbers 1..100, each once, never nacked, and numbering
continues in the next batch; aio-pika publisher_confirms awaits 500 confirms; aiormq gets
one ack per publish; pika confirm_delivery with mandatory=true raises UnroutableError for
an unroutable message (basic.return arrives before the ack) and the channel goes on.
"""

from __future__ import annotations

import asyncio

import aio_pika
import aiormq
import pika
from pamqp import commands, frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat

from tests.conftest import BrokerHandle
from tests.helpers import raw_client
from tests.rawamqp import RawClient


def publish_bytes(routing_key: str, body: bytes, exchange: str = "",
                  mandatory: bool = False) -> bytes:
    return b"".join((
        frame.marshal(commands.Basic.Publish(exchange=exchange, routing_key=routing_key,
                                             mandatory=mandatory), 1),
        frame.marshal(ContentHeader(0, len(body), commands.Basic.Properties()), 1),
        frame.marshal(ContentBody(body), 1),
    ))


async def read_confirms(client: RawClient, upto: int, start: int = 0
                        ) -> tuple[list[int], list[commands.Basic.Ack], int]:
    """Read until sequence ``upto`` is confirmed; returns per-seq ack counts and frames.

    ``counts[n]`` is how many acks covered sequence number n; basic.return frames (and
    their content) are counted and skipped.
    """
    counts = [0] * (upto + 1)
    frames: list[commands.Basic.Ack] = []
    returns = 0
    last = start
    while last < upto:
        _, value = await client.read_frame()
        if isinstance(value, Heartbeat | ContentHeader | ContentBody):
            continue
        if isinstance(value, commands.Basic.Return):
            returns += 1
            continue
        assert isinstance(value, commands.Basic.Ack), f"expected basic.ack, got {value!r}"
        frames.append(value)
        tag = value.delivery_tag
        assert tag > last, f"ack {tag} does not advance past {last}"
        covered = range(last + 1, tag + 1) if value.multiple else range(tag, tag + 1)
        for seq in covered:
            counts[seq] += 1
        last = tag
    return counts, frames, returns


async def test_confirm_select_ok_and_first_ack(broker: BrokerHandle) -> None:
    client = await raw_client(broker)
    client.send_method(1, commands.Queue.Declare(queue="c1"))
    await client.expect(commands.Queue.DeclareOk)
    client.send_method(1, commands.Confirm.Select())
    await client.expect(commands.Confirm.SelectOk)
    client.send(publish_bytes("c1", b"x"))
    ack = await client.expect(commands.Basic.Ack)
    assert (ack.delivery_tag, ack.multiple) == (1, False)
    # selecting again is harmless and does not restart the numbering
    client.send_method(1, commands.Confirm.Select())
    await client.expect(commands.Confirm.SelectOk)
    client.send(publish_bytes("c1", b"y"))
    ack = await client.expect(commands.Basic.Ack)
    assert (ack.delivery_tag, ack.multiple) == (2, False)
    assert broker.vhost().queues["c1"].message_count == 2
    client.close()


async def test_confirm_select_nowait(broker: BrokerHandle) -> None:
    client = await raw_client(broker)
    client.send_method(1, commands.Confirm.Select(nowait=True))
    client.send(publish_bytes("nowhere", b"x"))
    ack = await client.expect(commands.Basic.Ack)  # no select-ok comes first
    assert (ack.delivery_tag, ack.multiple) == (1, False)
    client.close()


async def test_pipelined_publishes_acks_cover_every_sequence_number(
        broker: BrokerHandle) -> None:
    client = await raw_client(broker)
    client.send_method(1, commands.Queue.Declare(queue="pipe"))
    await client.expect(commands.Queue.DeclareOk)
    client.send_method(1, commands.Confirm.Select())
    await client.expect(commands.Confirm.SelectOk)

    # 100 publishes in a single write: routable, unroutable and unroutable+mandatory
    batch = []
    for i in range(100):
        if i % 10 == 3:
            batch.append(publish_bytes("no-such-queue", b"lost %d" % i))
        elif i % 10 == 7:
            batch.append(publish_bytes("no-such-queue", b"back %d" % i, mandatory=True))
        else:
            batch.append(publish_bytes("pipe", b"m%d" % i))
    client.send(b"".join(batch))
    counts, frames, returns = await read_confirms(client, 100)
    assert counts[1:] == [1] * 100
    assert frames[-1].delivery_tag == 100
    assert returns == 10
    assert broker.vhost().queues["pipe"].message_count == 80

    # numbering continues; a second pipelined batch covers 101..150 exactly once
    client.send(b"".join(publish_bytes("pipe", b"n%d" % i) for i in range(50)))
    counts, frames, _ = await read_confirms(client, 150, start=100)
    assert counts[101:] == [1] * 50
    assert counts[:101] == [0] * 101
    assert broker.vhost().queues["pipe"].message_count == 130
    client.close()


async def test_aio_pika_publisher_confirms_500(broker: BrokerHandle) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue("confirmed")
        results = await asyncio.wait_for(asyncio.gather(*(
            channel.default_exchange.publish(aio_pika.Message(b"c%d" % i),
                                             routing_key="confirmed")
            for i in range(500)
        )), 15)
        assert len(results) == 500
        assert all(isinstance(r, aiormq.spec.Basic.Ack) for r in results)
    assert broker.vhost().queues["confirmed"].message_count == 500


async def test_aiormq_each_publish_is_acked(broker: BrokerHandle) -> None:
    connection = await aiormq.connect(broker.url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.queue_declare("acked")
    tags = []
    for i in range(20):
        confirmation = await channel.basic_publish(b"a%d" % i, routing_key="acked")
        assert isinstance(confirmation, aiormq.spec.Basic.Ack)
        tags.append(confirmation.delivery_tag)
    assert tags == list(range(1, 21))  # sequential publishes: one ack each
    await connection.close()


async def test_pika_mandatory_unroutable_raises_unroutable_error(
        broker: BrokerHandle) -> None:
    def run() -> tuple[str, list[bytes], bool]:
        conn = pika.BlockingConnection(pika.URLParameters(broker.url))
        try:
            ch = conn.channel()
            ch.queue_declare("routable")
            ch.confirm_delivery()
            outcome = "no error"
            try:
                ch.basic_publish("", "unroutable-key", b"lost", mandatory=True)
            except pika.exceptions.UnroutableError as exc:
                outcome = "unroutable"
                returned = [m.body for m in exc.messages]
            else:
                returned = []
            # the channel is still usable and routable mandatory publishes succeed
            ch.basic_publish("", "routable", b"kept", mandatory=True)
            method, _props, body = ch.basic_get("routable", auto_ack=True)
            return outcome, returned, body == b"kept" and method is not None
        finally:
            conn.close()

    outcome, returned, kept = await asyncio.wait_for(asyncio.to_thread(run), 10)
    assert (outcome, returned, kept) == ("unroutable", [b"lost"], True)
