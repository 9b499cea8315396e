"""Basic-class content properties (spec §1.8, "basic" properties) over raw bytes.

The broker keeps a message's properties exactly as the publisher encoded them and writes
them back unchanged on delivery (RabbitMQ's ``properties_bin``). These helpers read single
properties out of those bytes on demand — the delivery mode, the headers table for a
headers exchange — without decoding the rest, and encode a full property set for tests
and for messages the broker creates itself.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, Final

from warrenmq.protocol.fields import (
    RAW_UTF8,
    FieldError,
    check_table_body,
    decode_shortstr_lenient,
    decode_table,
    encode_shortstr,
    encode_table,
    encode_value,
    table_entries,
)

# (name, kind) in flag order: bit 15 is the first property.
PROPERTIES: Final[tuple[tuple[str, str], ...]] = (
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
_FLAG: Final = {name: 1 << (15 - i) for i, (name, _) in enumerate(PROPERTIES)}
_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")


def _skip(kind: str, data: bytes, offset: int) -> int:
    if kind == "shortstr":
        return offset + 1 + data[offset]
    if kind == "table":
        return offset + 4 + int(_U32.unpack_from(data, offset)[0])
    if kind == "octet":
        return offset + 1
    return offset + 8


def _read(kind: str, data: bytes, offset: int) -> tuple[Any, int]:
    if kind == "shortstr":
        return decode_shortstr_lenient(data, offset)
    if kind == "table":
        return decode_table(data, offset)
    if kind == "octet":
        return data[offset], offset + 1
    return int(_U64.unpack_from(data, offset)[0]), offset + 8


_SHORTSTR, _TABLE, _OCTET, _LONGLONG = 0, 1, 2, 3
_KIND_CODE: Final = {"shortstr": _SHORTSTR, "table": _TABLE, "octet": _OCTET, "longlong": _LONGLONG}
_CHECKS: Final = tuple((_FLAG[name], _KIND_CODE[kind]) for name, kind in PROPERTIES)


def validate(raw: bytes) -> None:
    """Check a property list is well formed without decoding it; raises FieldError.

    Flags, every length and every table entry's type tag are checked (a consumer's client
    must be able to parse what we pass through), but no Python values are built: this
    runs on every publish.
    """
    try:
        _validate(raw)
    except (IndexError, struct.error) as exc:
        raise FieldError("truncated content properties") from exc


def _validate(raw: bytes) -> None:
    end = len(raw)
    if end < 2:
        raise FieldError("content properties shorter than their flags")
    flags = (raw[0] << 8) | raw[1]
    if flags & 0x0003:
        raise FieldError("property flag continuation or bit 1 set; the basic class uses neither")
    offset = 2
    for flag, kind in _CHECKS:
        if not flags & flag:
            continue
        if kind == _SHORTSTR:
            stop = offset + 1 + raw[offset]  # any bytes: passed through as RabbitMQ does
            if stop > end:
                raise FieldError("truncated short string property")
            offset = stop
        elif kind == _TABLE:
            stop = offset + 4 + int(_U32.unpack_from(raw, offset)[0])
            if stop > end:
                raise FieldError("truncated headers table")
            check_table_body(raw, offset + 4, stop)
            offset = stop
        else:
            offset += 1 if kind == _OCTET else 8
    if offset != end:
        raise FieldError("content properties have trailing bytes or are truncated")


def get_property(raw: bytes, name: str) -> Any:
    """One property's value, or None when absent; skips over the ones before it."""
    if len(raw) < 2:
        return None
    (flags,) = _U16.unpack_from(raw, 0)
    if not flags & _FLAG[name]:
        return None
    offset = 2
    for prop, kind in PROPERTIES:
        if prop == name:
            return _read(kind, raw, offset)[0]
        if flags & _FLAG[prop]:
            offset = _skip(kind, raw, offset)
    return None


def decode_properties(raw: bytes) -> dict[str, Any]:
    """Every present property, by name; FieldError for anything malformed."""
    try:
        return _decode_properties(raw)
    except (IndexError, struct.error) as exc:
        raise FieldError("truncated content properties") from exc


def _decode_properties(raw: bytes) -> dict[str, Any]:
    if len(raw) < 2:
        raise FieldError("content properties shorter than their flags")
    (flags,) = _U16.unpack_from(raw, 0)
    if flags & 0x0001:
        raise FieldError("property flag continuation is not used by the basic class")
    if flags & 0x0002:
        raise FieldError("unknown property flag bit 1")
    offset = 2
    out: dict[str, Any] = {}
    for name, kind in PROPERTIES:
        if flags & _FLAG[name]:
            out[name], offset = _read(kind, raw, offset)
    if offset != len(raw):
        raise FieldError("content properties have trailing bytes")
    return out


def _segments(raw: bytes) -> dict[str, tuple[int, int]]:
    """Where each present property's bytes are: name -> (start, stop)."""
    (flags,) = _U16.unpack_from(raw, 0)
    offset = 2
    out: dict[str, tuple[int, int]] = {}
    for name, kind in PROPERTIES:
        if flags & _FLAG[name]:
            stop = _skip(kind, raw, offset)
            out[name] = (offset, stop)
            offset = stop
    return out


def rewrite_properties(
    raw: bytes,
    *,
    set_headers: Mapping[str, Any],
    drop: frozenset[str] = frozenset(),
    sort_headers: bool = False,
) -> bytes:
    """Return ``raw`` with headers entries replaced/added and properties dropped.

    Every other property, and every other header entry, keeps its exact bytes. Used on
    the cold path that creates new messages from old ones (dead-lettering, delivery
    counts); the input must already be valid (it was checked on publish). With
    ``sort_headers`` the headers table comes out sorted by key (byte order), as RabbitMQ
    writes it after dead-lettering; otherwise new entries come first.
    """
    segments = _segments(raw)
    parts: list[bytes] = []
    flags = 0
    for name, _kind in PROPERTIES:
        if name == "headers":
            old: list[tuple[str, bytes]] = []
            if name in segments:
                start, stop = segments[name]
                old = table_entries(raw, start + 4, stop)
            entries = [(k, encode_shortstr(k) + encode_value(v)) for k, v in set_headers.items()]
            entries += [(key, entry) for key, entry in old if key not in set_headers]
            if sort_headers:
                entries.sort(key=lambda item: item[0].encode("utf-8", RAW_UTF8))
            body = b"".join(entry for _key, entry in entries)
            if body or name in segments:
                flags |= _FLAG[name]
                parts.append(_U32.pack(len(body)) + body)
        elif name in segments and name not in drop:
            flags |= _FLAG[name]
            start, stop = segments[name]
            parts.append(raw[start:stop])
    return _U16.pack(flags) + b"".join(parts)


def encode_properties(props: Mapping[str, Any]) -> bytes:
    """Encode properties given by name (None values are left out)."""
    flags = 0
    parts: list[bytes] = []
    for name, kind in PROPERTIES:
        value = props.get(name)
        if value is None:
            continue
        flags |= _FLAG[name]
        if kind == "shortstr":
            parts.append(encode_shortstr(value))
        elif kind == "table":
            parts.append(encode_table(value))
        elif kind == "octet":
            parts.append(bytes((value,)))
        else:
            parts.append(_U64.pack(value))
    unknown = set(props) - set(_FLAG)
    if unknown:
        raise FieldError(f"unknown properties {sorted(unknown)}")
    return _U16.pack(flags) + b"".join(parts)
