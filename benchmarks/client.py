"""A minimal asyncio AMQP 0-9-1 client connection for the load generator.

Role: handshake (PLAIN, tune-ok echoing the server's frame_max/channel_max, heartbeat 0),
cold-path RPCs through pamqp (declares, bind, qos, consume, confirm.select, close), and an
incremental hot-path frame parser (`struct.unpack_from` over one bytearray) that hands each
delivered body to a `DeliveryHandler` and counts publisher confirms.

Must not: use pamqp for basic.deliver / content frames / basic.ack, allocate per frame on the
hot path beyond the unavoidable, block the event loop, or wait without a timeout.
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Protocol, TypeVar, cast

from pamqp import commands, frame, header

from benchmarks.amqpwire import (
    BASIC_ACK,
    BASIC_DELIVER,
    BASIC_NACK,
    FRAME_BODY,
    FRAME_END,
    FRAME_HDR,
    FRAME_HEADER,
    FRAME_METHOD,
    METHOD_ID,
    U64,
    AmqpUrl,
    method_frame,
    start_ok,
)

WRITE_HIGH_WATER = 256 * 1024
# Content header frame with no properties (payload 14 bytes) + frame end + body frame header:
# type, channel, size, class, weight, body size, flags, end, type, channel, body frame size.
CONTENT_PAIR = struct.Struct(">BHIHHQHBBHI")
T = TypeVar("T")


class AmqpError(Exception):
    """The server closed the connection or a channel, or answered unexpectedly."""


class DeliveryHandler(Protocol):
    def on_message(self, view: memoryview, start: int, end: int, tag: int, now_ns: int) -> None:
        """One complete delivered body is view[start:end] (valid only during the call)."""


class AmqpConnection(asyncio.Protocol):
    """One AMQP connection. Create with `await AmqpConnection.open(url, limit_s)`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.frame_max = 131072
        self.channel_max = 2047
        self.handler: DeliveryHandler | None = None
        self.error: str | None = None
        self.confirmed_upto = 0
        self.confirm_singles: set[int] = set()
        self.nacked = 0
        self._buf = bytearray()
        self._cold: asyncio.Queue[tuple[int, object] | None] = asyncio.Queue()
        self._writable = asyncio.Event()
        self._writable.set()
        self._confirm_waiter: asyncio.Future[None] | None = None
        self._tag = 0
        self._remaining = 0
        self._partial: bytearray | None = None

    # ----------------------------------------------------------------- lifecycle
    @classmethod
    async def open(cls, url: AmqpUrl, limit_s: float) -> AmqpConnection:
        loop = asyncio.get_running_loop()
        _, proto = await asyncio.wait_for(loop.create_connection(cls, url.host, url.port), limit_s)
        try:
            await asyncio.wait_for(proto._handshake(url), limit_s)
        except BaseException:
            proto.abort()
            raise
        return proto

    async def _handshake(self, url: AmqpUrl) -> None:
        self.write(header.ProtocolHeader().marshal())
        await self.expect(0, commands.Connection.Start)
        self.send(0, start_ok(url.user, url.password))
        tune = await self.expect(0, commands.Connection.Tune)
        self.frame_max = tune.frame_max or 131072
        self.channel_max = tune.channel_max or 65535
        self.send(0, commands.Connection.TuneOk(self.channel_max, self.frame_max, 0))
        self.send(0, commands.Connection.Open(virtual_host=url.vhost))
        await self.expect(0, commands.Connection.OpenOk)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.error is None:
            self.error = f"connection lost: {exc}" if exc else "connection closed by peer"
        self._writable.set()
        self._cold.put_nowait(None)
        self._wake_confirm_waiter()

    @property
    def closed(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def close(self, limit_s: float = 5.0) -> None:
        """Graceful connection.close; the close-ok proves the server processed all we sent."""
        if self.closed:
            return
        self.send(0, commands.Connection.Close(200, "bye", 0, 0))
        try:
            await asyncio.wait_for(self._await_close_ok(), limit_s)
        except (TimeoutError, AmqpError):
            pass
        finally:
            if self.transport is not None:
                self.transport.close()

    async def _await_close_ok(self) -> None:
        while True:
            item = await self._cold.get()
            if item is None or isinstance(item[1], commands.Connection.CloseOk):
                return

    # ----------------------------------------------------------------- writing
    def write(self, data: bytes | bytearray) -> None:
        if self.transport is None or self.transport.is_closing():
            raise AmqpError(self.error or "connection is closed")
        self.transport.write(data)

    def send(self, channel: int, method: object) -> None:
        self.write(method_frame(channel, method))

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    async def drain(self, deadline: float) -> None:
        """Wait while the transport is over its high-water mark; TimeoutError at `deadline`."""
        if not self._writable.is_set():
            remaining = deadline - time.monotonic()
            try:
                await asyncio.wait_for(self._writable.wait(), max(0.0, remaining))
            except TimeoutError:
                raise TimeoutError("broker stopped reading (write buffer full)") from None
        if self.error is not None:
            raise AmqpError(self.error)

    # ----------------------------------------------------------------- cold path RPC
    async def expect(self, channel: int, kind: type[T]) -> T:
        """Next cold-path frame on `channel` must be a `kind`; server closes become AmqpError."""
        while True:
            item = await self._cold.get()
            if item is None:
                raise AmqpError(self.error or "connection lost")
            ch, value = item
            if isinstance(value, commands.Connection.Close):
                self.error = f"server closed connection: {value.reply_code} {value.reply_text}"
                if not self.closed:
                    self.send(0, commands.Connection.CloseOk())
                raise AmqpError(self.error)
            if isinstance(value, commands.Channel.Close):
                self.error = f"server closed channel {ch}: {value.reply_code} {value.reply_text}"
                self.send(ch, commands.Channel.CloseOk())
                raise AmqpError(self.error)
            if ch == channel and isinstance(value, kind):
                return value
            if ch == channel:
                raise AmqpError(f"expected {kind.__name__}, got {type(value).__name__}")

    async def rpc(self, channel: int, method: object, reply: type[T], limit_s: float = 30.0) -> T:
        self.send(channel, method)
        return await asyncio.wait_for(self.expect(channel, reply), limit_s)

    async def open_channel(self, channel: int = 1) -> None:
        await self.rpc(channel, commands.Channel.Open(), commands.Channel.OpenOk)

    # ----------------------------------------------------------------- confirms
    @property
    def confirmed(self) -> int:
        return self.confirmed_upto + len(self.confirm_singles)

    def _on_confirm(self, tag: int, multiple: bool) -> None:
        if multiple:
            if tag > self.confirmed_upto:
                self.confirmed_upto = tag
                if self.confirm_singles:
                    self.confirm_singles = {t for t in self.confirm_singles if t > tag}
        elif tag == self.confirmed_upto + 1:
            self.confirmed_upto = tag
            singles = self.confirm_singles
            while self.confirmed_upto + 1 in singles:
                self.confirmed_upto += 1
                singles.discard(self.confirmed_upto)
        elif tag > self.confirmed_upto:
            self.confirm_singles.add(tag)
        self._wake_confirm_waiter()

    def _wake_confirm_waiter(self) -> None:
        waiter = self._confirm_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_confirmed(self, at_least: int, deadline: float) -> None:
        """Wait until `at_least` publishes are confirmed, or raise TimeoutError at `deadline`."""
        while self.confirmed < at_least:
            if self.error is not None:
                raise AmqpError(self.error)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.confirmed}/{at_least} publishes confirmed")
            self._confirm_waiter = self.loop.create_future()
            try:
                await asyncio.wait_for(self._confirm_waiter, remaining)
            finally:
                self._confirm_waiter = None

    # ----------------------------------------------------------------- hot path
    def data_received(self, data: bytes) -> None:  # noqa: C901 - one flat loop on purpose
        buf = self._buf
        buf += data
        n = len(buf)
        pos = 0
        now = time.monotonic_ns()
        view = memoryview(buf)
        unpack_hdr = FRAME_HDR.unpack_from
        handler = self.handler
        try:
            while n - pos >= 8:
                ftype, _, size = unpack_hdr(buf, pos)
                end = pos + 7 + size
                if end >= n:
                    break
                if buf[end] != FRAME_END:
                    self._fatal(f"bad frame end at frame type {ftype}")
                    return
                if ftype == FRAME_BODY:
                    if self._partial is None and size == self._remaining:
                        self._remaining = 0
                        if self.handler is not None:
                            self.handler.on_message(view, pos + 7, end, self._tag, now)
                    else:
                        self._body_part(view[pos + 7 : end], now)
                elif ftype == FRAME_METHOD:
                    mid = METHOD_ID.unpack_from(buf, pos + 7)[0]
                    if mid == BASIC_DELIVER:
                        tag = self._tag = U64.unpack_from(buf, pos + 12 + buf[pos + 11])[0]
                        # Fast path: a property-less content header and one whole body
                        # frame are already buffered: one unpack for both frame headers.
                        h = end + 1
                        if n - h >= CONTENT_PAIR.size and buf[h] == FRAME_HEADER:
                            hf = CONTENT_PAIR.unpack_from(buf, h)
                            bend = h + CONTENT_PAIR.size + hf[10]
                            if (
                                hf[2] == 14
                                and hf[7] == FRAME_END
                                and hf[8] == FRAME_BODY
                                and hf[10] == hf[5]
                                and bend < n
                                and buf[bend] == FRAME_END
                                and handler is not None
                            ):
                                handler.on_message(view, bend - hf[10], bend, tag, now)
                                pos = bend + 1
                                continue
                    elif mid == BASIC_ACK or mid == BASIC_NACK:
                        tag = U64.unpack_from(buf, pos + 11)[0]
                        if mid == BASIC_NACK:
                            self.nacked += 1
                        self._on_confirm(tag, bool(buf[pos + 19] & 1))
                    else:
                        self._cold_frame(bytes(view[pos : end + 1]))
                elif ftype == FRAME_HEADER:
                    self._remaining = U64.unpack_from(buf, pos + 11)[0]
                    self._partial = None
                    if self._remaining == 0 and self.handler is not None:
                        self.handler.on_message(view, pos, pos, self._tag, now)
                pos = end + 1
        finally:
            view.release()
            if pos:
                del buf[:pos]

    def _body_part(self, part: memoryview, now: int) -> None:
        if self._partial is None:
            self._partial = bytearray()
        self._partial += part
        if len(self._partial) >= self._remaining:
            body, self._partial, self._remaining = self._partial, None, 0
            if self.handler is not None:
                with memoryview(body) as bview:
                    self.handler.on_message(bview, 0, len(body), self._tag, now)

    def _cold_frame(self, raw: bytes) -> None:
        try:
            _, ch, value = frame.unmarshal(raw)
        except Exception as exc:  # a broken frame from the server is a result, not a crash
            self._fatal(f"cannot decode frame: {exc}")
            return
        if isinstance(value, commands.Connection.Close | commands.Channel.Close):
            self.error = f"server sent {value.name}: {value.reply_code} {value.reply_text}"
            self._wake_confirm_waiter()
        self._cold.put_nowait((ch, value))

    def _fatal(self, reason: str) -> None:
        self.error = reason
        self.abort()
