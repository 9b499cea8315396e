"""A typed walker over AMQP field tables and basic-class property lists, for tests.

pamqp and WarrenMQ's own decoder turn field values into Python objects and so lose the
wire width of every number (a 'b', 'I' and 'l' all become ``int``). Comparing dead-letter
headers with what RabbitMQ writes needs the raw type tags, so this module decodes every
value as ``[tag, value]``, recursively:

- ``["F", {key: [tag, value], ...}]`` for a nested table (dict order = wire order),
- ``["A", [[tag, value], ...]]`` for an array,
- ``["S", "text"]`` for a long string (``["S", {"hex": ...}]`` if it is not UTF-8),
- ``["T", seconds]``, ``["l", n]``, ``["t", true]``, ``["D", [scale, unscaled]]``,
  ``["x", "hex"]``, ``["V", None]`` and so on.

The tags are RabbitMQ's (its 0-9-1 errata table): t b B s u I i l f d D S A T F V x. The
output is JSON-serialisable, so fixtures recorded from RabbitMQ can be stored as is.
Independent of ``warrenmq.protocol`` on purpose: it checks WarrenMQ's encoder.
"""

from __future__ import annotations

import struct
from typing import Any

# tag -> (struct format, python conversion) for fixed-width values.
_FIXED: dict[str, str] = {
    "t": ">B", "b": ">b", "B": ">B", "s": ">h", "u": ">H", "I": ">i", "i": ">I",
    "l": ">q", "f": ">f", "d": ">d", "T": ">Q",
}

# Basic-class properties in flag order (bit 15 first) and their wire kinds.
PROPERTIES: tuple[tuple[str, str], ...] = (
    ("content_type", "shortstr"),
    ("content_encoding", "shortstr"),
    ("headers", "table"),
    ("delivery_mode", "octet"),
    ("priority", "octet"),
    ("correlation_id", "shortstr"),
    ("reply_to", "shortstr"),
    ("expiration", "shortstr"),
    ("message_id", "shortstr"),
    ("timestamp", "longlong"),
    ("type", "shortstr"),
    ("user_id", "shortstr"),
    ("app_id", "shortstr"),
    ("cluster_id", "shortstr"),
)


class TypedTableError(ValueError):
    """Malformed field table or property list."""


def _text(raw: bytes) -> Any:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": raw.hex()}


def _shortstr(data: bytes, offset: int) -> tuple[str, int]:
    size = data[offset]
    stop = offset + 1 + size
    if stop > len(data):
        raise TypedTableError("truncated short string")
    return data[offset + 1:stop].decode("utf-8"), stop


def _value(data: bytes, offset: int) -> tuple[list[Any], int]:
    if offset >= len(data):
        raise TypedTableError("truncated field value")
    tag = chr(data[offset])
    offset += 1
    if tag in _FIXED:
        fmt = struct.Struct(_FIXED[tag])
        if offset + fmt.size > len(data):
            raise TypedTableError(f"truncated {tag!r} value")
        (number,) = fmt.unpack_from(data, offset)
        if tag == "t":
            number = bool(number)
        return [tag, number], offset + fmt.size
    if tag == "D":
        scale = data[offset]
        (unscaled,) = struct.unpack_from(">i", data, offset + 1)
        return [tag, [scale, unscaled]], offset + 5
    if tag == "V":
        return [tag, None], offset
    if tag in "SxAF":
        (size,) = struct.unpack_from(">I", data, offset)
        start, stop = offset + 4, offset + 4 + size
        if stop > len(data):
            raise TypedTableError(f"truncated {tag!r} value")
        if tag == "S":
            return [tag, _text(data[start:stop])], stop
        if tag == "x":
            return [tag, data[start:stop].hex()], stop
        if tag == "A":
            return [tag, walk_array(data, start, stop)], stop
        return [tag, walk_table(data, start, stop)], stop
    raise TypedTableError(f"unknown field type tag {tag!r} at offset {offset - 1}")


def walk_array(data: bytes, offset: int, end: int) -> list[list[Any]]:
    """The typed items of an array body ``data[offset:end]``."""
    items: list[list[Any]] = []
    while offset < end:
        item, offset = _value(data, offset)
        items.append(item)
    if offset != end:
        raise TypedTableError("array overruns its length")
    return items


def walk_table(data: bytes, offset: int, end: int) -> dict[str, list[Any]]:
    """The typed entries of a table body ``data[offset:end]``, in wire order."""
    table: dict[str, list[Any]] = {}
    while offset < end:
        key, offset = _shortstr(data, offset)
        if key in table:
            raise TypedTableError(f"duplicate table key {key!r}")
        table[key], offset = _value(data, offset)
    if offset != end:
        raise TypedTableError("table overruns its length")
    return table


def typed_table(data: bytes) -> dict[str, list[Any]]:
    """A complete length-prefixed field table, typed."""
    (size,) = struct.unpack_from(">I", data, 0)
    if 4 + size != len(data):
        raise TypedTableError("table length does not match its bytes")
    return walk_table(data, 4, 4 + size)


def typed_properties(raw: bytes) -> dict[str, Any]:
    """A basic-class property list (flags + values, as after a content header's body
    size) by name, in flag order; ``headers`` is typed with ``walk_table``, the others
    are plain values (short strings as str, octets and the timestamp as int)."""
    (flags,) = struct.unpack_from(">H", raw, 0)
    if flags & 0x0003:
        raise TypedTableError("property flag bits 0-1 are unused by the basic class")
    offset = 2
    out: dict[str, Any] = {}
    for bit, (name, kind) in enumerate(PROPERTIES):
        if not flags & (1 << (15 - bit)):
            continue
        if kind == "shortstr":
            out[name], offset = _shortstr(raw, offset)
        elif kind == "octet":
            out[name], offset = raw[offset], offset + 1
        elif kind == "longlong":
            (out[name],) = struct.unpack_from(">Q", raw, offset)
            offset += 8
        else:
            (size,) = struct.unpack_from(">I", raw, offset)
            out[name] = walk_table(raw, offset + 4, offset + 4 + size)
            offset += 4 + size
    if offset != len(raw):
        raise TypedTableError("property list has trailing bytes or is truncated")
    return out
