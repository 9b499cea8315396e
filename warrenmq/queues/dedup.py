"""Message deduplication: the arguments, the key of a message, and the cache of keys seen.

LavinMQ's arguments, on a queue or an exchange of any type: ``x-message-deduplication``
(true turns it on), ``x-cache-size`` (entries kept), ``x-cache-ttl`` (milliseconds an
entry counts; none: until pushed out), ``x-deduplication-header`` (the header carrying
the key) and WarrenMQ's ``x-deduplication-key: message_id`` (a message without the
header is deduplicated on its message_id property). A message's own ``x-cache-ttl``
header (an integer) overrides the entity's TTL for its key. Policy keys are the same
names without ``x-`` (``message-deduplication``, ``cache-size``...).

``DedupCache`` is the set of keys one entity has seen: FIFO by first sight (a duplicate
does not refresh its key, so an entry's TTL runs from the message that set it, as in
LavinMQ), bounded by ``cache_size``; an expired entry is dropped when it is looked up or
pushed out. Each entry keeps the store ticket of the record that made it durable (0 when
the entity is not durable), so a duplicate's publisher confirm never goes out before the
key that caused the drop is on disk.

Keys are type-tagged bytes (a string "1" and an integer 1 differ, as AMQP field values
do in LavinMQ); a key longer than 64 bytes is kept as its BLAKE2b digest, so a cache's
memory and disk cost per entry is bounded whatever the publishers send.

Owns no I/O: a durable cache appends through the ``KeyLog`` it is given
(``storage/dedup_log.py``). Must not import the broker or the server.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from warrenmq.clock import Clock
from warrenmq.errors import PreconditionFailed
from warrenmq.message import Message
from warrenmq.protocol.fields import FieldError
from warrenmq.protocol.properties import get_property

#: Entries a cache keeps unless ``x-cache-size`` says otherwise. LavinMQ keeps 128; the
#: case deduplication exists for is a publisher resending everything unconfirmed after
#: a lost connection, which is a whole confirm window (often hundreds to thousands of
#: messages), so 128 forgets keys while the retry is still arriving. 10,000 entries
#: cost about 1.5 MB of memory per entity and about 0.5 MB on disk when durable.
DEFAULT_CACHE_SIZE: Final = 10_000
MAX_CACHE_SIZE: Final = 10_000_000
DEFAULT_HEADER: Final = "x-deduplication-header"
MAX_TTL_MS: Final = 2**32 - 1
KEY_SOURCES: Final = ("header", "message_id")
#: Keys longer than this are replaced by a digest (bounded memory per entry).
MAX_KEY: Final = 64

#: x-argument -> the policy key that stands for it (RabbitMQ's convention: no "x-").
POLICY_KEYS: Final[dict[str, str]] = {
    "message-deduplication": "x-message-deduplication",
    "cache-size": "x-cache-size",
    "cache-ttl": "x-cache-ttl",
    "deduplication-header": "x-deduplication-header",
    "deduplication-key": "x-deduplication-key",
}
ARGUMENTS: Final = tuple(POLICY_KEYS.values())


class KeyLog(Protocol):
    """Where a durable cache writes its keys (``storage.dedup_log.DedupLog``)."""

    def append_key(self, entity: str, key: bytes, expires_ms: int) -> int: ...

    def append_clear(self, entity: str) -> int: ...

    def unregister(self, entity: str) -> None: ...


@dataclass(frozen=True)
class DedupSettings:
    cache_size: int = DEFAULT_CACHE_SIZE
    cache_ttl: int | None = None  # ms; None: an entry lasts until pushed out
    header: str = DEFAULT_HEADER
    key: str = "header"  # or "message_id": the property when the header is missing


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _int(value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {_show(value)}")
    if not low <= value <= high:
        raise ValueError(f"value must be between {low} and {high}, got {value}")
    return value


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {_show(value)}")
    return value


def check_value(argument: str, value: Any) -> Any:
    """One argument's value as used (``ValueError`` saying what is wrong)."""
    if argument == "x-message-deduplication":
        if not isinstance(value, bool):
            raise ValueError(f"expected a boolean, got {_show(value)}")
        return value
    if argument == "x-cache-size":
        return _int(value, 1, MAX_CACHE_SIZE)
    if argument == "x-cache-ttl":
        return _int(value, 0, MAX_TTL_MS)
    if argument == "x-deduplication-header":
        return _text(value)
    source = _text(value)
    if source not in KEY_SOURCES:
        raise ValueError(f"'{source}' is not a key source, expected one of "
                         + ", ".join(KEY_SOURCES))
    return source


def parse_settings(arguments: Mapping[str, Any], where: str) -> DedupSettings | None:
    """The entity's settings, or None when it does not deduplicate; every dedup argument
    is checked either way (406 naming the argument and the entity, RabbitMQ's wording)."""
    values: dict[str, Any] = {}
    for argument in ARGUMENTS:
        if argument in arguments:
            try:
                values[argument] = check_value(argument, arguments[argument])
            except ValueError as exc:
                raise PreconditionFailed(f"invalid arg '{argument}' for {where}: {exc}") \
                    from None
    if not values.get("x-message-deduplication"):
        return None
    return DedupSettings(
        cache_size=values.get("x-cache-size", DEFAULT_CACHE_SIZE),
        cache_ttl=values.get("x-cache-ttl"),
        header=values.get("x-deduplication-header", DEFAULT_HEADER),
        key=values.get("x-deduplication-key", "header"),
    )


