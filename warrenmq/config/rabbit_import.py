"""RabbitMQ definitions JSON -> a validated ``BrokerConfig`` (every setting at its default).

Owns reading the document ``rabbitmqctl export_definitions`` (or WarrenMQ) writes:
checking every entry's shape and types, turning x-arguments into the friendly spellings
(``x-message-ttl: 30000`` -> ``message_ttl``), and noting -- never silently dropping --
what WarrenMQ cannot express: users hashed with another algorithm or without a password,
exchange types it lacks, user/vhost limits, parameters (shovels,
federation), global parameters. Problems are reported as ``FILE: queues[5].key: ...``
with the document's own key paths (RabbitMQ writes one line, so lines would not help).
Must not import the broker or apply anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from warrenmq.config.rabbit import LOOPBACK_DEFAULT_USER, SHA256
from warrenmq.config.schema import BrokerConfig, UserConfig, VhostConfig, validate
from warrenmq.config.spec import ConfigError, ConfigProblem, ConfigSource, FreeMap
from warrenmq.config.topology import (
    EXCHANGE_FRIENDLY,
    QUEUE_FRIENDLY,
    BindingConfig,
    ExchangeConfig,
    PermissionConfig,
    PolicyConfig,
    QueueConfig,
    TopicPermissionConfig,
    split_exchange_arguments,
    split_queue_arguments,
)
from warrenmq.exchange.registry import EXCHANGE_TYPES, load_plugins

_BAD: Any = object()
_REQUIRED: Any = object()
#: Keys RabbitMQ writes that carry nothing WarrenMQ needs (and lose nothing).
_IGNORED_TOP = {"rabbit_version", "rabbitmq_version", "product_name", "product_version"}
_KNOWN_TOP = _IGNORED_TOP | {
    "users", "vhosts", "permissions", "topic_permissions", "parameters",
    "global_parameters", "policies", "queues", "exchanges", "bindings",
}
_TYPES: dict[type, str] = {str: "a string", bool: "a boolean", int: "an integer",
                           list: "a list", dict: "an object"}


class _Reader:
    """Walks the document, collecting problems (with document paths) and notes."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.problems: list[ConfigProblem] = []
        self.notes: list[str] = []
        self.positions: dict[str, tuple[int, int] | str] = {}

    def problem(self, path: str, message: str) -> Any:
        self.problems.append(ConfigProblem(self.filename, 0, 0, path, message))
        return _BAD

    def get(self, entry: dict[str, Any], key: str, tp: type, path: str,
            default: Any = _REQUIRED) -> Any:
        if key not in entry or (entry[key] is None and default is not _REQUIRED):
            if default is _REQUIRED:
                return self.problem(path, f"missing required key '{key}'")
            return default
        value = entry[key]
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            return self.problem(f"{path}.{key}", f"expected {_TYPES[tp]}, got {_show(value)}")
        return value

    def entries(self, document: dict[str, Any], section: str) -> list[tuple[int, dict[str, Any]]]:
        items = document.get(section)
        if items is None:
            return []
        if not isinstance(items, list):
            self.problem(section, f"expected a list, got {_show(items)}")
            return []
        out = []
        for index, item in enumerate(items):
            if isinstance(item, dict):
                out.append((index, item))
            else:
                self.problem(f"{section}[{index}]", f"expected an object, got {_show(item)}")
        return out


def _show(value: Any) -> str:
    return json.dumps(value)[:60] if not isinstance(value, dict | list) else (
        "an object" if isinstance(value, dict) else "a list")


def _tags(reader: _Reader, entry: dict[str, Any], path: str) -> Any:
    tags = entry.get("tags", [])
    if isinstance(tags, str):  # before 3.10 RabbitMQ wrote "administrator,monitoring"
        return tuple(t for t in tags.split(",") if t)
    if isinstance(tags, list) and all(isinstance(t, str) for t in tags):
        return tuple(tags)
    return reader.problem(f"{path}.tags", f"expected a list of strings, got {_show(tags)}")


