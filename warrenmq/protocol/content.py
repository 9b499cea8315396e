"""Hot-path encoders for the methods that carry content, and publisher confirms.

basic.deliver, basic.get-ok and basic.return are written by hand with pre-compiled
``struct.Struct`` objects: the method frame, the content header with the publisher's
property bytes passed through untouched, and the body split at ``frame_max - 8``.
``deliver_frames`` is the common single-body-frame delivery as one ``bytes``. pamqp
parses all of them in the unit tests.
"""

from __future__ import annotations

import struct

from warrenmq.protocol.fields import encode_shortstr

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_FRAME_HEAD = struct.Struct(">BHI")
_DELIVER_HEAD = struct.Struct(">BHIHH")  # frame head + class/method ids
_CONTENT_HEAD = struct.Struct(">BHIHHQ")  # frame head + class id, weight, body size
_ACK_FRAME = struct.Struct(">BHIHHQBB")  # whole basic.ack / basic.nack frame


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


_DELIVER_FIXED = struct.Struct(">QB")
_BODY_HEAD = struct.Struct(">BHI")


def deliver_frames(
    channel: int,
    consumer_tag: bytes,
    delivery_tag: int,
    redelivered: bool,
    route: bytes,
    properties: bytes,
    body: bytes,
) -> bytes:
    """basic.deliver, header and ONE body frame as a single bytes (body must fit a frame)."""
    args = consumer_tag + _DELIVER_FIXED.pack(delivery_tag, redelivered) + route
    size = len(body)
    return b"".join((
        _DELIVER_HEAD.pack(1, channel, len(args) + 4, 60, 60), args,
        b"\xce",
        _CONTENT_HEAD.pack(2, channel, len(properties) + 12, 60, 0, size), properties,
        b"\xce",
        _BODY_HEAD.pack(3, channel, size), body, b"\xce",
    ))


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
