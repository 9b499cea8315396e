"""Binary record format of the message log.

Every record is framed as::

    MAGIC b"WMQr" (4) | type (u8) | payload length (u32) | CRC32 (u32) | payload

All integers are big-endian. The CRC covers type, length and payload, so any single
corrupted byte after the magic is detected, and the magic lets a scanner find the next
record after damage (see ``segment.scan``). Payloads::

    PUBLISH     msg_id u64 | n u16 | n * queue | exchange s8 | routing_key s8
                | published u64 | properties u32+bytes | body (the rest of the payload)
    PUBLISH_DELIVERED  the same payload; also a DELIVERED for each of its queues
    ACK_MANY    queue | n * msg_id u64 (n from the payload length)
    ACK         queue | msg_id u64
    DELIVERED   queue | msg_id u64
    FAILURES    queue | msg_id u64 | count u32
    DROP_QUEUE  queue
    DEDUP_KEY   entity | expires_ms u64 | key (the rest)   (dedup.log only)
    DEDUP_CLEAR entity                                     (dedup.log only)

where ``published`` is the publish time in wall-clock milliseconds (so TTLs run on
across a restart), ``queue`` a u16-length UTF-8 queue key ("vhost\\x00queue") and ``s8`` a
u8-length UTF-8 short string (AMQP shortstr). The body goes last, without its own length,
so its position in the file is known from the record's start and size alone; that is
what a ``BodyLocation`` points at. Must not know about files, segments or queues' meaning.
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Sequence
from enum import IntEnum
from typing import Final, NamedTuple

MAGIC: Final = b"WMQr"
HEADER: Final = struct.Struct(">4sBII")
HEADER_SIZE: Final = HEADER.size  # 13
_TYPE_LEN: Final = struct.Struct(">BI")
_CRC: Final = struct.Struct(">I")
_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")
_U64_U16: Final = struct.Struct(">QH")
_U64_U32: Final = struct.Struct(">QI")
MAX_PAYLOAD: Final = 0xFFFF_FFFF
_crc32: Final = zlib.crc32  # a static in compiled code, not a module attribute lookup


class RecordType(IntEnum):
    PUBLISH = 1
    ACK = 2
    DELIVERED = 3
    FAILURES = 4
    DROP_QUEUE = 5
    PUBLISH_DELIVERED = 6  # a PUBLISH already delivered (not acked) in every one of its queues
    ACK_MANY = 7  # ACKs of several messages of one queue (a multiple ack)
    # deduplication keys (storage/dedup_log.py): their own file, never in a segment
    DEDUP_KEY = 20
    DEDUP_CLEAR = 21


RECORD_TYPES: Final = frozenset(int(t) for t in RecordType)
# The types as plain ints, for the encoders and the scanners' loops (recovery,
# compaction): an IntEnum member compares several times slower than an int.
T_PUBLISH: Final = int(RecordType.PUBLISH)
T_ACK: Final = int(RecordType.ACK)
T_DELIVERED: Final = int(RecordType.DELIVERED)
T_FAILURES: Final = int(RecordType.FAILURES)
T_DROP_QUEUE: Final = int(RecordType.DROP_QUEUE)
T_PUBLISH_DELIVERED: Final = int(RecordType.PUBLISH_DELIVERED)
T_ACK_MANY: Final = int(RecordType.ACK_MANY)
T_DEDUP_KEY: Final = int(RecordType.DEDUP_KEY)
T_DEDUP_CLEAR: Final = int(RecordType.DEDUP_CLEAR)


class PublishRecord(NamedTuple):
    msg_id: int
    queues: tuple[str, ...]
    exchange: str
    routing_key: str
    properties: bytes
    published_ms: int
    body_start: int  # absolute offsets in the buffer the record was decoded from
    body_end: int


def _frame(rtype: int, payload_parts: list[bytes]) -> list[bytes]:
    length = 0
    for part in payload_parts:
        length += len(part)
    if length > MAX_PAYLOAD:
        raise ValueError(f"record payload of {length} bytes exceeds the 4 GiB limit")
    type_len = _TYPE_LEN.pack(rtype, length)
    crc = zlib.crc32(type_len)
    for part in payload_parts:
        crc = zlib.crc32(part, crc)
    return [MAGIC + type_len + _CRC.pack(crc), *payload_parts]


def _small(rtype: int, payload: bytes) -> bytes:
    """A whole record with a one-piece payload (ack, delivered, failures, drop).

    Hot-path encoders use ``int.to_bytes`` and ``b"%s" %`` joins rather than ``struct``:
    compiled, both are direct C calls (no method lookup, no argument tuple)."""
    type_len = ((rtype << 32) | len(payload)).to_bytes(5, "big")
    crc = _crc32(payload, _crc32(type_len))
    return b"%s%s%s%s" % (MAGIC, type_len, crc.to_bytes(4, "big"), payload)


# Encoded queue keys and short strings repeat on every record: cached, they cost a dict
# lookup instead of an encode and a pack per record (a hot path: one or more per message).
@functools.lru_cache(maxsize=4096)
def _queue(key: str) -> bytes:
    raw = key.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError(f"queue key of {len(raw)} bytes is too long")
    return _U16.pack(len(raw)) + raw


@functools.lru_cache(maxsize=4096)
def _short(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogateescape")  # a publish's bytes, UTF-8 or not
    if len(raw) > 0xFF:
        raise ValueError(f"short string of {len(raw)} bytes is too long: {text[:40]!r}")
    return bytes((len(raw),)) + raw


def check_publish(
    msg_id: int, queues: Sequence[str], exchange: str, routing_key: str
) -> None:
    """Raise ValueError now for what ``encode_publish`` would refuse later (the store
    encodes a PUBLISH only when its batch is taken). Cached, so cheap on repeats."""
    if not queues:
        raise ValueError("a PUBLISH record needs at least one queue")
    if len(queues) > 0xFFFF:
        raise ValueError("too many queues for one PUBLISH record")
    if not 0 <= msg_id <= 0xFFFF_FFFF_FFFF_FFFF:
        raise ValueError(f"msg_id {msg_id} does not fit in 64 bits")
    for q in queues:
        _queue(q)
    _short(exchange)
    _short(routing_key)


def encode_publish(
    msg_id: int,
    queues: tuple[str, ...] | list[str],
    exchange: str,
    routing_key: str,
    properties: bytes,
    body: bytes,
    delivered: bool = False,
    published_ms: int = 0,
) -> list[bytes]:
    """The record as parts to concatenate; the body is the last part, passed uncopied.
    ``delivered``: a PUBLISH_DELIVERED (the message went out in every queue before it
    was written), which saves a DELIVERED record per queue."""
    check_publish(msg_id, queues, exchange, routing_key)
    prefix, _ = encode_publish_prefix(msg_id, tuple(queues), exchange, routing_key,
                                      properties, body, delivered, published_ms)
    return [prefix[:HEADER_SIZE], prefix[HEADER_SIZE:], body]


def encode_publish_prefix(
    msg_id: int,
    queues: tuple[str, ...],
    exchange: str,
    routing_key: str,
    properties: bytes,
    body: bytes,
    delivered: bool,
    published_ms: int,
) -> tuple[bytes, int]:
    """The whole PUBLISH record but its body, and the record's size: the layout's hot
    path (one per message written), so it builds as few objects as it can. The caller
    has checked what ``encode_publish`` checks."""
    head = b"%s%s%s%s%s%s" % (
        msg_id.to_bytes(8, "big"), len(queues).to_bytes(2, "big"),
        _route(queues, exchange, routing_key), published_ms.to_bytes(8, "big"),
        len(properties).to_bytes(4, "big"), properties,
    )
    length = len(head) + len(body)
    rtype = T_PUBLISH_DELIVERED if delivered else T_PUBLISH
    type_len = ((rtype << 32) | length).to_bytes(5, "big")
    crc = _crc32(body, _crc32(head, _crc32(type_len)))
    return b"%s%s%s%s" % (MAGIC, type_len, crc.to_bytes(4, "big"), head), HEADER_SIZE + length


@functools.lru_cache(maxsize=4096)
def _route(queues: tuple[str, ...], exchange: str, routing_key: str) -> bytes:
    """The queue keys, exchange and routing key of a PUBLISH: they repeat message after
    message, so they are encoded once."""
    return b"".join([_queue(q) for q in queues]) + _short(exchange) + _short(routing_key)




def encode_ack(queue: str, msg_id: int) -> bytes:
    return _small(T_ACK, _queue(queue) + msg_id.to_bytes(8, "big"))


def encode_ack_many(queue: str, msg_ids: Sequence[int]) -> bytes:
    """One record for the ACKs of ``msg_ids`` (at least one) in ``queue``."""
    return _small(T_ACK_MANY, _queue(queue) + struct.pack(f">{len(msg_ids)}Q", *msg_ids))


def decode_ack_many(buf: bytes, start: int, end: int) -> tuple[str, tuple[int, ...]]:
    try:
        queue, pos = _read_queue(buf, start, end)
    except (struct.error, IndexError) as exc:
        raise ValueError(f"malformed ACK_MANY payload: {exc}") from exc
    n, rest = divmod(end - pos, 8)
    if rest or not n:
        raise ValueError("ACK_MANY payload is not a whole number of message ids")
    return queue, struct.unpack_from(f">{n}Q", buf, pos)


def encode_delivered(queue: str, msg_id: int) -> bytes:
    return _small(T_DELIVERED, _queue(queue) + msg_id.to_bytes(8, "big"))


def encode_failures(queue: str, msg_id: int, count: int) -> bytes:
    return _small(T_FAILURES, _queue(queue) + _U64_U32.pack(msg_id, count))


def encode_drop_queue(queue: str) -> bytes:
    return _small(T_DROP_QUEUE, _queue(queue))


# Decoders take the buffer and the payload's [start, end) and raise ValueError on a
# malformed payload (struct.error and IndexError are converted; UnicodeDecodeError already is
# one). The CRC makes this rare: it means a writer bug or a record crafted to collide.


def _read_queue(buf: bytes, pos: int, end: int) -> tuple[str, int]:
    (n,) = _U16.unpack_from(buf, pos)
    pos += 2
    if pos + n > end:
        raise ValueError("queue key overruns the record")
    return buf[pos : pos + n].decode("utf-8"), pos + n


def _read_short(buf: bytes, pos: int, end: int) -> tuple[str, int]:
    n = buf[pos]
    pos += 1
    if pos + n > end:
        raise ValueError("short string overruns the record")
    return buf[pos : pos + n].decode("utf-8", "surrogateescape"), pos + n


def decode_publish(buf: bytes, start: int, end: int) -> PublishRecord:
    msg_id, queues, pos = decode_publish_head(buf, start, end)
    exchange, routing_key, published, properties, body_start = decode_publish_tail(buf, pos, end)
    return PublishRecord(msg_id, tuple(queues), exchange, routing_key, properties, published,
                         body_start, end)


def decode_publish_head(buf: bytes, start: int, end: int) -> tuple[int, list[str], int]:
    """msg_id, queues and where the rest starts: all recovery needs for a message that is
    acked later (the tail is decoded only for survivors, by ``decode_publish_tail``).
    """
    try:
        msg_id, n = _U64_U16.unpack_from(buf, start)
        pos = start + 10
        queues = []
        for _ in range(n):
            (qlen,) = _U16.unpack_from(buf, pos)
            pos += 2 + qlen
            queues.append(buf[pos - qlen : pos].decode("utf-8"))
    except (struct.error, IndexError) as exc:
        raise ValueError(f"malformed PUBLISH payload: {exc}") from exc
    if pos > end or not queues:
        raise ValueError("malformed PUBLISH payload")
    return msg_id, queues, pos


def decode_publish_tail(buf: bytes, pos: int, end: int) -> tuple[str, str, int, bytes, int]:
    """exchange, routing_key, publish time (ms), properties and the body's start offset."""
    try:
        exchange, pos = _read_short(buf, pos, end)
        routing_key, pos = _read_short(buf, pos, end)
        published, plen = _U64_U32.unpack_from(buf, pos)
        pos += 12
    except (struct.error, IndexError) as exc:
        raise ValueError(f"malformed PUBLISH payload: {exc}") from exc
    if pos + plen > end:
        raise ValueError("malformed PUBLISH payload: properties overrun the record")
    return exchange, routing_key, published, buf[pos : pos + plen], pos + plen


