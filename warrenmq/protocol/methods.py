"""AMQP 0-9-1 method codec.

Cold path: one class per method generated from ``spec.METHODS``, with a table-driven
decoder that validates as it goes (truncation, trailing bytes and bad UTF-8 all raise
``SyntaxError_`` → 502) and a matching encoder. pamqp is the test oracle for both.

Hot path (design habit 2): basic.publish/ack/nack/reject are decoded by hand. The generic
decoder costs several microseconds per method; these cost about one, and the publisher's
exchange/routing-key bytes are sliced straight out of basic.publish so a delivery
re-encodes neither. The matching hand-written encoders are in ``content.py``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, ClassVar

from warrenmq.errors import CommandInvalid, FrameError, SyntaxError_
from warrenmq.protocol.fields import (
    RAW_UTF8,
    FieldError,
    MalformedUtf8,
    decode_longstr_bytes,
    decode_shortstr,
    decode_table,
    encode_longstr,
    encode_shortstr,
    encode_table,
)
from warrenmq.protocol.frames import FRAME_METHOD, encode_frame
from warrenmq.protocol.spec import CONTENT_METHODS, METHODS

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_INDEX = struct.Struct(">HH")


class Method:
    """Base of the generated method classes; fields are ``__slots__``."""

    __slots__ = ()
    CLASS_ID: ClassVar[int] = 0
    METHOD_ID: ClassVar[int] = 0
    INDEX: ClassVar[int] = 0
    NAME: ClassVar[str] = ""
    FIELDS: ClassVar[tuple[str, ...]] = ()
    TYPES: ClassVar[tuple[str, ...]] = ()
    HAS_CONTENT: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(self.FIELDS):
            raise TypeError(f"{self.NAME} takes {len(self.FIELDS)} fields")
        for name, kind, value in zip(self.FIELDS, self.TYPES, args, strict=False):
            object.__setattr__(self, name, value)
            del kind
        for name, kind in zip(self.FIELDS[len(args) :], self.TYPES[len(args) :], strict=True):
            object.__setattr__(self, name, kwargs.pop(name, _DEFAULTS[kind]()))
        if kwargs:
            raise TypeError(f"{self.NAME} has no field(s) {sorted(kwargs)}")

    def __getattr__(self, name: str) -> Any:  # for type checkers; slots hold real fields
        raise AttributeError(f"{type(self).__name__} has no field {name!r}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self.FIELDS)

    def __hash__(self) -> int:
        return hash(self.INDEX)

    def __repr__(self) -> str:
        args = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.FIELDS)
        return f"{self.NAME}({args})"


_DEFAULTS: dict[str, Any] = {
    "octet": int,
    "short": int,
    "long": int,
    "longlong": int,
    "shortstr": str,
    "longstr": bytes,
    "bit": bool,
    "table": dict,
}

BY_INDEX: dict[int, type[Method]] = {}
BY_NAME: dict[str, type[Method]] = {}


def _define(class_id: int, method_id: int, name: str, spec: str) -> type[Method]:
    pairs = [item.split(":") for item in spec.split()]
    attrs: dict[str, Any] = {
        "__slots__": tuple(p[0] for p in pairs),
        "CLASS_ID": class_id,
        "METHOD_ID": method_id,
        "INDEX": (class_id << 16) | method_id,
        "NAME": name,
        "FIELDS": tuple(p[0] for p in pairs),
        "TYPES": tuple(p[1] for p in pairs),
        "HAS_CONTENT": (class_id, method_id) in CONTENT_METHODS,
    }
    cls: type[Method] = type(name, (Method,), attrs)
    BY_INDEX[cls.INDEX] = cls
    BY_NAME[name] = cls
    return cls


for _spec in METHODS:
    _define(*_spec)


def method_class(name: str) -> type[Method]:
    return BY_NAME[name]


# --------------------------------------------------------------------------- decoding


def _decode_fixed(fmt: struct.Struct, data: bytes, offset: int) -> tuple[int, int]:
    end = offset + fmt.size
    if end > len(data):
        raise FieldError("truncated method arguments")
    return int(fmt.unpack_from(data, offset)[0]), end


def _decode_field(kind: str, data: bytes, offset: int) -> tuple[Any, int]:
    if kind == "shortstr":
        return decode_shortstr(data, offset)
    if kind == "table":
        return decode_table(data, offset)
    if kind == "longstr":
        return decode_longstr_bytes(data, offset)
    return _decode_fixed(_FIXED[kind], data, offset)


_FIXED = {"octet": _U8, "short": _U16, "long": _U32, "longlong": _U64}


def _decode_generic(cls: type[Method], payload: bytes) -> Method:
    method = cls.__new__(cls)
    offset = 4
    bit_octet = -1
    bit_index = 8
    for name, kind in zip(cls.FIELDS, cls.TYPES, strict=True):
        if kind == "bit":
            if bit_index == 8:
                bit_octet, offset = _decode_fixed(_U8, payload, offset)
                bit_index = 0
            value: Any = bool(bit_octet & (1 << bit_index))
            bit_index += 1
        else:
            bit_index = 8
            value, offset = _decode_field(kind, payload, offset)
        object.__setattr__(method, name, value)
    if offset != len(payload):
        raise FieldError(f"{len(payload) - offset} unexpected trailing byte(s)")
    return method


def parse_publish(payload: bytes) -> tuple[str, str, int, bytes]:
    """basic.publish without a method object: (exchange, routing key, flag bits, route).

    ``route`` is the exchange and routing-key short strings verbatim, for deliveries.
    Bit 0 of the flags is mandatory, bit 1 immediate. Raises SyntaxError_ (502).
    """
    try:
        # ticket(2) exchange(shortstr) routing_key(shortstr) bits(1)
        ex_end = 7 + payload[6]
        rk_end = ex_end + 1 + payload[ex_end]
        if rk_end + 1 != len(payload):
            raise FieldError("malformed basic.publish")
        return (
            payload[7:ex_end].decode("utf-8", RAW_UTF8),  # as RabbitMQ: unchecked
            payload[ex_end + 1 : rk_end].decode("utf-8", RAW_UTF8),
            payload[rk_end],
            payload[6:rk_end],
        )
    except (FieldError, IndexError, UnicodeDecodeError) as exc:
        raise SyntaxError_(f"cannot decode method 60.40: {exc}", class_id=60,
                           method_id=40) from exc


def _decode_publish(payload: bytes) -> Method:
    exchange, routing_key, bits, _ = parse_publish(payload)
    method = _PUBLISH.__new__(_PUBLISH)
    set_ = object.__setattr__
    set_(method, "ticket", 0)
    set_(method, "exchange", exchange)
    set_(method, "routing_key", routing_key)
    set_(method, "mandatory", bool(bits & 1))
    set_(method, "immediate", bool(bits & 2))
    return method


_TAG_BITS = struct.Struct(">QB")


def _decode_tag_bits(cls: type[Method], names: tuple[str, ...], payload: bytes) -> Method:
    if len(payload) != 13:
        raise FieldError(f"malformed {cls.NAME}")
    tag, bits = _TAG_BITS.unpack_from(payload, 4)
    method = cls.__new__(cls)
    object.__setattr__(method, "delivery_tag", tag)
    for i, name in enumerate(names):
        object.__setattr__(method, name, bool(bits & (1 << i)))
    return method


_PUBLISH = BY_NAME["BasicPublish"]
_ACK = BY_NAME["BasicAck"]
_NACK = BY_NAME["BasicNack"]
_REJECT = BY_NAME["BasicReject"]
PUBLISH_INDEX = _PUBLISH.INDEX
ACK_INDEX = _ACK.INDEX

def _decode_ack(payload: bytes) -> Method:
    return _decode_tag_bits(_ACK, ("multiple",), payload)


def _decode_nack(payload: bytes) -> Method:
    return _decode_tag_bits(_NACK, ("multiple", "requeue"), payload)


def _decode_reject(payload: bytes) -> Method:
    return _decode_tag_bits(_REJECT, ("requeue",), payload)


_HOT_DECODERS: dict[int, Callable[[bytes], Method]] = {
    _PUBLISH.INDEX: _decode_publish,
    _ACK.INDEX: _decode_ack,
    _NACK.INDEX: _decode_nack,
    _REJECT.INDEX: _decode_reject,
}


def decode_method(payload: bytes) -> Method:
    """Decode a method frame's payload. Unknown methods raise 503, malformed ones 502."""
    if len(payload) < 4:
        raise SyntaxError_("method frame shorter than its class and method ids")
    class_id, method_id = _INDEX.unpack_from(payload, 0)
    index = (class_id << 16) | method_id
    try:
        hot = _HOT_DECODERS.get(index)
        if hot is not None:
            return hot(payload)
        cls = BY_INDEX.get(index)
        if cls is None:
            raise CommandInvalid(
                f"unknown method {class_id}.{method_id}", class_id=class_id, method_id=method_id
            )
        return _decode_generic(cls, payload)
    except MalformedUtf8 as exc:  # RabbitMQ: 501 "Malformed UTF-8 in shortstr"
        raise FrameError(str(exc), class_id=class_id, method_id=method_id) from exc
    except (FieldError, IndexError, UnicodeDecodeError, struct.error) as exc:
        raise SyntaxError_(
            f"cannot decode method {class_id}.{method_id}: {exc}",
            class_id=class_id,
            method_id=method_id,
        ) from exc



