"""AMQP 0-9-1 field values: short strings, long strings and field tables (spec §4.2.5).

Decoding works over ``bytes`` with an explicit offset and raises ``FieldError`` for any
malformed or truncated input, never ``struct.error`` or ``IndexError``. Type tags follow
RabbitMQ's table grammar (the "spec differences" errata), which clients are written against:
``t b B s u I i l f d D S x A T F V``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from mypy_extensions import mypyc_attr

_U8: Final = struct.Struct(">B")
_I8: Final = struct.Struct(">b")
_U16: Final = struct.Struct(">H")
_I16: Final = struct.Struct(">h")
_U32: Final = struct.Struct(">I")
_I32: Final = struct.Struct(">i")
_I64: Final = struct.Struct(">q")
_U64: Final = struct.Struct(">Q")
_F32: Final = struct.Struct(">f")
_F64: Final = struct.Struct(">d")

FieldTable = dict[str, Any]

#: Tables/arrays nested deeper than this are refused (RabbitMQ has no limit). Decoders of
#: nested tables are recursive, ours and the Python clients' (pika, pamqp/aiormq: two
#: frames a level, under Python's default recursion limit of 1000): 256 levels keeps every
#: such consumer able to decode what we pass on, and a crafted frame nesting thousands of
#: levels in a few KiB gets a clean 502 instead of a RecursionError.
MAX_NESTING: Final = 256

#: Bytes that are not UTF-8 in table keys, message properties and basic.publish's
#: exchange and routing key pass through as RabbitMQ passes them: decoded with this
#: error handler (each bad byte becomes a lone surrogate) and encoded back to the same
#: bytes.
RAW_UTF8: Final = "surrogateescape"


class FieldError(ValueError):
    """Malformed field data; the server answers it with 502 SYNTAX_ERROR."""


class MalformedUtf8(FieldError):
    """A method's short string argument is not UTF-8: RabbitMQ answers 501 FRAME_ERROR
    "Malformed UTF-8 in shortstr" (names, consumer tags, reply texts)."""


def decode_shortstr(data: bytes, offset: int) -> tuple[str, int]:
    """A method argument's short string; invalid UTF-8 raises ``MalformedUtf8``."""
    if offset >= len(data):
        raise FieldError("truncated short string")
    length = data[offset]
    end = offset + 1 + length
    if end > len(data):
        raise FieldError("truncated short string")
    try:
        return data[offset + 1 : end].decode("utf-8"), end
    except UnicodeDecodeError as exc:
        raise MalformedUtf8("Malformed UTF-8 in shortstr") from exc


def decode_shortstr_lenient(data: bytes, offset: int) -> tuple[str, int]:
    """A short string that passes through whatever its bytes (table keys, properties)."""
    if offset >= len(data):
        raise FieldError("truncated short string")
    end = offset + 1 + data[offset]
    if end > len(data):
        raise FieldError("truncated short string")
    return data[offset + 1 : end].decode("utf-8", RAW_UTF8), end


def decode_longstr_bytes(data: bytes, offset: int) -> tuple[bytes, int]:
    if offset + 4 > len(data):
        raise FieldError("truncated long string")
    (length,) = _U32.unpack_from(data, offset)
    end = offset + 4 + length
    if end > len(data):
        raise FieldError("truncated long string")
    return bytes(data[offset + 4 : end]), end


