"""Configuration schema: the broker's settings as frozen dataclasses.

Owns the shape of the configuration, its embedded defaults (``BrokerConfig()`` is a
runnable configuration with no file), the per-field constraints (ranges, allowed
values, units, non-emptiness) kept in field metadata, and the cross-field rules in
``RULES``. Must not read files, parse YAML or know about line numbers (that is
:mod:`warrenmq.config.loader`), and must not import the rest of the broker.

Adding a section: add a frozen dataclass, give its constrained fields
``metadata=spec(...)``, reference it from ``BrokerConfig``, and register any
cross-field rule in ``RULES``. The loader walks the dataclass fields by their types;
it needs no change for fields of type int, str, bool, ``X | None``, ``tuple[X, ...]``
or a nested dataclass.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

PathPart = str | int
#: A location inside a config object: field names and sequence indices.
Path = tuple[PathPart, ...]
#: A rule's complaint: where (relative to the object checked) and what.
Finding = tuple[Path, str]
Unit = Literal["size", "duration"]

#: AMQP short strings (vhost and user names) are at most 255 bytes.
SHORTSTR_MAX = 255


@dataclass(frozen=True, slots=True)
class Spec:
    """Constraints on one field's value, kept in ``dataclasses.field(metadata=...)``."""

    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    unit: Unit | None = None  # ints that may also be written as "128MiB" / "60s"
    non_empty: bool = False  # strings and lists

    def accepts(self, value: object) -> bool:
        """Whether a value of the right type meets the constraints."""
        if isinstance(value, bool):
            return True
        if isinstance(value, int):
            too_low = self.minimum is not None and value < self.minimum
            too_high = self.maximum is not None and value > self.maximum
            return not (too_low or too_high)
        if isinstance(value, str) and self.choices:
            return value in self.choices
        if isinstance(value, str | tuple) and self.non_empty:
            return len(value) > 0
        return True

    def describe(self, tp: object) -> str:
        """What a valid value of type ``tp`` looks like, for "expected ..." messages."""
        if tp is int:
            return "an integer" + self._range_text() + _UNIT_HINTS.get(self.unit or "", "")
        if self.choices:
            return "one of " + ", ".join(f'"{choice}"' for choice in self.choices)
        if tp is str:
            return "a non-empty string" if self.non_empty else "a string"
        if tp is bool:
            return "a boolean (true or false)"
        if dataclasses.is_dataclass(tp):
            return "a mapping"
        if typing.get_origin(tp) is tuple:
            return "a non-empty list" if self.non_empty else "a list"
        return "a value of type " + str(tp)

    def _range_text(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f" between {self.minimum} and {self.maximum}"
        if self.minimum is not None:
            return f" >= {self.minimum}"
        if self.maximum is not None:
            return f" <= {self.maximum}"
        return ""


_UNIT_HINTS = {
    "size": ' or a size such as "128MiB"',
    "duration": ' or a duration such as "60s"',
}
_NO_SPEC = Spec()


def spec(**constraints: Any) -> dict[str, Spec]:
    """Field metadata carrying a :class:`Spec`: ``field(default=1, metadata=spec(minimum=0))``."""
    return {"spec": Spec(**constraints)}


def spec_of(f: dataclasses.Field[Any]) -> Spec:
    """The constraints of a dataclass field (none if it has no ``spec`` metadata)."""
    found = f.metadata.get("spec", _NO_SPEC)
    assert isinstance(found, Spec)
    return found


def format_path(path: Path) -> str:
    """``("users", 1, "name")`` -> ``users[1].name``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """One address the broker accepts AMQP connections on."""

    host: str = field(default="127.0.0.1", metadata=spec(non_empty=True))
    port: int = field(default=5672, metadata=spec(minimum=0, maximum=65535))  # 0 = ephemeral


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Protocol and resource limits (the values offered in connection.tune and more)."""

    frame_max: int = field(
        default=131072, metadata=spec(minimum=4096, maximum=2**31 - 1, unit="size")
    )
    channel_max: int = field(default=2047, metadata=spec(minimum=1, maximum=65535))
    max_message_size: int = field(
        default=128 * 2**20, metadata=spec(minimum=1, maximum=512 * 2**20, unit="size")
    )
    max_connections: int = field(default=0, metadata=spec(minimum=0))  # 0 = unlimited
    heartbeat: int = field(  # seconds; 0 disables heartbeats
        default=60, metadata=spec(minimum=0, maximum=65535, unit="duration")
    )


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """Where and how durable state is written."""

    data_dir: str = field(default="./warrenmq-data", metadata=spec(non_empty=True))
    fsync: str = field(default="group", metadata=spec(choices=("group", "always", "never")))
    # bodies a durable queue keeps in memory; past it persistent bodies stay on disk
    queue_memory_limit: int = field(default=64 * 1024 * 1024,
                                    metadata=spec(minimum=0, unit="size"))


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """Log output format and threshold."""

    format: str = field(default="console", metadata=spec(choices=("console", "json")))
    level: str = field(default="info", metadata=spec(choices=("debug", "info", "warning", "error")))


@dataclass(frozen=True, slots=True)
class UserConfig:
    """A user that may log in; exactly one of ``password`` / ``password_hash`` is set."""

    name: str = field(metadata=spec(non_empty=True))
    password: str | None = field(default=None, repr=False)
    password_hash: str | None = field(default=None, repr=False)
    tags: tuple[str, ...] = ()
    loopback_only: bool = False  # may only connect from 127.0.0.1 / ::1


@dataclass(frozen=True, slots=True)
class VhostConfig:
    """A virtual host created at startup."""

    name: str = field(metadata=spec(non_empty=True))


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """The whole broker configuration; ``BrokerConfig()`` is the embedded default."""

    listeners: tuple[ListenerConfig, ...] = field(
        default=(ListenerConfig(),), metadata=spec(non_empty=True)
    )
    limits: LimitsConfig = LimitsConfig()
    storage: StorageConfig = StorageConfig()
    logging: LoggingConfig = LoggingConfig()
    # RabbitMQ's well-known default user, usable only from the local machine.
    users: tuple[UserConfig, ...] = (
        UserConfig(
            "guest",
            password="guest",  # noqa: S106 - the documented default, loopback only
            tags=("administrator",),
            loopback_only=True,
        ),
    )
    vhosts: tuple[VhostConfig, ...] = field(
        default=(VhostConfig("/"),), metadata=spec(non_empty=True)
    )
    default_vhost: str = field(default="/", metadata=spec(non_empty=True))
    memory_high_watermark_bytes: int = field(  # 0 = no limit
        default=0, metadata=spec(minimum=0, unit="size")
    )
    # Bytes of unsent data per connection before the broker stops pushing to it, and
    # the level it must drain to before pushing resumes.
    write_buffer_high_water: int = field(default=1048576, metadata=spec(minimum=1, unit="size"))
    write_buffer_low_water: int = field(default=262144, metadata=spec(minimum=0, unit="size"))


# --------------------------------------------------------------------- cross-field rules


@dataclass(frozen=True, slots=True)
class Rule:
    """A check across fields; skipped by the loader when a field it reads is invalid."""

    reads: frozenset[str]
    check: Callable[[Any], Iterable[Finding]]


def _password_xor_hash(user: UserConfig) -> Iterator[Finding]:
    if user.password is None and user.password_hash is None:
        yield ("name",), f'user "{user.name}" needs one of password or password_hash'
    elif user.password is not None and user.password_hash is not None:
        yield ("password_hash",), "give either password or password_hash, not both"


def _shortstr_name(obj: UserConfig | VhostConfig) -> Iterator[Finding]:
    if len(obj.name.encode()) > SHORTSTR_MAX:
        yield ("name",), f"must be at most {SHORTSTR_MAX} bytes of UTF-8 (an AMQP short string)"


def _tags_non_empty(user: UserConfig) -> Iterator[Finding]:
    for index, tag in enumerate(user.tags):
        if not tag:
            yield ("tags", index), "tags must be non-empty strings"


def _unique(items: Iterable[tuple[object, Path]], what: str) -> Iterator[Finding]:
    seen: set[object] = set()
    for key, where in items:
        if key in seen:
            yield where, f"duplicate {what} {key!r}"
        seen.add(key)


def _unique_users(cfg: BrokerConfig) -> Iterator[Finding]:
    names = ((u.name, ("users", i, "name")) for i, u in enumerate(cfg.users))
    yield from _unique(names, "user name")


def _unique_vhosts(cfg: BrokerConfig) -> Iterator[Finding]:
    names = ((v.name, ("vhosts", i, "name")) for i, v in enumerate(cfg.vhosts))
    yield from _unique(names, "vhost name")


def _unique_listeners(cfg: BrokerConfig) -> Iterator[Finding]:
    addresses = (
        ((lst.host, lst.port), ("listeners", i))
        for i, lst in enumerate(cfg.listeners)
        if lst.port != 0
    )
    yield from _unique(addresses, "listener (host, port)")


def _default_vhost_exists(cfg: BrokerConfig) -> Iterator[Finding]:
    names = [v.name for v in cfg.vhosts]
    if cfg.default_vhost not in names:
        known = ", ".join(f'"{n}"' for n in names)
        yield ("default_vhost",), f'no vhost named "{cfg.default_vhost}" (vhosts: {known})'


def _watermarks_ordered(cfg: BrokerConfig) -> Iterator[Finding]:
    if cfg.write_buffer_low_water >= cfg.write_buffer_high_water:
        yield (
            ("write_buffer_low_water",),
            f"must be below write_buffer_high_water ({cfg.write_buffer_high_water})",
        )


def _rule(check: Callable[[Any], Iterable[Finding]], *reads: str) -> Rule:
    return Rule(frozenset(reads), check)


#: Cross-field rules per section type. Paths in findings are relative to the object.
RULES: dict[type, tuple[Rule, ...]] = {
    UserConfig: (
        _rule(_password_xor_hash, "name", "password", "password_hash"),
        _rule(_shortstr_name, "name"),
        _rule(_tags_non_empty, "tags"),
    ),
    VhostConfig: (_rule(_shortstr_name, "name"),),
    BrokerConfig: (
        _rule(_unique_users, "users"),
        _rule(_unique_vhosts, "vhosts"),
        _rule(_unique_listeners, "listeners"),
        _rule(_default_vhost_exists, "vhosts", "default_vhost"),
        _rule(_watermarks_ordered, "write_buffer_low_water", "write_buffer_high_water"),
    ),
}


def validate(obj: object) -> list[tuple[str, str]]:
    """Check a config built in code (not loaded) against the same constraints and rules.

    Returns ``(key.path, message)`` pairs; empty when valid. Types are not re-checked.
    """
    return [(format_path(path), message) for path, message in _findings(obj, ())]


def _findings(obj: object, path: Path) -> Iterator[Finding]:
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        here = (*path, f.name)
        constraint = spec_of(f)
        if not constraint.accepts(value):
            yield here, f"expected {constraint.describe(hints[f.name])}, got {value!r}"
        if dataclasses.is_dataclass(value):
            yield from _findings(value, here)
        elif isinstance(value, tuple):
            for index, item in enumerate(value):
                if dataclasses.is_dataclass(item):
                    yield from _findings(item, (*here, index))
    for rule in RULES.get(type(obj), ()):
        for where, message in rule.check(obj):
            yield (*path, *where), message