def decode_queue_msg(buf: bytes, start: int, end: int) -> tuple[str, int]:
    """ACK and DELIVERED payloads."""
    try:
        queue, pos = _read_queue(buf, start, end)
        (msg_id,) = _U64.unpack_from(buf, pos)
    except (struct.error, IndexError) as exc:
        raise ValueError(f"malformed payload: {exc}") from exc
    if pos + 8 != end:
        raise ValueError("trailing bytes in payload")
    return queue, msg_id


def decode_failures(buf: bytes, start: int, end: int) -> tuple[str, int, int]:
    try:
        queue, pos = _read_queue(buf, start, end)
        msg_id, count = _U64_U32.unpack_from(buf, pos)
    except (struct.error, IndexError) as exc:
        raise ValueError(f"malformed FAILURES payload: {exc}") from exc
    if pos + 12 != end:
        raise ValueError("trailing bytes in FAILURES payload")
    return queue, msg_id, count


def decode_drop_queue(buf: bytes, start: int, end: int) -> str:
    try:
        queue, pos = _read_queue(buf, start, end)
    except (struct.error, IndexError) as exc:
        raise ValueError(f"malformed DROP_QUEUE payload: {exc}") from exc
    if pos != end:
        raise ValueError("trailing bytes in DROP_QUEUE payload")
    return queue
