"""Config -> definitions documents: WarrenMQ's own, RabbitMQ's JSON, and our YAML.

Owns three outputs and what each cannot carry:

* :func:`declarations` -- a config's declarative sections as a *definitions document*:
  RabbitMQ's shape (``vhosts``, ``users``, ``permissions``, ``policies``, ``exchanges``,
  ``queues``, ``bindings``) with friendly spellings turned into x-arguments, every vhost
  resolved, one entry per config entry in config order (so an entry's index is its
  config index), plus two WarrenMQ keys on users: a plain ``password`` and
  ``loopback_only``. The broker applies and persists documents of this shape.
* :func:`for_rabbitmq` -- such a document as ``rabbitmqctl export_definitions`` (3.10)
  writes it, for ``rabbitmqctl import_definitions``: plain passwords become RabbitMQ
  salted SHA-256 hashes, and what RabbitMQ cannot express comes back as notes.
* :func:`yaml_text` -- a config's declarative sections as our YAML.

The other direction is :mod:`warrenmq.config.rabbit_import`. Must not import the broker.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import MISSING, fields
from typing import Any

import yaml

from warrenmq import __version__
from warrenmq.config.checks import vhost_of
from warrenmq.config.schema import BrokerConfig, UserConfig, VhostConfig
from warrenmq.config.spec import FreeMap, spec_of, thaw
from warrenmq.config.topology import (
    WARREN_POLICY_KEYS,
    PermissionConfig,
    exchange_arguments,
    queue_arguments,
)
from warrenmq.config.units import format_duration_ms

#: The RabbitMQ release whose export format :func:`for_rabbitmq` follows.
RABBIT_FORMAT_VERSION = "3.10.8"
SHA256 = "rabbit_password_hashing_sha256"
#: RabbitMQ's loopback_users default: guest may only log in from localhost.
LOOPBACK_DEFAULT_USER = "guest"
SECTIONS = ("vhosts", "users", "permissions", "topic_permissions", "policies", "exchanges",
            "queues", "bindings")
#: Top-level keys RabbitMQ writes that hold nothing WarrenMQ applies.
RABBIT_EMPTY_SECTIONS = ("parameters", "global_parameters")


def hash_password(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt4 + sha256(salt4 + utf8))."""
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def effective_permissions(cfg: BrokerConfig) -> list[PermissionConfig]:
    """The permissions in force, vhosts resolved: the listed ones, or (none listed) every
    user may do everything in every vhost."""
    if cfg.permissions is None:
        return [PermissionConfig(u.name, ".*", ".*", ".*", v.name)
                for u in cfg.users for v in cfg.vhosts]
    return [PermissionConfig(p.user, p.configure, p.write, p.read, vhost_of(cfg, p))
            for p in cfg.permissions]


# ------------------------------------------------------------------- declarations


def user_entry(user: UserConfig) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": user.name}
    if user.password is not None:
        entry["password"] = user.password
    else:
        entry["password_hash"] = user.password_hash
        entry["hashing_algorithm"] = SHA256
    entry["tags"] = list(user.tags)
    entry["loopback_only"] = user.loopback_only
    limits = {name: value for name, value in (("max-connections", user.max_connections),
                                              ("max-channels", user.max_channels))
              if value is not None}
    if limits:
        entry["limits"] = limits
    return entry


def vhost_entry(vhost: VhostConfig) -> dict[str, Any]:
    """A vhost as a definitions entry, with RabbitMQ's ``limits`` and its description
    and tags when it has any (absent: the config leaves them to the API)."""
    limits = {name: value for name, value in (("max-connections", vhost.max_connections),
                                              ("max-queues", vhost.max_queues))
              if value is not None}
    entry: dict[str, Any] = {"name": vhost.name}
    if limits:
        entry["limits"] = limits
    if vhost.description or vhost.tags:
        entry["description"] = vhost.description
        entry["tags"] = list(vhost.tags)
    return entry


