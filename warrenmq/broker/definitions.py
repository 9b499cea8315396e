"""Definitions documents of a live broker: save/restore, RabbitMQ export/import.

The document has the shape of RabbitMQ's definitions JSON (``vhosts``, ``users``,
``permissions``, ``policies``, ``exchanges``, ``queues``, ``bindings``), so the same
shape serves the data directory, export and import.

* ``snapshot`` / ``restore``: what the data directory keeps across restarts -- every
  vhost, user, permission and policy, and the durable entities RabbitMQ keeps (durable,
  non-exclusive exchanges and queues; bindings whose both ends are durable). Argument
  values JSON cannot carry (bytes, Decimal, timestamps) are tagged, never dropped. A
  plain password (a user made at run time with one) is saved as RabbitMQ's salted hash.
* ``export_definitions`` / ``import_definitions``: RabbitMQ's definitions JSON of the
  running broker (what ``rabbitmqctl export_definitions`` writes), and applying such a
  document live (``apply.py`` checks, then creates; nothing is deleted).

Must not read or write files (``storage/definitions.py`` does), read the config file,
or await.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import structlog

from warrenmq.broker.apply import Applied, apply
from warrenmq.broker.broker import Broker, User
from warrenmq.broker.vhost import STANDARD_EXCHANGES
from warrenmq.config import ConfigError
from warrenmq.config.rabbit import declarations, for_rabbitmq, hash_password
from warrenmq.config.rabbit_import import config_from_document
from warrenmq.exchange import Exchange
from warrenmq.queues.queue import Queue

log = structlog.get_logger("warrenmq.definitions")

_SYSTEM = {name for name, _ in STANDARD_EXCHANGES} | {""}
#: (user, plain password) -> the hash saved for it, so a snapshot is stable between saves
_SAVED_HASHES: dict[tuple[str, str], str] = {}


def _to_json(value: Any) -> Any:
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, bytes | bytearray):
        return {"__bytes__": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, Decimal):
        return {"__decimal__": str(value)}
    if isinstance(value, datetime):
        return {"__timestamp__": int(value.timestamp())}
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    return str(value)


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__bytes__"}:
            return base64.b64decode(value["__bytes__"])
        if set(value) == {"__decimal__"}:
            return Decimal(value["__decimal__"])
        if set(value) == {"__timestamp__"}:
            return datetime.fromtimestamp(value["__timestamp__"], tz=UTC)
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _rabbit_json(value: Any) -> Any:
    """A field-table value as RabbitMQ's JSON writes it (longstr as text, numbers)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, dict):
        return {str(k): _rabbit_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rabbit_json(v) for v in value]
    return value


def _user(user: User) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": user.name}
    if user.password is not None:
        key = (user.name, user.password)
        if key not in _SAVED_HASHES:
            _SAVED_HASHES[key] = hash_password(user.password)
        entry["password_hash"] = _SAVED_HASHES[key]
    else:
        entry["password_hash"] = user.password_hash
    entry["hashing_algorithm"] = "rabbit_password_hashing_sha256"
    entry["tags"] = list(user.tags)
    entry["loopback_only"] = user.loopback_only
    return entry


def _limits(table: dict[str, dict[str, int]], name: str) -> dict[str, Any]:
    """``{"limits": {...}}`` for an entity with limits (RabbitMQ's key), else nothing."""
    return {"limits": dict(table[name])} if table.get(name) else {}


def _metadata(broker: Broker, name: str) -> dict[str, Any]:
    """``description`` and ``tags`` of a vhost that has any, else nothing."""
    found = broker.vhost_metadata.get(name)
    return {"description": found.description, "tags": list(found.tags)} if found else {}


def user_document(user: User) -> dict[str, Any]:
    """A user as RabbitMQ's definitions and management API show it (a plain password
    as a salted hash, stable between calls)."""
    return _user(user)


def _access(broker: Broker) -> dict[str, list[dict[str, Any]]]:
    """Vhosts, users, permissions and policies as document sections."""
    return {
        "vhosts": [{"name": name, **_limits(broker.vhost_limits, name),
                    **_metadata(broker, name)} for name in broker.vhosts],
        "users": [{**_user(u), **_limits(broker.user_limits, u.name)}
                  for u in broker.users.values()],
        "permissions": [
            {"user": user, "vhost": vhost, "configure": p.configure, "write": p.write,
             "read": p.read}
            for (user, vhost), p in broker.permissions.items()
        ],
        "topic_permissions": [
            {"user": user, "vhost": vhost, "exchange": t.exchange, "write": t.write,
             "read": t.read}
            for (user, vhost), records in broker.topic_permissions.items() for t in records
        ],
        "policies": [
            {"vhost": p.vhost, "name": p.name, "pattern": p.pattern, "apply-to": p.apply_to,
             "definition": _to_json(dict(p.definition)), "priority": p.priority}
            for p in broker.policies.values()
        ],
    }