def _users(reader: _Reader, document: dict[str, Any]) -> tuple[list[UserConfig], set[str]]:
    users: list[UserConfig] = []
    skipped: set[str] = set()
    for index, u in reader.entries(document, "users"):
        path = f"users[{index}]"
        name = reader.get(u, "name", str, path)
        algorithm = reader.get(u, "hashing_algorithm", str, path, SHA256)
        password = reader.get(u, "password", str, path, None)
        password_hash = reader.get(u, "password_hash", str, path, None)
        loopback = reader.get(u, "loopback_only", bool, path, name == LOOPBACK_DEFAULT_USER)
        tags = _tags(reader, u, path)
        if _BAD in (name, algorithm, password, password_hash, loopback, tags):
            continue
        limits = _limits(reader, u.get("limits"), ("max-connections", "max-channels"), path)
        if password is None and algorithm != SHA256:
            reader.notes.append(f'{path} ("{name}"): hashing algorithm {algorithm} is not'
                                f" supported (only {SHA256}); user not imported")
            skipped.add(name)
            continue
        if password is None and not password_hash:
            reader.notes.append(f'{path} ("{name}"): has no password (it can only log in'
                                " by other means in RabbitMQ); user not imported")
            skipped.add(name)
            continue
        reader.positions[f"users[{len(users)}]"] = path
        users.append(UserConfig(name, password=password,
                                password_hash=None if password is not None else password_hash,
                                tags=tags, loopback_only=loopback,
                                max_connections=limits.get("max-connections"),
                                max_channels=limits.get("max-channels")))
    return users, skipped


def _limits(reader: _Reader, value: Any, known: tuple[str, ...], path: str) -> dict[str, int]:
    """RabbitMQ's limits map ({"max-connections": 10}); negative means no limit."""
    if not value:
        return {}
    if not isinstance(value, dict):
        reader.notes.append(f"{path}: limits must be an object; ignored")
        return {}
    out: dict[str, int] = {}
    for key, number in value.items():
        if key not in known or isinstance(number, bool) or not isinstance(number, int):
            reader.notes.append(f"{path}: limit {key!r}: {number!r} is not supported; ignored")
        elif number >= 0:
            out[key] = number
    return out


def _vhosts(reader: _Reader, document: dict[str, Any]) -> list[VhostConfig]:
    vhosts: list[VhostConfig] = []
    for index, v in reader.entries(document, "vhosts"):
        path = f"vhosts[{index}]"
        name = reader.get(v, "name", str, path)
        if name is _BAD:
            continue
        limits = _limits(reader, v.get("limits"), ("max-connections", "max-queues"), path)
        for p in document.get("parameters") or []:  # RabbitMQ keeps them as parameters
            if isinstance(p, dict) and p.get("component") == "vhost-limits" \
                    and p.get("vhost") == name:
                limits.update(_limits(reader, p.get("value"),
                                      ("max-connections", "max-queues"), path))
        description, tags = _vhost_metadata(reader, v, path)
        reader.positions[f"vhosts[{len(vhosts)}]"] = path
        vhosts.append(VhostConfig(name, max_connections=limits.get("max-connections"),
                                  max_queues=limits.get("max-queues"),
                                  description=description, tags=tags))
    return vhosts


def _vhost_metadata(reader: _Reader, v: dict[str, Any], path: str
                    ) -> tuple[str, tuple[str, ...]]:
    """Description and tags, top-level (RabbitMQ 3.10's import form) or in ``metadata``
    (3.11+ exports); tags a list or a comma-separated string. Bad types are noted."""
    found = v.get("metadata")
    metadata: dict[str, Any] = found if isinstance(found, dict) else {}
    description = v.get("description", metadata.get("description", ""))
    tags = v.get("tags", metadata.get("tags", []))
    if not isinstance(description, str):
        reader.notes.append(f"{path}: description {description!r} is not a string; ignored")
        description = ""
    if isinstance(tags, str):
        tags = tags.split(",")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        reader.notes.append(f"{path}: tags {tags!r} are not a list of strings; ignored")
        tags = []
    return description, tuple(t.strip() for t in tags if t.strip())


