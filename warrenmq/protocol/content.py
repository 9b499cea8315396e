"""Hot-path encoders for the methods that carry content, and publisher confirms.

basic.deliver, basic.get-ok and basic.return are written by hand with pre-compiled
``struct.Struct`` objects: the method frame, the content header with the publisher's
property bytes passed through untouched, and the body split at ``frame_max - 8``.
``DeliverEncoder`` is the common single-body-frame delivery as one ``bytes``, for one
consumer, with the bytes that depend only on the consumer, the route's length, the
property length and the body size cached, so a delivery is one ``struct`` call and one
join. pamqp parses all of them in the unit tests.
"""

from __future__ import annotations

import struct
from typing import Final

from warrenmq.protocol.fields import encode_shortstr

_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")
_FRAME_HEAD: Final = struct.Struct(">BHI")
_DELIVER_HEAD: Final = struct.Struct(">BHIHH")  # frame head + class/method ids
_CONTENT_HEAD: Final = struct.Struct(">BHIHHQ")  # frame head + class id, weight, body size
_ACK_FRAME: Final = struct.Struct(">BHIHHQBB")  # whole basic.ack / basic.nack frame


def encode_deliver(
    channel: int,
    consumer_tag: bytes,
    delivery_tag: int,
    redelivered: bool,
    route: bytes,
    properties: bytes,
    body: bytes,
    frame_max: int,
) -> list[bytes]:
    """basic.deliver + content header + body frames; ``consumer_tag`` is an encoded shortstr.

    Returns a list to pass to ``transport.writelines`` so large bodies are not copied.
    """
    args = consumer_tag + _U64.pack(delivery_tag) + (b"\x01" if redelivered else b"\x00") + route
    method = _DELIVER_HEAD.pack(1, channel, len(args) + 4, 60, 60) + args + b"\xce"
    return _with_content(method, channel, properties, body, frame_max)


_BODY_HEAD: Final = struct.Struct(">BHI")
_TAG_BITS: Final = struct.Struct(">QB")
#: Cached heads per encoder before a cache is cleared (distinct sizes seen).
_CACHE_LIMIT: Final = 256


class DeliverEncoder:
    """basic.deliver + header + one body frame for one consumer, as one ``bytes``.

    Per message only the delivery tag and redelivered flag are packed; the method frame's
    head (frame head, 60.60, the consumer tag) is cached by route length, the content
    header's head by property length and body size, the body frame's head by body
    size. The caches hold a few entries in practice (a publisher's sizes repeat) and are
    cleared past ``_CACHE_LIMIT``."""

    def __init__(self, channel: int, consumer_tag: bytes) -> None:
        self.channel = channel
        self.consumer_tag = consumer_tag
        self._method_heads: dict[int, bytes] = {}
        self._content_heads: dict[int, bytes] = {}
        self._body_heads: dict[int, bytes] = {}

    def frames(self, delivery_tag: int, redelivered: bool, route: bytes, properties: bytes,
               body: bytes) -> bytes:
        """The frames of one delivery; ``body`` must fit one frame (may be empty)."""
        route_length = len(route)
        method_head = self._method_heads.get(route_length)
        if method_head is None:
            method_head = self._method_head(route_length)
        size = len(body)
        key = (len(properties) << 32) | size
        content_head = self._content_heads.get(key)
        if content_head is None:
            content_head = self._content_head(len(properties), size)
        if size == 0:
            return b"".join((method_head, _TAG_BITS.pack(delivery_tag, redelivered), route,
                             content_head, properties, b"\xce"))
        body_head = self._body_heads.get(size)
        if body_head is None:
            body_head = self._body_head(size)
        return b"".join((method_head, _TAG_BITS.pack(delivery_tag, redelivered), route,
                         content_head, properties, body_head, body, b"\xce"))

    def _method_head(self, route_length: int) -> bytes:
        heads = self._method_heads
        if len(heads) >= _CACHE_LIMIT:
            heads.clear()
        size = 4 + len(self.consumer_tag) + 9 + route_length
        head = _DELIVER_HEAD.pack(1, self.channel, size, 60, 60) + self.consumer_tag
        heads[route_length] = head
        return head

    def _content_head(self, properties_length: int, size: int) -> bytes:
        heads = self._content_heads
        if len(heads) >= _CACHE_LIMIT:
            heads.clear()
        head = b"\xce" + _CONTENT_HEAD.pack(2, self.channel, properties_length + 12, 60, 0, size)
        heads[(properties_length << 32) | size] = head
        return head

    def _body_head(self, size: int) -> bytes:
        heads = self._body_heads
        if len(heads) >= _CACHE_LIMIT:
            heads.clear()
        head = b"\xce" + _BODY_HEAD.pack(3, self.channel, size)
        heads[size] = head
        return head


def encode_get_ok(
    channel: int,
    delivery_tag: int,
    redelivered: bool,
    route: bytes,
    message_count: int,
    properties: bytes,
    body: bytes,
    frame_max: int,
) -> list[bytes]:
    args = (
        _U64.pack(delivery_tag)
        + (b"\x01" if redelivered else b"\x00")
        + route
        + _U32.pack(message_count)
    )
    method = _DELIVER_HEAD.pack(1, channel, len(args) + 4, 60, 71) + args + b"\xce"
    return _with_content(method, channel, properties, body, frame_max)


def encode_return(
    channel: int,
    reply_code: int,
    reply_text: str,
    route: bytes,
    properties: bytes,
    body: bytes,
    frame_max: int,
) -> list[bytes]:
    args = _U16.pack(reply_code) + encode_shortstr(reply_text) + route
    method = _DELIVER_HEAD.pack(1, channel, len(args) + 4, 60, 50) + args + b"\xce"
    return _with_content(method, channel, properties, body, frame_max)


def _with_content(
    method: bytes, channel: int, properties: bytes, body: bytes, frame_max: int
) -> list[bytes]:
    size = len(body)
    header = (
        _CONTENT_HEAD.pack(2, channel, len(properties) + 12, 60, 0, size) + properties + b"\xce"
    )
    chunk = frame_max - 8
    if size <= chunk:
        if size == 0:
            return [method + header]
        return [method + header + _FRAME_HEAD.pack(3, channel, size) + body + b"\xce"]
    parts = [method + header]
    view = memoryview(body)
    for start in range(0, size, chunk):
        piece = view[start : start + chunk]
        parts.append(_FRAME_HEAD.pack(3, channel, len(piece)))
        parts.append(bytes(piece))
        parts.append(b"\xce")
    return parts


def encode_confirm(channel: int, delivery_tag: int, multiple: bool, ack: bool) -> bytes:
    """basic.ack (or basic.nack with requeue=false) sent to a confirming publisher."""
    return _ACK_FRAME.pack(
        1, channel, 13, 60, 80 if ack else 120, delivery_tag, 1 if multiple else 0, 0xCE
    )


def shortstr(value: str) -> bytes:
    return encode_shortstr(value)
