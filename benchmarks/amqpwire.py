"""AMQP 0-9-1 framing for the load generator: URLs, pre-encoded publish templates, body layout.

Role: everything byte-level that the hot paths share. Publishing never encodes a frame per
message: `MessageEncoder` builds each routing key's method+header+body frames once and a
batch is a copy of those templates in which only the body's producer id, sequence number,
timestamp and CRC are patched with `struct.pack_into`.

Body layout (big-endian), `BODY_HEADER.size` = 24 bytes, then a fixed filler:
    crc32(body[4:]) u32 | producer id u32 | sequence u64 | send time (CLOCK_MONOTONIC ns) u64

Must not: import anything from `warrenmq` (the generator is a black-box client), open
sockets, or use pamqp on a per-message path (pamqp is only for cold-path methods).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from pamqp import commands, frame

FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE
FRAME_END_BYTE = b"\xce"

# (class_id << 16) | method_id, as read with ">I" at the start of a method payload.
BASIC_PUBLISH = (60 << 16) | 40
BASIC_DELIVER = (60 << 16) | 60
BASIC_ACK = (60 << 16) | 80
BASIC_NACK = (60 << 16) | 120
BASIC_CONSUME = (60 << 16) | 20
CONNECTION_CLOSE = (10 << 16) | 50

FRAME_HDR = struct.Struct(">BHI")
METHOD_ID = struct.Struct(">I")
U64 = struct.Struct(">Q")
BODY_HEADER = struct.Struct(">IIQQ")
BODY_FIELDS = struct.Struct(">IQQ")  # producer id, sequence, timestamp (after the CRC)
U32 = struct.Struct(">I")
FILLER = b"WarrenMQ-bench:"
# Content header property list: flags (u16), then the values of the flagged properties.
NO_PROPERTIES = b"\x00\x00"
PERSISTENT_PROPERTIES = b"\x10\x00\x02"  # flag 0x1000 (delivery-mode), delivery-mode 2


@dataclass(frozen=True)
class AmqpUrl:
    """A parsed amqp:// URL (TLS is not supported: amqps:// is rejected)."""

    host: str
    port: int
    user: str
    password: str
    vhost: str

    @classmethod
    def parse(cls, url: str) -> AmqpUrl:
        parts = urlsplit(url)
        if parts.scheme != "amqp":
            raise ValueError(f"only amqp:// URLs are supported, got {url!r}")
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5672,
            user=unquote(parts.username or "guest"),
            password=unquote(parts.password or "guest"),
            vhost=unquote(path) if path else "/",
        )


def method_frame(channel: int, method: object) -> bytes:
    """Cold path: marshal one pamqp method (declares, qos, consume, close...)."""
    return frame.marshal(method, channel)  # type: ignore[arg-type]


def raw_frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    return FRAME_HDR.pack(frame_type, channel, len(payload)) + payload + FRAME_END_BYTE


def shortstr(value: str) -> bytes:
    data = value.encode()
    if len(data) > 255:
        raise ValueError(f"shortstr too long: {value!r}")
    return bytes([len(data)]) + data


def basic_ack_frame(channel: int, delivery_tag: int, multiple: bool) -> bytes:
    payload = (
        METHOD_ID.pack(BASIC_ACK) + U64.pack(delivery_tag) + (b"\x01" if multiple else b"\x00")
    )
    return raw_frame(FRAME_METHOD, channel, payload)


def content_prefix(
    channel: int, method_payload: bytes, body_size: int, properties: bytes = NO_PROPERTIES
) -> bytes:
    """Method frame + content header (`properties`: flags and values, none by default) +
    body frame header, for one body frame."""
    header = struct.pack(">HHQ", 60, 0, body_size) + properties
    return (
        raw_frame(FRAME_METHOD, channel, method_payload)
        + raw_frame(FRAME_HEADER, channel, header)
        + FRAME_HDR.pack(FRAME_BODY, channel, body_size)
    )


def publish_payload(exchange: str, routing_key: str) -> bytes:
    return (
        METHOD_ID.pack(BASIC_PUBLISH)
        + b"\x00\x00"
        + shortstr(exchange)
        + shortstr(routing_key)
        + b"\x00"
    )


