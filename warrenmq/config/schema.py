"""Configuration schema: the broker's settings as frozen dataclasses.

Owns the shape of the configuration, its embedded defaults (``BrokerConfig()`` is a
runnable configuration with no file), the per-field constraints (ranges, allowed
values, units, non-emptiness) kept in field metadata, and the cross-field rules in
``RULES``. Must not read files, parse YAML or know about line numbers (that is
:mod:`warrenmq.config.loader`), and must not import the rest of the broker.

Adding a section: add a frozen dataclass, give its constrained fields
``metadata=spec(...)``, reference it from ``BrokerConfig``, and register any
cross-field rule in ``RULES``. The loader walks the dataclass fields by their types;
it needs no change for fields of type int, str, bool, ``FreeMap``, ``X | None``,
``tuple[X, ...]`` or a nested dataclass. The constraint machinery is in
:mod:`warrenmq.config.spec`; the declarative sections (exchanges, queues, bindings,
policies, permissions) in :mod:`warrenmq.config.topology` and
:mod:`warrenmq.config.checks`.
"""

from __future__ import annotations

import base64
import dataclasses
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field

from warrenmq.config import checks
from warrenmq.config.spec import (
    SHORTSTR_MAX,
    ConfigSource,
    Finding,
    Path,
    Rule,
    Spec,
    config_fields,
    format_path,
    rule,
    spec,
    spec_of,
    unique,
)
from warrenmq.config.topology import RULES as TOPOLOGY_RULES
from warrenmq.config.topology import (
    BindingConfig,
    ExchangeConfig,
    PermissionConfig,
    PolicyConfig,
    QueueConfig,
    TopicPermissionConfig,
)

__all__ = [
    "SHORTSTR_MAX",
    "AuthConfig",
    "BindingConfig",
    "BrokerConfig",
    "ConfigSource",
    "ExchangeConfig",
    "LimitsConfig",
    "ListenerConfig",
    "LoggingConfig",
    "PermissionConfig",
    "PolicyConfig",
    "QueueConfig",
    "Rule",
    "Spec",
    "SslConfig",
    "StorageConfig",
    "TopicPermissionConfig",
    "UserConfig",
    "VhostConfig",
    "format_path",
    "spec",
    "spec_of",
    "validate",
]


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True, slots=True)
class SslConfig:
    """TLS for a listener (RabbitMQ's ``ssl_options``): TLS 1.2 or newer only."""

    certfile: str = field(metadata=spec(non_empty=True))
    keyfile: str = field(metadata=spec(non_empty=True))
    cafile: str | None = None  # CAs that client certificates must chain to
    verify: str = field(default="verify_none",
                        metadata=spec(choices=("verify_none", "verify_peer")))
    fail_if_no_peer_cert: bool = False
    # OpenSSL cipher list for TLS 1.2 ("" = Python's modern default); 1.3 has its own
    ciphers: str = ""


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """One address the broker accepts AMQP connections on (``ssl``: amqps)."""

    host: str = field(default="127.0.0.1", metadata=spec(non_empty=True))
    port: int = field(default=5672, metadata=spec(minimum=0, maximum=65535))  # 0 = ephemeral
    ssl: SslConfig | None = None


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
    # seconds from accept to connection.open (the TLS handshake included), as RabbitMQ
    handshake_timeout: int = field(
        default=10, metadata=spec(minimum=1, maximum=3600, unit="duration"))
    # connections past the protocol header but not yet open, at most (0 = unlimited);
    # further sockets are closed at once, so half-open floods cannot starve real clients
    max_handshakes: int = field(default=1000, metadata=spec(minimum=0))


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

    # auto: JSON lines when stderr is not a terminal, the console renderer when it is
    format: str = field(default="auto", metadata=spec(choices=("console", "json", "auto")))
    level: str = field(default="info", metadata=spec(choices=("debug", "info", "warning", "error")))


