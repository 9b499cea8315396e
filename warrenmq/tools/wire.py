"""A minimal AMQP 0-9-1 client for ``warrenmq migrate``: one connection, one channel.

Built on the broker's own sans-IO codec (``warrenmq.protocol``) so that a message's
property bytes travel from the source's basic.deliver to the target's basic.publish
untouched: headers (x-death included) keep their exact field-table type tags, which a
decode/re-encode through a client library would not (pamqp re-picks integer widths).

Owns: the handshake (PLAIN), synchronous calls (one at a time), assembling deliveries
and returns from method + header + body frames, publisher-confirm and cancel callbacks,
connection.blocked, write back-pressure (``drain``). Must not know about queues being
migrated or import the broker.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast
from urllib.parse import unquote, urlsplit

from warrenmq.errors import AMQPError
from warrenmq.protocol.frames import (
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    PROTOCOL_HEADER,
    FrameReader,
    encode_frame,
)
from warrenmq.protocol.methods import Method, decode_method, method_class, method_frame

FRAME_MAX = 131072
_HEADER = struct.Struct(">HHQ")  # class id, weight, body size
_PUBLISH = method_class("BasicPublish")
_ACK = method_class("BasicAck")
_NACK = method_class("BasicNack")
_DELIVER = method_class("BasicDeliver")
_RETURN = method_class("BasicReturn")


class WireError(Exception):
    """The connection or channel is gone; ``text`` says why (the broker's reply text)."""


@dataclass(frozen=True, slots=True)
class Url:
    host: str
    port: int
    user: str
    password: str
    vhost: str

    @classmethod
    def parse(cls, url: str) -> Url:
        parts = urlsplit(url)
        if parts.scheme != "amqp" or not parts.hostname:
            raise ValueError(f"not an amqp:// URL: {url!r} (amqps is not supported)")
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        return cls(parts.hostname, parts.port or 5672, unquote(parts.username or "guest"),
                   unquote(parts.password or "guest"), unquote(path) if path else "/")

    def with_vhost(self, vhost: str) -> Url:
        return Url(self.host, self.port, self.user, self.password, vhost)

    def __str__(self) -> str:  # never shows the password
        return f"amqp://{self.user}@{self.host}:{self.port}/ (vhost {self.vhost!r})"


@dataclass(slots=True)
class Content:
    """A delivered or returned message: the method's fields we need and the raw content."""

    delivery_tag: int
    routing_key: str
    properties: bytes
    body: bytes
    reply_code: int = 0
    redelivered: bool = False


class Client(asyncio.Protocol):
    """One connection with channel 1 open. ``on_delivery``, ``on_confirm``, ``on_return``
    and ``on_cancel`` are set by the user before consuming or publishing."""

    def __init__(self) -> None:
        self.reader = FrameReader(FRAME_MAX)
        self.frame_max = FRAME_MAX
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Method] | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.error: WireError | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.unblocked = asyncio.Event()
        self.unblocked.set()
        self.on_delivery: Callable[[Content], None] = lambda c: None
        self.on_confirm: Callable[[int, bool, bool], None] = lambda tag, multiple, ack: None
        self.on_return: Callable[[Content], None] = lambda c: None
        self.on_cancel: Callable[[str], None] = lambda tag: None
        self._method: Method | None = None  # a content method waiting for its content
        self._properties = b""
        self._size = 0
        self._parts: list[bytes] = []
        self._got = 0

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    async def connect(cls, url: Url, timeout: float) -> Client:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        try:
            _, client = await asyncio.wait_for(
                loop.create_connection(cls, url.host, url.port), timeout)
        except (OSError, TimeoutError) as exc:
            raise WireError(f"cannot connect to {url}: {exc or 'timed out'}") from None
        await asyncio.wait_for(client._handshake(url), timeout)
        return client

    async def _handshake(self, url: Url) -> None:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(PROTOCOL_HEADER)
        start = await self._wait()
        if b"PLAIN" not in start.mechanisms.split():
            raise WireError(f"{url}: the broker does not offer PLAIN authentication")
        capabilities = {"publisher_confirms": True, "consumer_cancel_notify": True,
                        "connection.blocked": True, "basic.nack": True,
                        "authentication_failure_close": True}
        tune = await self.call(method_class("ConnectionStartOk")(
            {"product": "warrenmq migrate", "capabilities": capabilities}, "PLAIN",
            f"\0{url.user}\0{url.password}".encode(), "en_US"), channel=0)
        self.frame_max = min(tune.frame_max or FRAME_MAX, FRAME_MAX)
        self.reader.frame_max = self.frame_max
        self._send(0, method_class("ConnectionTuneOk")(tune.channel_max, self.frame_max, 0))
        await self.call(method_class("ConnectionOpen")(url.vhost, "", False), channel=0)
        await self.call(method_class("ChannelOpen")(""))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(self.error or WireError(f"connection lost: {exc or 'closed by the peer'}"))
        if not self.closed.done():
            self.closed.set_result(None)
        self.writable.set()
        self.unblocked.set()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    async def close(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.error is None:
            self._send(0, method_class("ConnectionClose")(200, "bye", 0, 0))
            try:
                await asyncio.wait_for(asyncio.shield(self.closed), 5.0)
            except (TimeoutError, WireError):
                pass
        self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # ------------------------------------------------------------------ calls
    def _send(self, channel: int, method: Method) -> None:
        if self.error is not None:
            raise self.error
        assert self.transport is not None
        self.transport.write(method_frame(channel, method))

    async def _wait(self) -> Method:
        assert self.waiter is not None
        try:
            return await self.waiter
        finally:
            self.waiter = None

    async def call(self, method: Method, channel: int = 1) -> Method:
        """Send a synchronous method and wait for its reply (one call at a time)."""
        self.waiter = asyncio.get_running_loop().create_future()
        self._send(channel, method)
        return await self._wait()

    def send(self, method: Method) -> None:
        """Send an asynchronous method on channel 1 (ack, nack, cancel with nowait)."""
        self._send(1, method)

    def publish(self, routing_key: str, properties: bytes, body: bytes) -> None:
        """basic.publish to the default exchange, mandatory, with the raw properties."""
        if self.error is not None:
            raise self.error
        assert self.transport is not None
        frames = [method_frame(1, _PUBLISH(0, "", routing_key, True, False)),
                  encode_frame(FRAME_HEADER, 1, _HEADER.pack(60, 0, len(body)) + properties)]
        step = self.frame_max - 8
        frames += [encode_frame(FRAME_BODY, 1, body[i:i + step])
                   for i in range(0, len(body), step)]
        self.transport.writelines(frames)

    async def drain(self) -> None:
        """Wait while the socket's write buffer is full or the broker blocked us."""
        await self.writable.wait()
        await self.unblocked.wait()
        if self.error is not None:
            raise self.error

    # ------------------------------------------------------------------ incoming
    def data_received(self, data: bytes) -> None:
        try:
            self._frames(self.reader.feed(data))
        except AMQPError as exc:
            self._fatal(f"bad frame from the broker: {exc}")

    def _frames(self, frames: list[tuple[int, int, bytes]]) -> None:
        for kind, _channel, payload in frames:
            if kind == FRAME_METHOD:
                self._on_method(decode_method(payload))
            elif kind == FRAME_HEADER:
                self._size = _HEADER.unpack_from(payload, 0)[2]
                self._properties = payload[_HEADER.size:]
                self._parts, self._got = [], 0
                if self._size == 0:
                    self._content_done()
            elif kind == FRAME_BODY:
                self._parts.append(payload)
                self._got += len(payload)
                if self._got >= self._size:
                    self._content_done()
            elif kind != FRAME_HEARTBEAT:
                self._fatal(f"unexpected frame type {kind}")

    def _on_method(self, method: Method) -> None:
        name = method.NAME
        if isinstance(method, _ACK | _NACK):
            self.on_confirm(method.delivery_tag, method.multiple, isinstance(method, _ACK))
        elif method.HAS_CONTENT:
            self._method = method
        elif name in ("ConnectionClose", "ChannelClose"):
            code, text = method.reply_code, method.reply_text
            if name == "ConnectionClose":
                self._send(0, method_class("ConnectionCloseOk")())
            else:
                self._send(1, method_class("ChannelCloseOk")())
            self._fail(WireError(f"{code} {text}"))
            if self.transport is not None and name == "ChannelClose":
                self.transport.close()
        elif name == "ConnectionBlocked":
            self.unblocked.clear()
        elif name == "ConnectionUnblocked":
            self.unblocked.set()
        elif name == "ConnectionCloseOk":
            if self.transport is not None:
                self.transport.close()
        elif name == "BasicCancel":
            self.on_cancel(method.consumer_tag)
        elif self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(method)

    def _content_done(self) -> None:
        method, self._method = self._method, None
        body = b"".join(self._parts)
        self._parts = []
        if isinstance(method, _DELIVER):
            self.on_delivery(Content(method.delivery_tag, method.routing_key,
                                     self._properties, body, 0, method.redelivered))
        elif isinstance(method, _RETURN):
            self.on_return(Content(0, method.routing_key, self._properties, body,
                                   method.reply_code))

    def _fail(self, error: WireError) -> None:
        if self.error is None:
            self.error = error
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)

    def _fatal(self, text: str) -> None:
        self._fail(WireError(text))
        if self.transport is not None:
            self.transport.abort()
