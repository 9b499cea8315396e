"""A raw-socket AMQP peer for tests that need bytes a client library would hide.

Frames are built and parsed with pamqp, an independent implementation, so these tests do
not check WarrenMQ's codec against itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import struct
from typing import Any

from pamqp import commands, frame
from pamqp.base import Frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"


@dataclasses.dataclass
class Delivery:
    """A basic.deliver read by ``RawClient.collect_until``, with its reassembled body."""

    channel: int
    method: commands.Basic.Deliver
    body: bytes

    @property
    def tag(self) -> int:
        return int(self.method.delivery_tag)


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = b""

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> RawClient:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def send_method(self, channel: int, method: Frame) -> None:
        self.writer.write(frame.marshal(method, channel))

    def send_content(self, channel: int, body: bytes, properties: Any = None,
                     frame_max: int = 131072) -> None:
        header = ContentHeader(0, len(body), properties or commands.Basic.Properties())
        self.writer.write(frame.marshal(header, channel))
        step = frame_max - 8
        for start in range(0, len(body), step):
            self.writer.write(frame.marshal(ContentBody(body[start:start + step]), channel))

    async def read_frame(self, timeout: float = 5.0) -> tuple[int, Any]:
        """Next frame as (channel, pamqp frame value)."""
        while True:
            if len(self.buffer) >= 7:
                (size,) = struct.unpack_from(">I", self.buffer, 3)
                if len(self.buffer) >= size + 8:
                    consumed, channel, value = frame.unmarshal(self.buffer[: size + 8])
                    self.buffer = self.buffer[consumed:]
                    return channel, value
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise ConnectionError("connection closed by broker")
            self.buffer += data

    async def read_bytes(self, timeout: float = 5.0) -> bytes:
        data = await asyncio.wait_for(self.reader.read(65536), timeout)
        return data

    async def expect(self, kind: type, timeout: float = 5.0) -> Any:
        """Read frames (skipping heartbeats) until one of ``kind``; fail on anything else."""
        while True:
            _, value = await self.read_frame(timeout)
            if value.__class__.__name__ == "Heartbeat":
                continue
            assert isinstance(value, kind), f"expected {kind.__name__}, got {value!r}"
            return value

    async def read_body(self, timeout: float = 5.0) -> bytes:
        """The content that follows a content-bearing method: its header, then body frames
        until the header's body size; returns the reassembled body."""
        _, header = await self.read_frame(timeout)
        assert isinstance(header, ContentHeader), header
        body = b""
        while len(body) < header.body_size:
            _, part = await self.read_frame(timeout)
            assert isinstance(part, ContentBody), part
            body += part.value
        return body

    async def collect_until(self, kind: type, timeout: float = 5.0
                            ) -> tuple[list[Delivery], Any]:
        """Read deliveries until a frame of ``kind``; anything else unexpected fails."""
        deliveries: list[Delivery] = []
        while True:
            channel, value = await self.read_frame(timeout)
            if isinstance(value, Heartbeat):
                continue
            if isinstance(value, commands.Basic.Deliver):
                deliveries.append(Delivery(channel, value, await self.read_body(timeout)))
                continue
            assert isinstance(value, kind), f"expected {kind.__name__}, got {value!r}"
            return deliveries, value

    async def expect_channel_close(self, channel: int = 1,
                                   ids: tuple[int, int, int] | None = None,
                                   timeout: float = 5.0) -> commands.Channel.Close:
        """Expect channel.close next and answer it with close-ok on ``channel``.

        ``ids``, if given, is the expected (reply_code, class_id, method_id).
        """
        close = await self.expect(commands.Channel.Close, timeout)
        if ids is not None:
            assert (close.reply_code, close.class_id, close.method_id) == ids, close
        self.send_method(channel, commands.Channel.CloseOk())
        return close

    async def expect_connection_close(self, ids: tuple[int, int, int] | None = None, *,
                                      send_close_ok: bool = True,
                                      timeout: float = 5.0) -> commands.Connection.Close:
        """Expect connection.close next, answer close-ok (unless ``send_close_ok`` is false),
        check that the broker then closes the socket, and close this end too.

        ``ids``, if given, is the expected (reply_code, class_id, method_id).
        """
        close = await self.expect(commands.Connection.Close, timeout)
        if ids is not None:
            assert (close.reply_code, close.class_id, close.method_id) == ids, close
        if send_close_ok:
            self.send_method(0, commands.Connection.CloseOk())
        assert await self.closed(timeout)
        self.close()
        return close

    async def closed(self, timeout: float = 5.0) -> bool:
        """True once the broker has closed the socket (EOF)."""
        try:
            while True:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
                if not data:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True

    async def handshake(self, *, heartbeat: int = 0, frame_max: int = 131072,
                        vhost: str = "/", user: str = "guest",
                        password: str = "guest") -> None:
        self.send(PROTOCOL_HEADER)
        await self.expect(commands.Connection.Start)
        self.send_method(0, commands.Connection.StartOk(
            client_properties={"product": "rawamqp", "capabilities": {
                "consumer_cancel_notify": True, "authentication_failure_close": True,
                "connection.blocked": True}},
            mechanism="PLAIN", response=f"\0{user}\0{password}", locale="en_US"))
        tune = await self.expect(commands.Connection.Tune)
        self.send_method(0, commands.Connection.TuneOk(
            channel_max=tune.channel_max, frame_max=frame_max, heartbeat=heartbeat))
        self.send_method(0, commands.Connection.Open(virtual_host=vhost))
        await self.expect(commands.Connection.OpenOk)

    async def open_channel(self, channel: int = 1) -> None:
        self.send_method(channel, commands.Channel.Open())
        await self.expect(commands.Channel.OpenOk)

    def close(self) -> None:
        self.writer.close()