@dataclass(frozen=True, slots=True)
class ManagementConfig:
    """The HTTP management listener: API, Prometheus /metrics and the dashboard."""

    enabled: bool = True
    host: str = field(default="127.0.0.1", metadata=spec(non_empty=True))
    port: int = field(default=15672, metadata=spec(minimum=0, maximum=65535))  # 0 = ephemeral
    ssl: SslConfig | None = None  # HTTPS


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Authentication: EXTERNAL (client certificates) and failed-login throttling."""

    # the user name of an EXTERNAL login: the certificate subject's CN (our default) or
    # the whole distinguished name (RabbitMQ's default)
    ssl_cert_login_from: str = field(
        default="common_name", metadata=spec(choices=("common_name", "distinguished_name")))
    # after this many failed logins from one address within failed_login_window seconds,
    # each further attempt from it waits failed_login_delay seconds before its answer
    failed_login_threshold: int = field(default=5, metadata=spec(minimum=1))
    failed_login_window: int = field(default=60, metadata=spec(minimum=1, unit="duration"))
    failed_login_delay: int = field(default=2, metadata=spec(minimum=0, maximum=60,
                                                              unit="duration"))


@dataclass(frozen=True, slots=True)
class UserConfig:
    """A user that may log in; exactly one of ``password`` / ``password_hash`` is set."""

    name: str = field(metadata=spec(non_empty=True))
    password: str | None = field(default=None, repr=False)
    password_hash: str | None = field(default=None, repr=False)
    tags: tuple[str, ...] = ()
    loopback_only: bool = False  # may only connect from 127.0.0.1 / ::1
    # RabbitMQ's user limits (None: no limit)
    max_connections: int | None = field(default=None, metadata=spec(minimum=0))
    max_channels: int | None = field(default=None, metadata=spec(minimum=0))


@dataclass(frozen=True, slots=True)
class VhostConfig:
    """A virtual host created at startup."""

    name: str = field(metadata=spec(non_empty=True))
    # RabbitMQ's vhost limits (None: no limit)
    max_connections: int | None = field(default=None, metadata=spec(minimum=0))
    max_queues: int | None = field(default=None, metadata=spec(minimum=0))
    # RabbitMQ's vhost metadata, shown by the management API and kept in definitions
    description: str = ""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """The whole broker configuration; ``BrokerConfig()`` is the embedded default."""

    listeners: tuple[ListenerConfig, ...] = field(
        default=(ListenerConfig(),), metadata=spec(non_empty=True)
    )
    limits: LimitsConfig = LimitsConfig()
    storage: StorageConfig = StorageConfig()
    logging: LoggingConfig = LoggingConfig()
    management: ManagementConfig = ManagementConfig()
    auth: AuthConfig = AuthConfig()
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
    # None (not given): every listed user may configure, write and read in every listed
    # vhost -- for the embedded default, guest on "/" as in RabbitMQ. Once given, only the
    # listed permissions apply (a user without one cannot open that vhost).
    permissions: tuple[PermissionConfig, ...] | None = None
    # RabbitMQ's topic authorisation (routing/binding keys on topic exchanges); an
    # exchange without an entry is not restricted.
    topic_permissions: tuple[TopicPermissionConfig, ...] = ()
    policies: tuple[PolicyConfig, ...] = ()
    exchanges: tuple[ExchangeConfig, ...] = ()
    queues: tuple[QueueConfig, ...] = ()
    bindings: tuple[BindingConfig, ...] = ()
    # where the config was read from (not a key; not part of equality)
    source: ConfigSource | None = field(
        default=None, compare=False, repr=False, metadata={"internal": True})


# --------------------------------------------------------------------- cross-field rules


def _password_xor_hash(user: UserConfig) -> Iterator[Finding]:
    if user.password is None and user.password_hash is None:
        yield ("name",), f'user "{user.name}" needs one of password or password_hash'
    elif user.password is not None and user.password_hash is not None:
        yield ("password_hash",), "give either password or password_hash, not both"


def _shortstr_name(obj: UserConfig | VhostConfig) -> Iterator[Finding]:
    if len(obj.name.encode()) > SHORTSTR_MAX:
        yield ("name",), f"must be at most {SHORTSTR_MAX} bytes of UTF-8 (an AMQP short string)"


def _hash_is_base64(user: UserConfig) -> Iterator[Finding]:
    if user.password_hash is None or user.password is not None:
        return  # nothing to check, or already reported as "not both"
    try:
        raw = base64.b64decode(user.password_hash, validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 36:
        yield (("password_hash",),
               "expected RabbitMQ's salted SHA-256 hash: base64 of a 4-byte salt and a"
               " 32-byte digest (48 characters)")


def _tags_non_empty(user: UserConfig) -> Iterator[Finding]:
    for index, tag in enumerate(user.tags):
        if not tag:
            yield ("tags", index), "tags must be non-empty strings"


def _unique_users(cfg: BrokerConfig) -> Iterator[Finding]:
    names = ((u.name, ("users", i, "name")) for i, u in enumerate(cfg.users))
    yield from unique(names, "user name")


def _unique_vhosts(cfg: BrokerConfig) -> Iterator[Finding]:
    names = ((v.name, ("vhosts", i, "name")) for i, v in enumerate(cfg.vhosts))
    yield from unique(names, "vhost name")


def _unique_listeners(cfg: BrokerConfig) -> Iterator[Finding]:
    addresses = (
        ((lst.host, lst.port), ("listeners", i))
        for i, lst in enumerate(cfg.listeners)
        if lst.port != 0
    )
    yield from unique(addresses, "listener (host, port)")


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


#: Cross-field rules per section type. Paths in findings are relative to the object.
RULES: dict[type, tuple[Rule, ...]] = {
    UserConfig: (
        rule(_password_xor_hash, "name", "password", "password_hash"),
        rule(_shortstr_name, "name"),
        rule(_tags_non_empty, "tags"),
        rule(_hash_is_base64, "password_hash"),
    ),
    VhostConfig: (rule(_shortstr_name, "name"),),
    BrokerConfig: (
        rule(_unique_users, "users"),
        rule(_unique_vhosts, "vhosts"),
        rule(_unique_listeners, "listeners"),
        rule(_default_vhost_exists, "vhosts", "default_vhost"),
        rule(_watermarks_ordered, "write_buffer_low_water", "write_buffer_high_water"),
        rule(checks.vhosts_listed, "vhosts", *checks.VHOST_SECTIONS,
             tolerates=checks.VHOST_SECTIONS),
        rule(checks.unique_per_vhost, "default_vhost", *checks.VHOST_SECTIONS,
             tolerates=checks.VHOST_SECTIONS),
        rule(checks.binding_references, "default_vhost", "exchanges", "queues", "bindings",
             tolerates=("bindings", "exchanges", "queues")),
        rule(checks.permission_users, "users", "permissions", tolerates=("permissions",)),
        rule(checks.topic_permission_users, "users", "topic_permissions",
             tolerates=("topic_permissions",)),
    ),
    **TOPOLOGY_RULES,
}


def validate(obj: object) -> list[tuple[str, str]]:
    """Check a config built in code (not loaded) against the same constraints and rules.

    Returns ``(key.path, message)`` pairs; empty when valid. Types are not re-checked.
    """
    return [(format_path(path), message) for path, message in _findings(obj, ())]


def _findings(obj: object, path: Path) -> Iterator[Finding]:
    hints = typing.get_type_hints(type(obj))
    for f in config_fields(obj):
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
    for each in RULES.get(type(obj), ()):
        for where, message in each.check(obj):
            yield (*path, *where), message
