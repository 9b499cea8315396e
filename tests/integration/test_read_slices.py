"""A big read is handled a slice at a time (server/connection.py): when the store's writer
has a finished commit waiting, the rest of the read waits for the next turn of the loop
with reading paused. Here the writer's flag is held up on purpose (transient messages on a
non-durable queue never commit, so nothing clears it), so every slice boundary defers:
one write of 2,000 confirmed publishes must still be routed, confirmed and delivered
exactly once and in order, and a connection.close sent in the same write is handled after
every publish before it.
"""

from __future__ import annotations

from pamqp import commands, frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from tests.conftest import BrokerHandle
from tests.rawamqp import RawClient
from warrenmq.server.connection import FRAMES_PER_TURN

COUNT = 2000


def publishes(queue: str, count: int) -> bytes:
    out = []
    for n in range(count):
        body = f"m{n:05d}".encode()
        out.append(frame.marshal(commands.Basic.Publish(exchange="", routing_key=queue), 1))
        out.append(frame.marshal(ContentHeader(0, len(body), commands.Basic.Properties()), 1))
        out.append(frame.marshal(ContentBody(body), 1))
    return b"".join(out)


async def connected(broker: BrokerHandle, queue: str) -> RawClient:
    client = await RawClient.connect(broker.port)
    await client.handshake()
    await client.open_channel(1)
    client.send_method(1, commands.Queue.Declare(queue=queue))
    await client.expect(commands.Queue.DeclareOk)
    client.send_method(1, commands.Confirm.Select())
    await client.expect(commands.Confirm.SelectOk)
    return client


async def test_a_big_read_split_across_turns_keeps_order_and_confirms(
    broker: BrokerHandle,
) -> None:
    committer = broker.server.committer
    assert committer is not None
    committer.landed = True  # as if a commit were waiting for the loop, all along
    client = await connected(broker, "slices")
    try:
        assert 3 * COUNT > 2 * FRAMES_PER_TURN
        client.send(publishes("slices", COUNT))
        confirmed = 0
        while confirmed < COUNT:
            ack = await client.expect(commands.Basic.Ack)
            assert ack.delivery_tag > confirmed and (ack.multiple or
                                                      ack.delivery_tag == confirmed + 1)
            confirmed = ack.delivery_tag
        assert confirmed == COUNT
        conn = next(iter(broker.server.connections))
        assert conn.turns_deferred >= 3 * COUNT // FRAMES_PER_TURN - 1
        client.send_method(1, commands.Basic.Consume(queue="slices", no_ack=True))
        await client.expect(commands.Basic.ConsumeOk)
        bodies = []
        for _ in range(COUNT):
            await client.expect(commands.Basic.Deliver)
            bodies.append(await client.read_body())
        assert bodies == [f"m{n:05d}".encode() for n in range(COUNT)]
    finally:
        client.close()


async def test_a_close_in_the_same_write_comes_after_the_publishes(
    broker: BrokerHandle,
) -> None:
    committer = broker.server.committer
    assert committer is not None
    committer.landed = True
    client = await connected(broker, "slices.close")
    try:
        conn = next(iter(broker.server.connections))
        client.send(publishes("slices.close", COUNT)
                    + frame.marshal(commands.Connection.Close(200, "bye", 0, 0), 0))
        for _ in range(COUNT + 1):  # confirms (not all: the close may come first), close-ok
            _, value = await client.read_frame()
            if isinstance(value, commands.Connection.CloseOk):
                break
            assert isinstance(value, commands.Basic.Ack), value
        else:
            raise AssertionError("no connection.close-ok")
        assert conn.turns_deferred > 0  # the close waited in the backlog
        assert broker.vhost().queues["slices.close"].message_count == COUNT  # all routed first
    finally:
        client.close()
