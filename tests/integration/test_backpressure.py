"""Backpressure: a consumer that stops reading its socket is not flooded.

A RawClient consumes queue A with no prefetch limit (no_ack, so credit never runs out),
with a small SO_RCVBUF and then simply never reads. A producer publishes many 1 KiB
messages to a fanout exchange bound to A and B; an ordinary aiormq consumer on B must get
every message meanwhile, while the broker (whose only brake here is the connection's write
buffer: ``Consumer.credit`` → ``Connection.can_write``) keeps most of A's messages
ready in the queue instead of pushing them into socket buffers. When the slow reader
starts reading it receives every message intact and in order.

The broker-side socket's SO_SNDBUF is pinned small for the slow connection so the kernel's
send buffer (auto-tuned up to several MiB) does not hide what the broker itself does.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import aiormq
from pamqp import commands

from tests.conftest import BrokerHandle
from tests.helpers import consume, declare, raw_client
from tests.rawamqp import RawClient

N = 10_000
BODY_SIZE = 1024
FRAME_HEAD = struct.Struct(">BHI")


def body_of(i: int) -> bytes:
    stamp = b"%08d" % i
    return stamp * (BODY_SIZE // len(stamp))


def publish_frames(exchange: str, i: int) -> bytes:
    ex = exchange.encode()
    method = struct.pack(">HHH", 60, 40, 0) + bytes([len(ex)]) + ex + b"\x00" + b"\x00"
    header = struct.pack(">HHQH", 60, 0, BODY_SIZE, 0)
    body = body_of(i)
    return b"".join(FRAME_HEAD.pack(kind, 1, len(payload)) + payload + b"\xce"
                    for kind, payload in ((1, method), (2, header), (3, body)))


async def slow_reader(broker: BrokerHandle) -> tuple[RawClient, socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", broker.port))
    # a small StreamReader limit: once 2*limit bytes are buffered it stops reading the socket
    reader, writer = await asyncio.open_connection(sock=sock, limit=16384)
    client = RawClient(reader, writer)
    await client.handshake()
    await client.open_channel(1)
    return client, sock


def pin_broker_send_buffer(broker: BrokerHandle, local_port: int) -> None:
    for conn in list(broker.server.connections):
        if conn.peer.endswith(f":{local_port}") and conn.transport is not None:
            server_sock = conn.transport.get_extra_info("socket")
            try:
                server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            except OSError:
                pass
            return
    raise AssertionError("slow consumer's broker-side connection not found")


async def read_all_deliveries(client: RawClient, count: int) -> list[bytes]:
    """Parse ``count`` deliveries (deliver, header, one body frame each) with struct."""
    buf = bytearray(client.buffer)
    client.buffer = b""
    pos = 0
    bodies: list[bytes] = []
    expect_body = False
    while len(bodies) < count:
        while len(buf) - pos >= 7:
            kind, _channel, size = FRAME_HEAD.unpack_from(buf, pos)
            end = pos + 7 + size
            if end >= len(buf):
                break
            assert buf[end] == 0xCE
            if kind == 1:
                assert buf[pos + 7 : pos + 11] == b"\x00\x3c\x00\x3c", "expected basic.deliver"
                assert not expect_body
            elif kind == 2:
                assert struct.unpack_from(">Q", buf, pos + 11)[0] == BODY_SIZE
                expect_body = True
            elif kind == 3:
                assert expect_body
                bodies.append(bytes(buf[pos + 7 : end]))
                expect_body = False
            pos = end + 1
        if pos:
            del buf[:pos]
            pos = 0
        if len(bodies) < count:
            data = await asyncio.wait_for(client.reader.read(1 << 20), 10)
            if not data:
                raise ConnectionError("broker closed the slow consumer's connection")
            buf += data
    return bodies


async def test_slow_reader_is_not_flooded_and_catches_up(broker: BrokerHandle) -> None:
    vhost = broker.vhost()
    slow, sock = await slow_reader(broker)
    pin_broker_send_buffer(broker, sock.getsockname()[1])
    slow.send_method(1, commands.Exchange.Declare(exchange="bp", exchange_type="fanout"))
    await slow.expect(commands.Exchange.DeclareOk)
    for name in ("A", "B"):
        await declare(slow, name)
        slow.send_method(1, commands.Queue.Bind(queue=name, exchange="bp", routing_key=""))
        await slow.expect(commands.Queue.BindOk)
    await consume(slow, "A", "slow", no_ack=True)
    # from here on the slow client does not read its socket

    fast_conn = await aiormq.connect(broker.url)
    fast = await fast_conn.channel()
    received_b: list[bytes] = []
    all_b = asyncio.Event()

    async def on_b(message: aiormq.abc.DeliveredMessage) -> None:
        received_b.append(message.body)
        if len(received_b) == N:
            all_b.set()

    await fast.basic_consume("B", on_b, no_ack=True)

    producer = await raw_client(broker)
    for start in range(0, N, 500):
        producer.send(b"".join(publish_frames("bp", i) for i in range(start, start + 500)))
        await asyncio.wait_for(producer.writer.drain(), 10)

    await asyncio.wait_for(all_b.wait(), 30)
    assert received_b == [body_of(i) for i in range(N)]

    queue_a = vhost.queues["A"]
    assert queue_a.published == N
    # the broker stopped pushing: most of A is still ready, not sitting in buffers
    assert queue_a.message_count >= N // 2, (queue_a.message_count, queue_a.delivered)
    assert queue_a.delivered + queue_a.message_count == N
    assert vhost.queues["B"].message_count == 0

    # now the slow consumer reads; everything arrives, intact and in order
    bodies = await asyncio.wait_for(read_all_deliveries(slow, N), 60)
    assert len(bodies) == N
    mismatch = next((i for i in range(N) if bodies[i] != body_of(i)), None)
    assert mismatch is None, f"delivery {mismatch} is wrong or out of order"
    assert queue_a.message_count == 0
    assert queue_a.delivered == N

    producer.close()
    slow.close()
    await fast_conn.close()
