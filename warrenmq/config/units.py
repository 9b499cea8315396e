"""Config units: sizes ("128MiB"), durations in seconds ("60s") and in milliseconds
("30s", "500ms"), parsed and (milliseconds) formatted back.

Owns the unit tables and the whole-number-with-a-unit grammar. Must not know about
sections or YAML; the loader picks a parser by a field's ``Spec.unit``.
"""

from __future__ import annotations

import re
from typing import Final

_NUMBER_UNIT = re.compile(r"\s*([0-9]+(?:_[0-9]+)*)\s*([A-Za-z]+)\s*")
SIZE_UNITS: Final = {
    "B": 1,
    "kB": 10**3,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}
DURATION_MS_UNITS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def _parse_units(text: str, units: dict[str, int], example: str) -> int:
    match = _NUMBER_UNIT.fullmatch(text)
    if match is None:
        raise ValueError(f'not a whole number with a unit, such as "{example}"')
    factor = units.get(match[2])
    if factor is None:
        known = ", ".join(units)
        raise ValueError(f'unknown unit "{match[2]}" (known: {known})')
    return int(match[1]) * factor


def parse_size(text: str) -> int:
    """``"128MiB"`` -> 134217728. Units are case-sensitive: B, kB/KB, MB, GB, TB, KiB..TiB."""
    return _parse_units(text, SIZE_UNITS, "128MiB")


def parse_duration(text: str) -> int:
    """``"60s"`` -> 60, ``"1m"`` -> 60, ``"1h"`` -> 3600, ``"2000ms"`` -> 2 (whole seconds).

    The same units as every other duration (ms, s, m, h, d: what TTLs accept), for
    settings counted in whole seconds (heartbeat) and the tools' ``--older-than``."""
    ms = _parse_units(text, DURATION_MS_UNITS, "60s")
    if ms % 1000:
        raise ValueError(f'"{text.strip()}" is not a whole number of seconds')
    return ms // 1000


def parse_duration_ms(text: str) -> int:
    """``"30s"`` -> 30000, ``"500ms"`` -> 500; units ms, s, m, h, d (milliseconds out)."""
    return _parse_units(text, DURATION_MS_UNITS, "30s")


def format_duration_ms(ms: int) -> str:
    """The inverse of :func:`parse_duration_ms`, in the largest unit that divides evenly."""
    for unit, factor in reversed(DURATION_MS_UNITS.items()):
        if ms % factor == 0 and ms:
            return f"{ms // factor}{unit}"
    return f"{ms}ms"


UNIT_PARSERS: Final = {
    "size": parse_size, "duration": parse_duration, "duration_ms": parse_duration_ms,
}


#: RabbitMQ's stream age grammar (x-max-age, an x-stream-offset interval): Y = 365 days,
#: M = 30 days, D, h, m, s.
_AGE = re.compile(r"^([0-9]+)(Y|M|D|h|m|s)$")
AGE_UNITS_S: Final = {"Y": 365 * 86400, "M": 30 * 86400, "D": 86400, "h": 3600, "m": 60,
                      "s": 1}


def age_ms(value: object) -> int | None:
    """An age string ("7D", "12h") in ms, or None if it is not one or not > 0."""
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    match = _AGE.match(value)
    if match is None or int(match.group(1)) == 0:
        return None
    return int(match.group(1)) * AGE_UNITS_S[match.group(2)] * 1000