def tagged(value: Any) -> bytes | None:
    """A header value as a cache key: type-tagged bytes (None: not usable as a key)."""
    if isinstance(value, str):
        raw = b"s" + value.encode("utf-8", "surrogateescape")
    elif isinstance(value, bytes | bytearray):
        raw = b"s" + bytes(value)
    elif isinstance(value, bool):
        raw = b"b1" if value else b"b0"
    elif isinstance(value, int):
        raw = b"i%d" % value
    elif isinstance(value, float):
        raw = b"f" + value.hex().encode()
    elif value is None:
        return None
    else:
        raw = b"o" + repr(value).encode("utf-8", "replace")
    if len(raw) > MAX_KEY:
        return b"#" + hashlib.blake2b(raw, digest_size=20).digest()
    return raw


def message_key(message: Message, settings: DedupSettings) -> tuple[bytes | None, int]:
    """(the message's key or None, its own x-cache-ttl in ms or -1 for the default)."""
    props = message.properties
    key: bytes | None = None
    ttl = -1
    if len(props) > 1 and props[0] & 0x20:  # the headers property is present
        headers = message.headers()
        if headers:
            key = tagged(headers.get(settings.header))
            own = headers.get("x-cache-ttl")
            if isinstance(own, int) and not isinstance(own, bool) and 0 <= own <= MAX_TTL_MS:
                ttl = own
    if key is None and settings.key == "message_id" and len(props) > 1 and props[1] & 0x80:
        try:
            message_id = get_property(props, "message_id")
        except (FieldError, IndexError):
            message_id = None
        if message_id:
            key = tagged(message_id)
    return key, ttl


class DedupCache:
    """The keys one queue or exchange has seen (see the module docstring)."""

    def __init__(self, settings: DedupSettings, clock: Clock, log: KeyLog | None = None,
                 entity: str = "") -> None:
        self.settings = settings
        self.clock = clock
        self.log = log  # set for a durable entity: every new key is written
        self.entity = entity  # the log's name for the entity
        # key -> (monotonic deadline, 0.0 for none; the ticket of its record)
        self.entries: dict[bytes, tuple[float, int]] = {}
        self.duplicates = 0  # messages dropped as duplicates
        self.last_key = b""  # the key the last admitted message added (for ``forget``)

    def admit(self, message: Message) -> tuple[bool, int]:
        """(True, the key's ticket) for a duplicate; else (False, the ticket of the new
        key's record, or 0). A message without a key is never a duplicate."""
        settings = self.settings
        key, ttl = message_key(message, settings)
        if key is None:
            return False, 0
        now = self.clock.monotonic()
        entries = self.entries
        entry = entries.get(key)
        if entry is not None:
            deadline = entry[0]
            if deadline == 0.0 or deadline > now:
                self.duplicates += 1
                return True, entry[1]
            del entries[key]
        if ttl < 0:
            default = settings.cache_ttl
            ttl = -1 if default is None else default
        return False, self.add(key, ttl, now)

    def add(self, key: bytes, ttl: int, now: float) -> int:
        """Remember ``key`` for ``ttl`` ms (-1: no TTL); returns its record's ticket."""
        entries = self.entries
        while len(entries) >= self.settings.cache_size:
            del entries[next(iter(entries))]
        ticket = 0
        log = self.log
        if log is not None:
            expires_ms = 0 if ttl < 0 else int(self.clock.time() * 1000) + max(ttl, 1)
            ticket = log.append_key(self.entity, key, expires_ms)
        entries[key] = (0.0 if ttl < 0 else now + ttl / 1000.0, ticket)
        self.last_key = key
        return ticket

    def forget(self, key: bytes) -> None:
        """Drop ``key`` again: the message that set it was refused after all (a queue's
        x-overflow reject-publish nacked it), so the publisher's retry must get through.
        A durable cache writes it as an expired key."""
        if self.entries.pop(key, None) is not None and self.log is not None:
            self.log.append_key(self.entity, key, 1)

    def restore(self, recovered: Mapping[bytes, int]) -> None:
        """Keys read back from the log, oldest first, with their wall-clock expiry in ms
        (0: none); expired ones are skipped, the newest ``cache_size`` kept."""
        now_ms = int(self.clock.time() * 1000)
        mono = self.clock.monotonic()
        entries = self.entries
        for key, expires_ms in recovered.items():
            if expires_ms and expires_ms <= now_ms:
                continue
            entries.pop(key, None)
            entries[key] = (mono + (expires_ms - now_ms) / 1000.0 if expires_ms else 0.0, 0)
        self.resize(self.settings.cache_size)

    def resize(self, size: int) -> None:
        entries = self.entries
        while len(entries) > size:
            del entries[next(iter(entries))]

    def live(self) -> list[tuple[bytes, int]]:
        """(key, wall-clock expiry ms or 0) of every unexpired entry, oldest first (what a
        snapshot of the log writes)."""
        now = self.clock.monotonic()
        wall_ms = int(self.clock.time() * 1000)
        out = []
        for key, (deadline, _) in self.entries.items():
            if deadline == 0.0:
                out.append((key, 0))
            elif deadline > now:
                out.append((key, wall_ms + max(1, int((deadline - now) * 1000))))
        return out

    def info(self) -> dict[str, Any]:
        """The management API's ``deduplication`` object."""
        settings = self.settings
        return {"cache_size": settings.cache_size, "cache_ttl": settings.cache_ttl,
                "header": settings.header, "key": settings.key,
                "entries": len(self.entries), "duplicates": self.duplicates,
                "durable": self.log is not None}