def _binding_kind(destination: object) -> str | None:
    if isinstance(destination, Queue):
        return "queue" if destination.durable and not destination.exclusive else None
    if isinstance(destination, Exchange) and destination.durable:
        return "exchange"
    return None


def snapshot(broker: Broker) -> dict[str, Any]:
    exchanges: list[dict[str, Any]] = []
    queues: list[dict[str, Any]] = []
    bindings: list[dict[str, Any]] = []
    for vhost in broker.vhosts.values():
        for x in vhost.exchanges.values():
            if x.durable and x.name not in _SYSTEM:
                exchanges.append({
                    "vhost": vhost.name, "name": x.name, "type": x.type_name,
                    "durable": True, "auto_delete": x.auto_delete, "internal": x.internal,
                    "arguments": _to_json(x.arguments),
                })
        for q in vhost.queues.values():
            if q.durable and not q.exclusive:
                queues.append({
                    "vhost": vhost.name, "name": q.name, "durable": True,
                    "auto_delete": q.auto_delete, "arguments": _to_json(q.arguments),
                })
        for x in vhost.exchanges.values():
            if not x.durable or not x.name:
                continue
            for destination, key, args in x.bindings():
                kind = _binding_kind(destination)
                if kind is not None:
                    bindings.append({
                        "vhost": vhost.name, "source": x.name,
                        "destination": destination.name,  # type: ignore[attr-defined]
                        "destination_type": kind, "routing_key": key,
                        "arguments": _to_json(args),
                    })
    return {**_access(broker), "exchanges": exchanges, "queues": queues, "bindings": bindings}


def _untagged(document: Mapping[str, Any], convert: Any) -> dict[str, Any]:
    """The document with every ``arguments``/``definition`` value passed through ``convert``."""
    out: dict[str, Any] = dict(document)
    for section in ("exchanges", "queues", "bindings", "policies"):
        key = "definition" if section == "policies" else "arguments"
        out[section] = [{**entry, key: convert(entry.get(key) or {})}
                        for entry in document.get(section) or []]
    return out


def restore(broker: Broker, document: dict[str, Any]) -> Applied:
    """Recreate a saved document's vhosts, users, permissions, policies and durable
    entities in a broker no client uses yet. What cannot be restored (an entity of a
    vhost that is gone, from a data directory older than saved vhosts) is logged."""
    restored = apply(broker, _untagged(document, _from_json), strict=False)
    for issue in restored.issues:
        log.warning("definition_not_restored", problem=str(issue))
    return restored


def export_document(broker: Broker) -> dict[str, Any]:
    """``snapshot`` with argument values as RabbitMQ's JSON writes them (no tags)."""
    return _untagged(snapshot(broker), _rabbit_json)


def export_definitions(broker: Broker) -> dict[str, Any]:
    """RabbitMQ's definitions JSON of the running broker: vhosts, users, permissions,
    policies and the durable exchanges, queues and bindings (as rabbitmqctl exports)."""
    document, _notes = for_rabbitmq(export_document(broker))
    return document


def import_definitions(broker: Broker, document: Any) -> list[str]:
    """Apply RabbitMQ's definitions JSON live: create vhosts, users, permissions,
    policies, exchanges, queues and bindings; change users, permissions and policies
    that differ. Existing exchanges and queues with other settings are left alone.

    Returns what could not be expressed or applied (empty: everything was). Raises
    ValueError, listing every problem, for an invalid document (nothing is applied).
    Callers then call ``server.definitions_changed()`` to save.
    """
    try:
        config = config_from_document(document, "definitions")
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    wanted = declarations(config)
    for section in ("vhosts", "users", "permissions", "topic_permissions"):
        if section not in document:  # absent: nothing to change (not "the defaults")
            wanted[section] = []
    applied = apply(broker, wanted, strict=False)
    if applied.added or applied.changed:
        mark_changed(broker)
    notes = config.source.notes if config.source is not None else ()
    return [*notes, *applied.notes, *(str(issue) for issue in applied.issues)]


def mark_changed(broker: Broker) -> None:
    """Make ``Server.definitions_changed()`` look again: users, permissions and policies
    are saved with the topology, whose vhost generations it compares."""
    vhost = next(iter(broker.vhosts.values()), None)
    if vhost is not None:
        vhost.generation += 1
