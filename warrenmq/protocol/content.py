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
#: Cached heads per encoder before a cache is cleared (distinct sizes seen).
_CACHE_LIMIT: Final = 256


class DeliverEncoder:
    """basic.deliver + header + one body frame for one consumer, as one ``bytes``.

    Per message only the delivery tag and redelivered flag are packed; everything else
    but the route, properties and body depends on the consumer and three lengths (route,
    properties, body) and is cached under one int key: the method frame's head (frame
    head, 60.60, the consumer tag) and the content header's and body frame's heads. The
    cache holds a few entries in practice (a publisher's sizes repeat) and is cleared
    past ``_CACHE_LIMIT``."""

    def __init__(self, channel: int, consumer_tag: bytes) -> None:
        self.channel = channel
        self.consumer_tag = consumer_tag
        self._heads: dict[int, tuple[bytes, bytes, bytes]] = {}

    def frames(self, delivery_tag: int, redelivered: bool, route: bytes, properties: bytes,
               body: bytes) -> bytes:
        """The frames of one delivery; ``body`` must fit one frame (may be empty)."""
        size = len(body)
        # route <= 512 bytes, properties < 2**22 (within a frame): distinct keys
        key = (size << 32) | (len(properties) << 10) | len(route)
        heads = self._heads.get(key)
        if heads is None:
            heads = self._make_heads(key, len(route), len(properties), size)
        method_head, content_head, body_head = heads
        # one allocation: compiled, ``bytes % tuple-of-bytes`` is a single C join
        return b"%s%s%s%s%s%s%s%s\xce" % (
            method_head, delivery_tag.to_bytes(8, "big"), b"\x01" if redelivered else b"\x00",
            route, content_head, properties, body_head, body)

    def _make_heads(self, key: int, route_length: int, properties_length: int,
                    size: int) -> tuple[bytes, bytes, bytes]:
        if len(self._heads) >= _CACHE_LIMIT:
            self._heads.clear()
        channel = self.channel
        method_size = 4 + len(self.consumer_tag) + 9 + route_length
        heads = (
            _DELIVER_HEAD.pack(1, channel, method_size, 60, 60) + self.consumer_tag,
            b"\xce" + _CONTENT_HEAD.pack(2, channel, properties_length + 12, 60, 0, size),
            # no body frame for an empty body: the header frame's end comes next
            b"\xce" + _BODY_HEAD.pack(3, channel, size) if size else b"",
        )
        self._heads[key] = heads
        return heads


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
