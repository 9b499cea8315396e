"""AMQP 0-9-1 framing (spec §4.2.3): split a byte stream into frames and build frames.

``FrameReader.feed`` takes whatever the socket delivered and returns the complete frames
in it; an incomplete frame is not an error, it waits for more bytes. It keeps only the
unfinished tail between calls and parses each chunk as ``bytes`` with an offset, so a
frame's payload costs exactly one slice (a ``bytearray`` buffer would cost two copies a
frame: the slice, then ``bytes()`` of it).
"""

from __future__ import annotations

import struct
from typing import Final

from warrenmq.errors import FrameError

PROTOCOL_HEADER: Final = b"AMQP\x00\x00\x09\x01"

FRAME_METHOD: Final = 1
FRAME_HEADER: Final = 2
FRAME_BODY: Final = 3
FRAME_HEARTBEAT: Final = 8
FRAME_END: Final = 0xCE
FRAME_END_BYTE: Final = b"\xce"
FRAME_OVERHEAD: Final = 8  # type(1) + channel(2) + size(4) + frame-end(1)

_FRAME_HEAD: Final = struct.Struct(">BHI")

HEARTBEAT: Final = b"\x08\x00\x00\x00\x00\x00\x00\xce"

Frame = tuple[int, int, bytes]  # (frame type, channel, payload)


class FrameReader:
    """Incremental frame decoder for one connection.

    ``frame_max`` is the negotiated maximum frame size including the 8 bytes of overhead;
    a frame announcing a larger payload is a 501 FRAME_ERROR before its payload arrives.
    """

    __slots__ = ("_tail", "frame_max")

    def __init__(self, frame_max: int) -> None:
        self._tail = b""
        self.frame_max = frame_max

    @property
    def buffered(self) -> int:
        return len(self._tail)

    def take(self, data: bytes) -> bytes:
        """The unfinished tail and ``data`` as one buffer, for a caller that walks the
        frames itself (the connection) and hands back what it did not use to ``keep``."""
        tail = self._tail
        return tail + data if tail else data

    def keep(self, tail: bytes) -> None:
        self._tail = tail

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._tail + data if self._tail else bytes(data)
        pos = 0
        end = len(buf)
        frames: list[Frame] = []
        while end - pos >= 7:
            stop = frame_stop(buf, pos, end, self.frame_max)
            if stop < 0:
                break
            frames.append((buf[pos], (buf[pos + 1] << 8) | buf[pos + 2], buf[pos + 7 : stop]))
            pos = stop + 1
        self._tail = buf[pos:] if pos < end else b""
        return frames


def frame_stop(buf: bytes, pos: int, end: int, frame_max: int) -> int:
    """Check the frame header at ``buf[pos]`` (at least 7 bytes there): the offset of the
    frame's end byte, or -1 when the frame is not complete yet. A bad type, a heartbeat
    with a payload, a payload past ``frame_max`` (found before it arrives) or a wrong end
    byte raise ``FrameError`` (501). Shared by ``FrameReader.feed`` and the connection's
    own walk over a read."""
    frame_type = buf[pos]
    if (frame_type > FRAME_BODY and frame_type != FRAME_HEARTBEAT) or frame_type == 0:
        raise FrameError(f"unknown frame type {frame_type}")
    size = (buf[pos + 3] << 24) | (buf[pos + 4] << 16) | (buf[pos + 5] << 8) | buf[pos + 6]
    if size and frame_type == FRAME_HEARTBEAT:
        # a heartbeat has no payload (§4.2.7); RabbitMQ: 501 FRAME_ERROR
        raise FrameError(f"heartbeat frame with a payload of {size} bytes")
    if size > frame_max - FRAME_OVERHEAD:
        raise FrameError(f"frame of {size + FRAME_OVERHEAD} bytes exceeds frame_max {frame_max}")
    stop = pos + 7 + size
    if stop >= end:
        return -1
    if buf[stop] != FRAME_END:
        raise FrameError(f"frame end byte is 0x{buf[stop]:02x}, expected 0xce")
    return stop


def content_header_end(buf: bytes, pos: int, end: int, channel: int, limit: int) -> int:
    """The offset of the frame-end byte of a complete class-60 content header frame for
    ``channel`` at ``buf[pos]`` (payload within ``limit``), or -1 if there is none."""
    size = (buf[pos + 3] << 24) | (buf[pos + 4] << 16) | (buf[pos + 5] << 8) | buf[pos + 6]
    stop = pos + 7 + size
    if buf[pos] != FRAME_HEADER or (buf[pos + 1] << 8 | buf[pos + 2]) != channel \
            or size < 14 or size > limit or stop >= end or buf[stop] != FRAME_END \
            or buf[pos + 7] != 0 or buf[pos + 8] != 60:
        return -1
    return stop


def body_frame_end(buf: bytes, pos: int, end: int, channel: int, size: int) -> int:
    """The offset after a complete body frame of exactly ``size`` bytes for ``channel`` at
    ``buf[pos]``, or -1 if there is none (the publish fast path's check). An empty body
    has no body frame: ``pos`` itself."""
    if size == 0:
        return pos
    if end - pos < 8 or buf[pos] != FRAME_BODY or (buf[pos + 1] << 8 | buf[pos + 2]) != channel:
        return -1
    length = (buf[pos + 3] << 24) | (buf[pos + 4] << 16) | (buf[pos + 5] << 8) | buf[pos + 6]
    following = pos + 8 + length
    if length != size or following > end or buf[following - 1] != FRAME_END:
        return -1
    return following


def encode_frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    return _FRAME_HEAD.pack(frame_type, channel, len(payload)) + payload + FRAME_END_BYTE