# --------------------------------------------------------------------------- encoding


def _encode_field(kind: str, value: Any) -> bytes:
    if kind == "shortstr":
        return encode_shortstr(value)
    if kind == "table":
        return encode_table(value)
    if kind == "longstr":
        return encode_longstr(value)
    return _FIXED[kind].pack(value)


def encode_method(method: Method) -> bytes:
    """Encode a method's payload (class id, method id and arguments)."""
    parts = [_INDEX.pack(method.CLASS_ID, method.METHOD_ID)]
    bit_octet = 0
    bit_index = -1
    for name, kind in zip(method.FIELDS, method.TYPES, strict=True):
        value = getattr(method, name)
        if kind == "bit":
            if bit_index == -1 or bit_index == 8:
                if bit_index != -1:
                    parts.append(_U8.pack(bit_octet))
                bit_octet, bit_index = 0, 0
            if value:
                bit_octet |= 1 << bit_index
            bit_index += 1
            continue
        if bit_index != -1:
            parts.append(_U8.pack(bit_octet))
            bit_index = -1
        parts.append(_encode_field(kind, value))
    if bit_index != -1:
        parts.append(_U8.pack(bit_octet))
    return b"".join(parts)


def method_frame(channel: int, method: Method) -> bytes:
    return encode_frame(FRAME_METHOD, channel, encode_method(method))
