"""Checks RabbitMQ applies to a publish's properties and a consumer's arguments (406).

Owns the rules, not the decoding: ``check_properties`` runs only when the property flags
say an expiration, a delivery mode or headers naming CC/BCC are present (one byte test
on the hot path), and answers what RabbitMQ 3.10.8 answers, measured with raw frames:
``expiration`` must be an integer string (optional sign) between 0 and 315360000000 ms
(ten years), ``delivery_mode`` 1 or 2, ``CC``/``BCC`` headers arrays. Consumer
arguments: ``x-priority`` must be an integer. Must not: decode anything when the flags
say there is nothing to check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from warrenmq.errors import PreconditionFailed
from warrenmq.protocol.properties import get_property

#: In the high byte of the property flags: expiration (bit 8), delivery_mode (bit 12),
#: headers (bit 13).
EXPIRATION_BIT = 0x01
DELIVERY_MODE_BIT = 0x10
HEADERS_BIT = 0x20
CHECKED_BITS = EXPIRATION_BIT | DELIVERY_MODE_BIT | HEADERS_BIT
#: RabbitMQ's largest per-message expiration (?MAX_EXPIRY_TIMER): ten years in ms.
MAX_EXPIRATION_MS = 315_360_000_000
_INTEGER = re.compile(r"[+-]?[0-9]+")


def check_properties(props: bytes) -> None:
    """406 PRECONDITION_FAILED for properties RabbitMQ refuses; ``props`` has its flags."""
    high = props[0]
    if high & EXPIRATION_BIT:
        check_expiration(get_property(props, "expiration"))
    if high & DELIVERY_MODE_BIT:
        mode = get_property(props, "delivery_mode")
        if mode not in (1, 2):
            raise PreconditionFailed(f"invalid message: {{delivery_mode_unknown,{mode}}}")
    if high & HEADERS_BIT and (b"\x02CC" in props or b"\x03BCC" in props):
        headers = get_property(props, "headers") or {}
        for key in ("CC", "BCC"):
            if key in headers and not isinstance(headers[key], list):
                raise PreconditionFailed(
                    f'invalid message: {{unacceptable_type_in_header,"{key}",'
                    f"{_type_name(headers[key])}}}")


def check_expiration(value: str) -> None:
    if not _INTEGER.fullmatch(value):
        reason = "no_integer"
        match = re.match(r"[+-]?[0-9]+", value)
        if match:
            reason = f'{{leftover_string,"{value[match.end():]}"}}'
        raise PreconditionFailed(f"invalid expiration '{value}': {reason}")
    number = int(value)
    if number < 0:
        raise PreconditionFailed(f"invalid expiration '{value}': {{value_negative,{number}}}")
    if number > MAX_EXPIRATION_MS:
        raise PreconditionFailed(f"invalid expiration '{value}': {{value_too_large,{number}}}")


def check_consumer_arguments(arguments: Mapping[str, Any], where: str) -> None:
    """basic.consume's arguments, as RabbitMQ checks them (406, class 60 method 20)."""
    if "x-priority" in arguments:
        value = arguments["x-priority"]
        if isinstance(value, bool) or not isinstance(value, int):
            raise PreconditionFailed(
                f"invalid arg 'x-priority' for {where}: "
                f'"expected integer, got {_type_name(value)}"')
    # x-stream-offset on a non-stream queue: 406 in methods/basic.py (with the streams)


def _type_name(value: Any) -> str:
    """The AMQP field type of a decoded value, in RabbitMQ's words."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str | bytes):
        return "longstr"
    if isinstance(value, bytearray):
        return "binary"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "array"
    return type(value).__name__