class _Builder:
    """Converts the entity sections, resolving each vhost against the default one."""

    def __init__(self, reader: _Reader, default_vhost: str) -> None:
        self.reader = reader
        self.default_vhost = default_vhost

    def vhost(self, entry: dict[str, Any], path: str) -> Any:
        vhost = self.reader.get(entry, "vhost", str, path, self.default_vhost)
        return None if vhost == self.default_vhost else vhost

    def section(self, document: dict[str, Any], section: str,
                build: Callable[[dict[str, Any], str], Any]) -> list[Any]:
        out: list[Any] = []
        for index, entry in self.reader.entries(document, section):
            path = f"{section}[{index}]"
            built = build(entry, path)
            if built is not None and built is not _BAD:
                self.reader.positions[f"{section}[{len(out)}]"] = path
                out.append(built)
        return out

    def arguments(self, entry: dict[str, Any], path: str) -> Any:
        arguments = self.reader.get(entry, "arguments", dict, path, {})
        return arguments if arguments is _BAD else dict(arguments)

    def permission(self, p: dict[str, Any], path: str, skipped: set[str]) -> Any:
        user, configure, write, read = (self.reader.get(p, key, str, path)
                                        for key in ("user", "configure", "write", "read"))
        vhost = self.vhost(p, path)
        if _BAD in (user, configure, write, read, vhost):
            return _BAD
        if user in skipped:
            self.reader.notes.append(f'{path}: user "{user}" was not imported; nor is'
                                     " its permission")
            return None
        return PermissionConfig(user, configure, write, read, vhost=vhost)

    def topic_permission(self, p: dict[str, Any], path: str, skipped: set[str]) -> Any:
        user, exchange, write, read = (self.reader.get(p, key, str, path)
                                       for key in ("user", "exchange", "write", "read"))
        vhost = self.vhost(p, path)
        if _BAD in (user, exchange, write, read, vhost):
            return _BAD
        if user in skipped:
            self.reader.notes.append(f'{path}: user "{user}" was not imported; nor is'
                                     " its topic permission")
            return None
        return TopicPermissionConfig(user, exchange, write, read, vhost=vhost)

    def policy(self, p: dict[str, Any], path: str) -> Any:
        name = self.reader.get(p, "name", str, path)
        pattern = self.reader.get(p, "pattern", str, path)
        definition = self.reader.get(p, "definition", dict, path)
        apply_to = self.reader.get(p, "apply-to", str, path, "all")
        priority = self.reader.get(p, "priority", int, path, 0)
        vhost = self.vhost(p, path)
        if _BAD in (name, pattern, definition, apply_to, priority, vhost):
            return _BAD
        return PolicyConfig(name, pattern, FreeMap(definition), vhost=vhost,
                            apply_to=apply_to, priority=priority)

    def exchange(self, x: dict[str, Any], path: str, dropped: set[tuple[Any, str]]) -> Any:
        name = self.reader.get(x, "name", str, path)
        kind = self.reader.get(x, "type", str, path)
        flags = [self.reader.get(x, key, bool, path, default)
                 for key, default in (("durable", True), ("auto_delete", False),
                                      ("internal", False))]
        arguments = self.arguments(x, path)
        vhost = self.vhost(x, path)
        if _BAD in (name, kind, *flags, arguments, vhost):
            return _BAD
        load_plugins()  # idempotent: a plugin's types import like the built-in ones
        if kind not in EXCHANGE_TYPES:
            self.reader.notes.append(f'{path} ("{name}"): exchange type "{kind}" is not'
                                     " supported; exchange not imported")
            dropped.add((vhost, name))
            return None
        friendly, rest = split_exchange_arguments(arguments)
        durable, auto_delete, internal = flags
        return ExchangeConfig(name, kind, vhost, durable, auto_delete, internal,
                              arguments=rest, **friendly)

    def queue(self, q: dict[str, Any], path: str) -> Any:
        name = self.reader.get(q, "name", str, path)
        durable = self.reader.get(q, "durable", bool, path, True)
        auto_delete = self.reader.get(q, "auto_delete", bool, path, False)
        arguments = self.arguments(q, path)
        vhost = self.vhost(q, path)
        if _BAD in (name, durable, auto_delete, arguments, vhost):
            return _BAD
        queue_type = q.get("type", arguments.get("x-queue-type", "classic"))
        if queue_type == "stream":  # a stream here too (queues/stream.py)
            arguments = {**arguments, "x-queue-type": "stream"}
        elif queue_type != "classic":
            self.reader.notes.append(f'{path} ("{name}"): a {queue_type} queue in RabbitMQ;'
                                     " WarrenMQ runs it as a classic queue")
        friendly, rest = split_queue_arguments(arguments)
        return QueueConfig(name, vhost, durable, auto_delete, arguments=rest, **friendly)

    def binding(self, b: dict[str, Any], path: str, dropped: set[tuple[Any, str]]) -> Any:
        source = self.reader.get(b, "source", str, path)
        destination = self.reader.get(b, "destination", str, path)
        kind = self.reader.get(b, "destination_type", str, path, "queue")
        key = self.reader.get(b, "routing_key", str, path, "")
        arguments = self.arguments(b, path)
        vhost = self.vhost(b, path)
        if _BAD in (source, destination, kind, key, arguments, vhost):
            return _BAD
        if source == "":
            return None  # RabbitMQ never exports the default exchange's implicit bindings
        ends = {(vhost, source), (vhost, destination) if kind == "exchange" else None}
        if ends & dropped:
            self.reader.notes.append(f"{path}: an end of the binding was not imported;"
                                     " nor is the binding")
            return None
        return BindingConfig(source, destination, kind, key, vhost, FreeMap(arguments))