def declarations(cfg: BrokerConfig) -> dict[str, list[dict[str, Any]]]:
    """The config's declarative sections as a definitions document (see module doc)."""
    return {
        "vhosts": [vhost_entry(v) for v in cfg.vhosts],
        "users": [user_entry(u) for u in cfg.users],
        "permissions": [
            {"user": p.user, "vhost": p.vhost, "configure": p.configure,
             "write": p.write, "read": p.read}
            for p in effective_permissions(cfg)
        ],
        "topic_permissions": [
            {"user": p.user, "vhost": vhost_of(cfg, p), "exchange": p.exchange,
             "write": p.write, "read": p.read}
            for p in cfg.topic_permissions
        ],
        "policies": [
            {"vhost": vhost_of(cfg, p), "name": p.name, "pattern": p.pattern,
             "apply-to": p.apply_to, "definition": p.definition.to_plain(),
             "priority": p.priority}
            for p in cfg.policies
        ],
        "exchanges": [
            {"name": x.name, "vhost": vhost_of(cfg, x), "type": x.type, "durable": x.durable,
             "auto_delete": x.auto_delete, "internal": x.internal,
             "arguments": exchange_arguments(x)}
            for x in cfg.exchanges
        ],
        "queues": [
            {"name": q.name, "vhost": vhost_of(cfg, q), "durable": q.durable,
             "auto_delete": q.auto_delete, "arguments": queue_arguments(q)}
            for q in cfg.queues
        ],
        "bindings": [
            {"source": b.source, "vhost": vhost_of(cfg, b), "destination": b.destination,
             "destination_type": b.destination_type, "routing_key": b.routing_key,
             "arguments": b.arguments.to_plain()}
            for b in cfg.bindings
        ],
    }


def entity_key(section: str, entry: dict[str, Any]) -> tuple[Any, ...]:
    """What makes an entry unique within its section (RabbitMQ's identity)."""
    if section in ("vhosts", "users"):
        return (entry.get("name"),)
    if section == "permissions":
        return (entry.get("user"), entry.get("vhost"))
    if section == "topic_permissions":
        return (entry.get("user"), entry.get("vhost"), entry.get("exchange"))
    if section == "bindings":
        return (entry.get("vhost"), entry.get("source"), entry.get("destination"),
                entry.get("destination_type"), entry.get("routing_key"),
                json.dumps(entry.get("arguments") or {}, sort_keys=True, default=str))
    return (entry.get("vhost"), entry.get("name"))


