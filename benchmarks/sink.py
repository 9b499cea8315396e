"""A fake AMQP peer on 127.0.0.1 that measures the load generator's own ceiling.

Role: two modes, run in a separate process so it does not share the generator's core.
  * "discard": answers the handshake and channel.open, then reads and throws bytes away,
    watching only the tail of the stream for the client's connection.close (to answer
    close-ok). The producer's rate against it is the fastest the publish path can push.
  * "source": answers the handshake, declares, qos and basic.consume, then pushes N valid
    pre-encoded deliveries as fast as the consumer reads them (ignoring prefetch and acks).
    The consumer's rate against it is the fastest the verify/ack path can absorb.

Must not: bind anything but 127.0.0.1, behave like a broker (no routing, no queues), or
run longer than its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from multiprocessing.connection import Connection
from typing import Any, cast

from pamqp import commands, frame

from benchmarks.amqpwire import (
    FRAME_END,
    FRAME_HDR,
    FRAME_METHOD,
    MessageEncoder,
    deliver_payload,
    method_frame,
)
from benchmarks.workers import PRODUCER_ID

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
CLIENT_CLOSE = method_frame(0, commands.Connection.Close(200, "bye", 0, 0))
FRAME_MAX = 131072

REPLIES: dict[type, Any] = {
    commands.Connection.Open: lambda m: commands.Connection.OpenOk(),
    commands.Channel.Open: lambda m: commands.Channel.OpenOk(),
    commands.Channel.Close: lambda m: commands.Channel.CloseOk(),
    commands.Confirm.Select: lambda m: commands.Confirm.SelectOk(),
    commands.Exchange.Declare: lambda m: commands.Exchange.DeclareOk(),
    commands.Exchange.Delete: lambda m: commands.Exchange.DeleteOk(),
    commands.Queue.Declare: lambda m: commands.Queue.DeclareOk(m.queue or "sink.q", 0, 0),
    commands.Queue.Bind: lambda m: commands.Queue.BindOk(),
    commands.Queue.Delete: lambda m: commands.Queue.DeleteOk(0),
    commands.Basic.Qos: lambda m: commands.Basic.QosOk(),
    commands.Basic.Consume: lambda m: commands.Basic.ConsumeOk(m.consumer_tag or "sink.c"),
    commands.Basic.Cancel: lambda m: commands.Basic.CancelOk(m.consumer_tag),
    commands.Connection.Close: lambda m: commands.Connection.CloseOk(),
}


class SinkProtocol(asyncio.Protocol):
    def __init__(self, mode: str, messages: int, body_size: int, deadline: float) -> None:
        self.mode = mode
        self.messages = messages
        self.body_size = body_size
        self.deadline = deadline
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.raw = False  # discard mode, after channel.open
        self.tail = b""
        self.writable = asyncio.Event()
        self.writable.set()
        self.source_task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.set_write_buffer_limits(high=256 * 1024)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.writable.set()
        if self.source_task is not None:
            self.source_task.cancel()

    def send(self, channel: int, method: object) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(method_frame(channel, method))

    def data_received(self, data: bytes) -> None:
        if self.raw:
            stream = self.tail + data[-len(CLIENT_CLOSE) :]
            if stream.endswith(CLIENT_CLOSE):
                self.send(0, commands.Connection.CloseOk())
            self.tail = stream[-len(CLIENT_CLOSE) :]
            return
        self.buf += data
        if self.buf.startswith(PROTOCOL_HEADER):
            del self.buf[: len(PROTOCOL_HEADER)]
            self.send(0, commands.Connection.Start(mechanisms="PLAIN", locales="en_US"))
        self._parse()

    def _parse(self) -> None:
        buf = self.buf
        pos = 0
        while len(buf) - pos >= 8:
            ftype, ch, size = FRAME_HDR.unpack_from(buf, pos)
            end = pos + 7 + size
            if end >= len(buf):
                break
            if buf[end] != FRAME_END and self.transport is not None:
                self.transport.abort()
                return
            if ftype == FRAME_METHOD:
                self._method(ch, bytes(buf[pos : end + 1]))
            pos = end + 1
            if self.raw:  # whatever follows channel.open-ok is discarded unparsed
                pos = len(buf)
        del buf[:pos]

    def _method(self, ch: int, raw: bytes) -> None:
        _, _, value = frame.unmarshal(raw)
        if isinstance(value, commands.Connection.StartOk):
            self.send(0, commands.Connection.Tune(2047, FRAME_MAX, 0))
            return
        reply = REPLIES.get(type(value))
        if reply is None:
            return
        self.send(ch, reply(value))
        if isinstance(value, commands.Channel.Open) and self.mode == "discard":
            self.raw = True
        elif isinstance(value, commands.Basic.Consume) and self.mode == "source":
            self.source_task = asyncio.ensure_future(self._source(ch, value))
        elif isinstance(value, commands.Connection.Close) and self.transport is not None:
            self.transport.close()

    async def _source(self, ch: int, consume: commands.Basic.Consume) -> None:
        payload = deliver_payload(consume.consumer_tag or "sink.c", 1, "", consume.queue)
        encoder = MessageEncoder(
            ch, "", [""], self.body_size, PRODUCER_ID, FRAME_MAX, payloads=[payload]
        )
        batch = max(1, min(1000, int(65536 // encoder.mean_len)))
        seq = 0
        while seq < self.messages and time.monotonic() < self.deadline:
            if self.transport is None or self.transport.is_closing():
                return
            count = min(batch, self.messages - seq)
            self.transport.write(encoder.batch(seq, count, time.monotonic_ns()))
            seq += count
            await self.writable.wait()
            await asyncio.sleep(0)


async def _serve(
    pipe: Connection, mode: str, messages: int, body_size: int, deadline: float
) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SinkProtocol(mode, messages, body_size, deadline), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    pipe.send(("port", port))
    try:
        while time.monotonic() < deadline:
            if pipe.poll(0):
                break
            await asyncio.sleep(0.05)
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1)


def sink_main(pipe: Connection, mode: str, messages: int, body_size: int, deadline: float) -> None:
    """Process entry point: serve until the parent sends anything on `pipe` or `deadline`."""
    import uvloop

    uvloop.run(_serve(pipe, mode, messages, body_size, deadline))