def _longstr_value(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _fixed(fmt: struct.Struct, data: bytes, offset: int) -> tuple[Any, int]:
    end = offset + fmt.size
    if end > len(data):
        raise FieldError("truncated field value")
    return fmt.unpack_from(data, offset)[0], end


def _decode_value(data: bytes, offset: int, depth: int = 0) -> tuple[Any, int]:
    if offset >= len(data):
        raise FieldError("truncated field value")
    tag = data[offset]
    offset += 1
    fixed = _FIXED_DECODERS.get(tag)
    if fixed is not None:
        return _fixed(fixed, data, offset)
    if tag == 0x74:  # t
        value, offset = _fixed(_U8, data, offset)
        return value != 0, offset
    if tag == 0x53:  # S
        raw, offset = decode_longstr_bytes(data, offset)
        return _longstr_value(raw), offset
    if tag == 0x78:  # x
        raw, offset = decode_longstr_bytes(data, offset)
        return bytearray(raw), offset
    if tag == 0x46:  # F
        return decode_table(data, offset, depth + 1)
    if tag == 0x41:  # A
        return _decode_array(data, offset, depth + 1)
    if tag == 0x54:  # T
        seconds, offset = _fixed(_U64, data, offset)
        try:
            return datetime.fromtimestamp(seconds, tz=UTC), offset
        except (OverflowError, OSError, ValueError):
            # past year 9999: kept as a number, encoded back as a timestamp (RabbitMQ
            # accepts any 64-bit value)
            return _make_timestamp(seconds), offset
    if tag == 0x44:  # D
        scale, offset = _fixed(_U8, data, offset)
        unscaled, offset = _fixed(_I32, data, offset)
        return Decimal(unscaled).scaleb(-scale), offset
    if tag == 0x56:  # V
        return None, offset
    raise FieldError(f"unknown field type {chr(tag)!r}")


_FIXED_DECODERS: Final[dict[int, struct.Struct]] = {
    0x62: _I8,  # b
    0x42: _U8,  # B
    0x73: _I16,  # s
    0x75: _U16,  # u
    0x49: _I32,  # I
    0x69: _U32,  # i
    0x6C: _I64,  # l
    0x66: _F32,  # f
    0x64: _F64,  # d
}


def _decode_array(data: bytes, offset: int, depth: int) -> tuple[list[Any], int]:
    if depth > MAX_NESTING:
        raise FieldError(f"field tables and arrays nested deeper than {MAX_NESTING} levels")
    size, offset = _fixed(_U32, data, offset)
    end = offset + size
    if end > len(data):
        raise FieldError("truncated field array")
    items: list[Any] = []
    while offset < end:
        value, offset = _decode_value(data, offset, depth)
        items.append(value)
    if offset != end:
        raise FieldError("field array overruns its length")
    return items, end


def decode_table(data: bytes, offset: int, depth: int = 0) -> tuple[FieldTable, int]:
    """Decode a field table starting at ``offset``; returns (table, next offset)."""
    if depth > MAX_NESTING:
        raise FieldError(f"field tables and arrays nested deeper than {MAX_NESTING} levels")
    size, offset = _fixed(_U32, data, offset)
    end = offset + size
    if end > len(data):
        raise FieldError("truncated field table")
    table: FieldTable = {}
    while offset < end:
        key, offset = decode_shortstr_lenient(data, offset)
        value, offset = _decode_value(data, offset, depth)
        table[key] = value
    if offset != end:
        raise FieldError("field table overruns its length")
    return table, end


def encode_shortstr(value: str) -> bytes:
    raw = value.encode("utf-8", RAW_UTF8)
    if len(raw) > 255:
        raise FieldError("short string longer than 255 bytes")
    return _U8.pack(len(raw)) + raw


def encode_longstr(value: str | bytes) -> bytes:
    raw = value.encode("utf-8", RAW_UTF8) if isinstance(value, str) else bytes(value)
    return _U32.pack(len(raw)) + raw


@mypyc_attr(native_class=False)
class Long(int):
    """An integer always encoded as a signed 64-bit 'l' (RabbitMQ's x-death ``count``)."""


@mypyc_attr(native_class=False)
class Timestamp(int):
    """A 'T' value past what ``datetime`` holds (after year 9999): seconds, re-encoded
    as a timestamp."""


#: Called through an object-typed reference: compiled code would otherwise treat a
#: ``Timestamp(...)`` as a plain machine int and drop the subclass (and its 'T' tag).
_make_timestamp: Callable[[int], object] = Timestamp


def _encode_int(value: int, long: bool, timestamp: bool = False) -> bytes:
    # ``long``/``timestamp`` are decided by the caller while the value is still an
    # object: compiled code holds an ``int`` argument as a plain machine int, which
    # drops the subclass
    if timestamp:
        return b"T" + _U64.pack(value)
    if -(2**31) <= value < 2**31 and not long:
        return b"I" + _I32.pack(value)
    if -(2**63) <= value < 2**63:
        return b"l" + _I64.pack(value)
    raise FieldError("integer out of range for a field table")


def _encode_decimal(value: Decimal) -> bytes:
    _sign, _digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise FieldError("decimal must be finite")
    scale = max(0, -exponent)
    unscaled = int(value.scaleb(scale))
    if scale > 255 or not -(2**31) <= unscaled < 2**31:
        raise FieldError("decimal out of range for a field table")
    return b"D" + _U8.pack(scale) + _I32.pack(unscaled)


def encode_value(value: Any) -> bytes:
    """Encode one typed field value, tag included."""
    # the subclass tags are read while ``value`` is an object: after isinstance(int)
    # compiled code holds a small value as a machine int and type() says int
    kind = type(value)
    if value is None:
        return b"V"
    if isinstance(value, bool):
        return b"t" + _U8.pack(1 if value else 0)
    if isinstance(value, int):
        return _encode_int(value, kind is Long, kind is Timestamp)
    if isinstance(value, float):
        return b"d" + _F64.pack(value)
    if isinstance(value, str | bytes):
        return b"S" + encode_longstr(value)
    if isinstance(value, bytearray):
        return b"x" + encode_longstr(bytes(value))
    if isinstance(value, Decimal):
        return _encode_decimal(value)
    if isinstance(value, datetime):
        seconds = int(value.timestamp())
        if not 0 <= seconds < 2**64:
            raise FieldError("timestamp out of range for a field table")
        return b"T" + _U64.pack(seconds)
    if isinstance(value, Mapping):
        return b"F" + encode_table(value)
    if isinstance(value, Sequence):
        body = b"".join(encode_value(item) for item in value)
        return b"A" + _U32.pack(len(body)) + body
    raise FieldError(f"cannot encode {type(value).__name__} in a field table")


def encode_table(table: Mapping[str, Any] | None) -> bytes:
    """Encode a field table with its 32-bit length prefix."""
    if not table:
        return b"\x00\x00\x00\x00"
    body = b"".join(encode_shortstr(key) + encode_value(value) for key, value in table.items())
    return _U32.pack(len(body)) + body


# --------------------------------------------------------------------------- checking
# Validation without decoding: the publish hot path must reject a malformed table (a
# consumer's client would choke on it) without paying to build Python values it never
# uses. Walking tags and lengths costs a fraction of decode_table.

_CHECK_SIZES: Final = {
    0x74: 1, 0x62: 1, 0x42: 1, 0x73: 2, 0x75: 2, 0x49: 4, 0x69: 4, 0x6C: 8,
    0x66: 4, 0x64: 8, 0x54: 8, 0x44: 5, 0x56: 0,
}
_LENGTH: Final = _U32.unpack_from


def _check_value(data: bytes, offset: int, end: int, depth: int) -> int:
    if offset >= end:
        raise FieldError("truncated field value")
    tag = data[offset]
    offset += 1
    size = _CHECK_SIZES.get(tag)
    if size is not None:
        offset += size
    elif tag == 0x53 or tag == 0x78:  # S, x
        if offset + 4 > end:
            raise FieldError("truncated long string")
        offset += 4 + int(_LENGTH(data, offset)[0])
    elif tag == 0x46 or tag == 0x41:  # F, A
        offset = _check_nested(tag, data, offset, end, depth)
    else:
        raise FieldError(f"unknown field type {chr(tag)!r}")
    if offset > end:
        raise FieldError("truncated field value")
    return offset


def _check_nested(tag: int, data: bytes, offset: int, end: int, depth: int) -> int:
    if depth >= MAX_NESTING:
        raise FieldError(f"field tables and arrays nested deeper than {MAX_NESTING} levels")
    if offset + 4 > end:
        raise FieldError("truncated field table")
    inner_end = offset + 4 + int(_LENGTH(data, offset)[0])
    if inner_end > end:
        raise FieldError("truncated field table")
    if tag == 0x46:
        check_table_body(data, offset + 4, inner_end, depth + 1)
        return inner_end
    pos = offset + 4
    while pos < inner_end:
        pos = _check_value(data, pos, inner_end, depth + 1)
    if pos != inner_end:
        raise FieldError("field array overruns its length")
    return inner_end


def check_table_body(data: bytes, offset: int, end: int, depth: int = 0) -> None:
    """Check the entries of a field table occupying ``data[offset:end]``."""
    while offset < end:
        key_end = offset + 1 + data[offset]  # keys pass through unchecked, as in RabbitMQ
        if key_end > end:
            raise FieldError("truncated short string")
        offset = _check_value(data, key_end, end, depth)
    if offset != end:
        raise FieldError("field table overruns its length")


def table_entries(data: bytes, offset: int, end: int) -> list[tuple[str, bytes]]:
    """The entries of a field table body as (key, raw entry bytes incl. the key).

    Lets a caller replace a few entries and keep every other one byte for byte (their
    integer widths and string types are not normalised by a decode/encode round trip).
    """
    entries: list[tuple[str, bytes]] = []
    while offset < end:
        key, value_start = decode_shortstr_lenient(data, offset)
        stop = _check_value(data, value_start, end, 0)
        entries.append((key, bytes(data[offset:stop])))
        offset = stop
    if offset != end:
        raise FieldError("field table overruns its length")
    return entries