def merge(*documents: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """One document: each section's entries in order, the first of each key winning."""
    out: dict[str, list[dict[str, Any]]] = {section: [] for section in SECTIONS}
    for document in documents:
        for section in SECTIONS:
            seen = {entity_key(section, e) for e in out[section]}
            for entry in document.get(section) or []:
                if entity_key(section, entry) not in seen:
                    out[section].append(entry)
                    seen.add(entity_key(section, entry))
    return out


# ------------------------------------------------------------------- RabbitMQ's JSON


def _who(section: str, index: int, entry: dict[str, Any]) -> str:
    name = entry.get("name", entry.get("user", ""))
    vhost = f' in vhost "{entry["vhost"]}"' if "vhost" in entry else ""
    return f'{section}[{index}] ("{name}"{vhost})'


def for_rabbitmq(document: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A definitions document as RabbitMQ 3.10 exports it, and what RabbitMQ cannot express.

    Internal exchanges are included with ``"internal": true`` (RabbitMQ's own export
    leaves them out; its import creates them).
    """
    notes: list[str] = []
    users = []
    for index, u in enumerate(document.get("users") or []):
        who = _who("users", index, u)
        password_hash = u.get("password_hash")
        if u.get("password") is not None:
            password_hash = hash_password(u["password"])
            notes.append(f"{who}: the plain password is exported as a salted SHA-256 hash")
        loopback = bool(u.get("loopback_only", False))
        if loopback != (u["name"] == LOOPBACK_DEFAULT_USER):
            rule = "only from loopback" if loopback else "from anywhere"
            notes.append(f"{who}: may log in {rule} here; RabbitMQ sets that in"
                         " rabbitmq.conf (loopback_users), not in definitions")
        users.append({"name": u["name"], "password_hash": password_hash,
                      "hashing_algorithm": u.get("hashing_algorithm", SHA256),
                      "tags": list(u.get("tags") or []), "limits": dict(u.get("limits") or {})})
    queues = [_rabbit_queue(index, q, notes)
              for index, q in enumerate(document.get("queues") or [])]
    out: dict[str, Any] = {
        "rabbit_version": RABBIT_FORMAT_VERSION,
        "rabbitmq_version": RABBIT_FORMAT_VERSION,
        "product_name": "WarrenMQ",
        "product_version": __version__,
        "users": users,
        "vhosts": [_rabbit_vhost(v) for v in document.get("vhosts") or []],
        "permissions": list(document.get("permissions") or []),
        "topic_permissions": list(document.get("topic_permissions") or []),
        "parameters": [{"value": dict(v["limits"]), "vhost": v["name"],
                        "component": "vhost-limits", "name": "limits"}
                       for v in document.get("vhosts") or [] if v.get("limits")],
        "global_parameters": [],
        "policies": _rabbit_policies(document.get("policies") or [], notes),
        "queues": queues,
        "exchanges": list(document.get("exchanges") or []),
        "bindings": list(document.get("bindings") or []),
    }
    return out, notes


def _rabbit_vhost(v: dict[str, Any]) -> dict[str, Any]:
    """A vhost as RabbitMQ 3.11+ exports it, description and tags in ``metadata``
    (3.10.8 exports the name only, losing both; its import reads this form)."""
    description, tags = v.get("description") or "", list(v.get("tags") or [])
    return {"name": v["name"], "limits": [],
            "metadata": {"description": description, "tags": tags}}


def _rabbit_policies(policies: list[dict[str, Any]], notes: list[str]) -> list[dict[str, Any]]:
    """RabbitMQ refuses a whole import over one policy key it does not know."""
    out = []
    for index, p in enumerate(policies):
        who = _who("policies", index, p)
        definition = {k: v for k, v in p["definition"].items() if k not in WARREN_POLICY_KEYS}
        for key in sorted(set(p["definition"]) - set(definition)):
            notes.append(f"{who}: {key} is WarrenMQ's own policy key; left out")
        if definition:
            out.append({**p, "definition": definition})
        else:
            notes.append(f"{who}: nothing in its definition is RabbitMQ's; policy left out")
    return out


def _rabbit_queue(index: int, q: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    who = _who("queues", index, q)
    arguments = dict(q.get("arguments") or {})
    if "x-retry-delays" in arguments:
        notes.append(f"{who}: x-retry-delays is WarrenMQ's own; RabbitMQ keeps the argument"
                     " but does not retry with backoff")
    queue_type = arguments.get("x-queue-type", "classic")
    if "x-delivery-limit" in arguments and queue_type == "classic":
        # RabbitMQ 3.10 refuses the whole import: "invalid arg 'x-delivery-limit' ... of
        # queue type rabbit_classic_queue" (only quorum queues count deliveries there).
        del arguments["x-delivery-limit"]
        notes.append(f"{who}: x-delivery-limit left out; RabbitMQ allows it on quorum"
                     " queues only (declare the queue with arguments {x-queue-type: quorum}"
                     " to export it as one)")
    return {**{k: v for k, v in q.items() if k != "type"}, "arguments": arguments,
            "type": queue_type}


# ------------------------------------------------------------------------ our YAML

_YAML_SECTIONS = ("vhosts", "users", "permissions", "topic_permissions", "policies",
                  "exchanges", "queues", "bindings")


def yaml_text(cfg: BrokerConfig) -> tuple[str, list[str]]:
    """The declarative sections as config YAML; plain passwords written as hashes."""
    notes: list[str] = []
    out: dict[str, Any] = {}
    if cfg.default_vhost != "/":
        out["default_vhost"] = cfg.default_vhost
    for section in _YAML_SECTIONS:
        entities = getattr(cfg, section)
        if entities is None or (section != "vhosts" and not entities):
            continue
        items = []
        for index, entity in enumerate(entities):
            if isinstance(entity, UserConfig) and entity.password is not None:
                notes.append(f'users[{index}] ("{entity.name}"): the plain password is'
                             " exported as a salted SHA-256 hash")
                entity = UserConfig(entity.name, password_hash=hash_password(entity.password),
                                    tags=entity.tags, loopback_only=entity.loopback_only)
            items.append(_yaml_entity(entity))
        out[section] = items
    text = yaml.safe_dump(out, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return "# WarrenMQ definitions (warrenmq definitions export --format yaml)\n" + text, notes


def _yaml_entity(entity: Any) -> dict[str, Any]:
    """The fields that are required or differ from their default, as YAML values."""
    item: dict[str, Any] = {}
    for f in fields(entity):
        value = getattr(entity, f.name)
        default = f.default
        if default is not MISSING and value == default:
            continue
        if spec_of(f).unit == "duration_ms" and isinstance(value, int):
            value = format_duration_ms(value)
        elif spec_of(f).item is not None and spec_of(f).item.unit == "duration_ms":  # type: ignore[union-attr]
            value = [format_duration_ms(v) for v in value]
        item[f.name] = _plain(value)
    return item


def _plain(value: Any) -> Any:
    if isinstance(value, FreeMap | tuple):
        return thaw(value)
    return value


def notes_text(notes: Iterable[str]) -> str:
    return "".join(f"note: {note}\n" for note in notes)