def deliver_payload(consumer_tag: str, delivery_tag: int, exchange: str, routing_key: str) -> bytes:
    return (
        METHOD_ID.pack(BASIC_DELIVER)
        + shortstr(consumer_tag)
        + U64.pack(delivery_tag)
        + b"\x00"
        + shortstr(exchange)
        + shortstr(routing_key)
    )


def body_template(body_size: int) -> bytes:
    if body_size < BODY_HEADER.size:
        raise ValueError(f"body size must be >= {BODY_HEADER.size} bytes")
    filler_len = body_size - BODY_HEADER.size
    filler = (FILLER * (filler_len // len(FILLER) + 1))[:filler_len]
    return bytes(BODY_HEADER.size) + filler


class MessageEncoder:
    """Builds batches of complete basic.publish messages from per-routing-key templates.

    Message `seq` uses routing key `routing_keys[seq % len(routing_keys)]`.
    """

    def __init__(
        self,
        channel: int,
        exchange: str,
        routing_keys: list[str],
        body_size: int,
        producer_id: int,
        frame_max: int,
        *,
        payloads: list[bytes] | None = None,
        properties: bytes = NO_PROPERTIES,
    ) -> None:
        if body_size + 8 > frame_max:
            raise ValueError(f"body {body_size} B does not fit one frame (frame_max {frame_max})")
        self.body_size = body_size
        self.producer_id = producer_id
        body = body_template(body_size)
        if payloads is None:
            payloads = [publish_payload(exchange, rk) for rk in routing_keys]
        self.templates = [
            content_prefix(channel, p, body_size, properties) + body + FRAME_END_BYTE
            for p in payloads
        ]
        self.body_offsets = [len(t) - body_size - 1 for t in self.templates]
        self.mean_len = sum(len(t) for t in self.templates) / len(self.templates)

    def batch(self, first_seq: int, count: int, ts_ns: int) -> bytearray:
        """`count` messages with sequence numbers first_seq.. all stamped `ts_ns`."""
        templates = self.templates
        nkeys = len(templates)
        size = self.body_size
        pid = self.producer_id
        pack_fields = BODY_FIELDS.pack_into
        pack_crc = U32.pack_into
        crc32 = zlib.crc32
        if nkeys == 1:
            buf = bytearray(templates[0]) * count
            step = len(templates[0])
            starts = range(self.body_offsets[0], step * count, step)
        else:
            keys = [(first_seq + i) % nkeys for i in range(count)]
            buf = bytearray(b"".join([templates[k] for k in keys]))
            starts_list: list[int] = []
            pos = 0
            for k in keys:
                starts_list.append(pos + self.body_offsets[k])
                pos += len(templates[k])
            starts = starts_list  # type: ignore[assignment]
        view = memoryview(buf)
        seq = first_seq
        for off in starts:
            pack_fields(buf, off + 4, pid, seq, ts_ns)
            pack_crc(buf, off, crc32(view[off + 4 : off + size]))
            seq += 1
        view.release()
        return buf


def check_body(view: memoryview, start: int, end: int) -> tuple[bool, int, int, int]:
    """(crc ok, producer id, sequence, timestamp) of the body at view[start:end]."""
    if end - start < BODY_HEADER.size:
        return False, 0, 0, 0
    crc, pid, seq, ts = BODY_HEADER.unpack_from(view, start)
    return zlib.crc32(view[start + 4 : end]) == crc, pid, seq, ts


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: '*' is exactly one word, '#' is zero or more words."""
    pw = pattern.split(".")
    kw = key.split(".")

    def match(i: int, j: int) -> bool:
        if i == len(pw):
            return j == len(kw)
        if pw[i] == "#":
            return any(match(i + 1, jj) for jj in range(j, len(kw) + 1))
        if j == len(kw):
            return False
        return (pw[i] == "*" or pw[i] == kw[j]) and match(i + 1, j + 1)

    return match(0, 0)


def client_properties() -> dict[str, object]:
    return {
        "product": "warrenmq-benchmarks",
        "platform": "Python asyncio",
        "capabilities": {
            "publisher_confirms": True,
            "basic.nack": True,
            "authentication_failure_close": True,  # a refused login says why
        },
    }


def start_ok(user: str, password: str) -> commands.Connection.StartOk:
    return commands.Connection.StartOk(
        client_properties=client_properties(),  # type: ignore[arg-type]
        mechanism="PLAIN",
        response=f"\0{user}\0{password}",
    )