def _report_unsupported(reader: _Reader, document: dict[str, Any]) -> None:
    for key in document:
        if key not in _KNOWN_TOP:
            reader.notes.append(f"{key}: not a definitions key; ignored")
    for index, p in reader.entries(document, "parameters"):
        if p.get("component") == "vhost-limits":
            continue  # read with the vhosts
        reader.notes.append(f"parameters[{index}] ({p.get('component')} \"{p.get('name')}\""
                            f" in vhost \"{p.get('vhost')}\"): runtime parameters (shovels,"
                            " federation) are not supported")
    for index, p in reader.entries(document, "global_parameters"):
        reader.notes.append(f"global_parameters[{index}] (\"{p.get('name')}\"): global"
                            " parameters are not supported")


def config_from_document(document: Any, filename: str = "<definitions>") -> BrokerConfig:
    """A definitions document as a validated config; notes in ``config.source.notes``.

    Raises :class:`ConfigError` listing every problem.
    """
    reader = _Reader(filename)
    if not isinstance(document, dict):
        raise ConfigError([ConfigProblem(filename, 0, 0, "", "expected a JSON object at"
                                         f" the top, got {_show(document)}")])
    _report_unsupported(reader, document)
    users, skipped = _users(reader, document)
    vhosts = _vhosts(reader, document)
    if not vhosts and "vhosts" not in document:
        vhosts = [VhostConfig("/")]
        reader.notes.append('vhosts: none given; using "/"')
    names = [v.name for v in vhosts]
    default_vhost = "/" if "/" in names or not names else names[0]
    build = _Builder(reader, default_vhost)
    dropped: set[tuple[Any, str]] = set()
    has_permissions = "permissions" in document
    permissions = build.section(document, "permissions",
                                lambda p, path: build.permission(p, path, skipped))
    topic_permissions = build.section(
        document, "topic_permissions",
        lambda p, path: build.topic_permission(p, path, skipped))
    if "users" not in document:
        users = list(BrokerConfig().users)
        reader.notes.append("users: none given; the default guest user (loopback only) serves")
    policies = build.section(document, "policies", build.policy)
    exchanges = build.section(document, "exchanges",
                              lambda x, path: build.exchange(x, path, dropped))
    queues = build.section(document, "queues", build.queue)
    bindings = build.section(document, "bindings",
                             lambda b, path: build.binding(b, path, dropped))
    if reader.problems:
        raise ConfigError(reader.problems)
    cfg = BrokerConfig(
        users=tuple(users), vhosts=tuple(vhosts), default_vhost=default_vhost,
        permissions=tuple(permissions) if has_permissions else None,
        topic_permissions=tuple(topic_permissions),
        policies=tuple(policies), exchanges=tuple(exchanges), queues=tuple(queues),
        bindings=tuple(bindings), source=ConfigSource(filename, reader.positions, reader.notes),
    )
    cfg = _collapse_full_permissions(cfg)
    problems = [ConfigProblem(filename, 0, 0, _document_path(path, reader.positions), message)
                for path, message in validate(cfg)]
    if problems:
        raise ConfigError(problems)
    return cfg


def _collapse_full_permissions(cfg: BrokerConfig) -> BrokerConfig:
    """Listed permissions that grant every user everything everywhere are the default."""
    from dataclasses import replace

    from warrenmq.config.rabbit import effective_permissions

    if cfg.permissions is None:
        return cfg
    full = {(p.user, p.vhost) for p in effective_permissions(replace(cfg, permissions=None))}
    given = {(p.user, p.vhost) for p in effective_permissions(cfg)
             if (p.configure, p.write, p.read) == (".*", ".*", ".*")}
    if len(cfg.permissions) == len(full) and given == full:
        return replace(cfg, permissions=None)
    return cfg


_ENTITY = re.compile(r"(\w+\[\d+\])(.*)")
_FRIENDLY_ARGUMENTS = {f".{f.field}": f".arguments.{f.argument}"
                       for f in (*QUEUE_FRIENDLY, *EXCHANGE_FRIENDLY)}


def _document_path(path: str, positions: dict[str, tuple[int, int] | str]) -> str:
    """``queues[2].message_ttl`` -> ``queues[5].arguments.x-message-ttl``."""
    match = _ENTITY.fullmatch(path)
    if match is None:
        return path
    entity = positions.get(match[1], match[1])
    rest = match[2]
    for friendly, argument in _FRIENDLY_ARGUMENTS.items():
        if rest == friendly or rest.startswith(friendly + "["):
            rest = argument + rest[len(friendly):]
    return f"{entity}{rest}" if isinstance(entity, str) else path


def load_definitions_text(text: str, filename: str = "<definitions>") -> BrokerConfig:
    """Parse RabbitMQ definitions JSON into a validated config."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError([ConfigProblem(filename, exc.lineno, exc.colno, "",
                                         f"JSON syntax error: {exc.msg}")]) from None
    return config_from_document(document, filename)
