"""Whole-config rules for the declarative sections: references, uniqueness, vhosts.

Owns the checks that need more than one entity: every entity's vhost is listed, names
are unique per vhost, a binding's source and destination are declared (the standard
``amq.*`` exchanges count as declared), a binding key fits its exchange type, and a
permission names a known user. Each yields ``(key path, message)`` findings the loader
locates in the file. Must not import the broker or read files.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from warrenmq.config.spec import Finding
from warrenmq.config.topology import STANDARD_EXCHANGES, X_MATCH_MODES, BindingConfig

if TYPE_CHECKING:
    from warrenmq.config.schema import BrokerConfig

#: Sections whose entities carry a ``vhost`` key.
VHOST_SECTIONS = ("permissions", "topic_permissions", "policies", "exchanges", "queues",
                  "bindings")


def vhost_of(cfg: BrokerConfig, entity: Any) -> str:
    """The entity's vhost; an entity without one lives in the default vhost."""
    vhost = entity.vhost
    return cfg.default_vhost if vhost is None else str(vhost)


def _entities(cfg: BrokerConfig, section: str) -> Sequence[Any]:
    """A section's entities; ``None`` marks one that failed to load (see ``Rule``)."""
    return getattr(cfg, section) or ()


def vhosts_listed(cfg: BrokerConfig) -> Iterator[Finding]:
    names = {v.name for v in cfg.vhosts}
    shown = ", ".join(f'"{v.name}"' for v in cfg.vhosts)
    for section in VHOST_SECTIONS:
        for index, entity in enumerate(_entities(cfg, section)):
            if entity is not None and entity.vhost is not None and entity.vhost not in names:
                yield ((section, index, "vhost"),
                       f'no vhost named "{entity.vhost}" (vhosts: {shown})')


def unique_per_vhost(cfg: BrokerConfig) -> Iterator[Finding]:
    keyed: list[tuple[str, str, Any, str]] = []  # section, key field, key, description
    for section, what in (("exchanges", "exchange"), ("queues", "queue"),
                          ("policies", "policy")):
        for entity in _entities(cfg, section):
            if entity is None:
                keyed.append((section, "", None, ""))
                continue
            v = vhost_of(cfg, entity)
            keyed.append((section, "name", (v, entity.name),
                          f"duplicate {what} \"{entity.name}\" in vhost \"{v}\""))
    for p in _entities(cfg, "permissions"):
        if p is None:
            keyed.append(("permissions", "", None, ""))
            continue
        v = vhost_of(cfg, p)
        keyed.append(("permissions", "user", (p.user, v),
                      f"duplicate permission for user \"{p.user}\" in vhost \"{v}\""))
    for b in _entities(cfg, "bindings"):
        if b is None:
            keyed.append(("bindings", "", None, ""))
            continue
        v = vhost_of(cfg, b)
        keyed.append(("bindings", "", (v, b.source, b.destination, b.destination_type,
                                        b.routing_key, b.arguments),
                      f"duplicate binding of \"{b.destination}\" to \"{b.source}\" with"
                      f" routing key \"{b.routing_key}\" in vhost \"{v}\""))
    seen: set[tuple[str, Any]] = set()
    counters: dict[str, int] = {}
    for section, key_field, key, message in keyed:
        index = counters.get(section, 0)
        counters[section] = index + 1
        if key is None:
            continue
        if (section, key) in seen:
            yield ((section, index, key_field) if key_field else (section, index)), message
        seen.add((section, key))


def binding_references(cfg: BrokerConfig) -> Iterator[Finding]:
    # An exchange or queue entry that failed to load is None here: its name is unknown,
    # so references of that kind are not judged (its own problem is reported already).
    exchanges_known = None not in cfg.exchanges
    queues_known = None not in cfg.queues
    declared: dict[str, dict[str, str]] = {}  # vhost -> exchange name -> type
    queues: set[tuple[str, str]] = set()
    for x in cfg.exchanges:
        if x is not None:
            declared.setdefault(vhost_of(cfg, x), dict(STANDARD_EXCHANGES))[x.name] = x.type
    for q in cfg.queues:
        if q is not None:
            queues.add((vhost_of(cfg, q), q.name))
    for index, binding in enumerate(cfg.bindings):
        if binding is None:
            continue
        v = vhost_of(cfg, binding)
        exchanges = declared.get(v, STANDARD_EXCHANGES)
        source_type = exchanges.get(binding.source)
        if binding.source and source_type is None and exchanges_known:
            yield ((("bindings", index, "source"),
                    f'no exchange "{binding.source}" is declared in vhost "{v}"'))
        if binding.destination_type == "queue":
            if (v, binding.destination) not in queues and queues_known:
                yield ((("bindings", index, "destination"),
                        f'no queue "{binding.destination}" is declared in vhost "{v}"'))
        elif binding.destination not in exchanges and exchanges_known:
            yield ((("bindings", index, "destination"),
                    f'no exchange "{binding.destination}" is declared in vhost "{v}"'))
        yield from _binding_key(index, binding, source_type)


def _binding_key(index: int, binding: BindingConfig, source_type: str | None) -> Iterator[Finding]:
    if source_type == "topic":
        for word in binding.routing_key.split("."):
            if word not in ("*", "#") and ("*" in word or "#" in word):
                yield (("bindings", index, "routing_key"),
                       f'invalid topic pattern "{binding.routing_key}": "*" and "#" must be'
                       f' whole words between dots (got the word "{word}")')
                return
    if source_type == "headers":
        mode = binding.arguments.get("x-match", "all")
        if not isinstance(mode, str) or mode not in X_MATCH_MODES:
            shown = f'"{mode}"' if isinstance(mode, str) else repr(mode)
            yield (("bindings", index, "arguments", "x-match"),
                   "expected one of " + ", ".join(f'"{m}"' for m in X_MATCH_MODES)
                   + f", got {shown}")
    if source_type == "x-consistent-hash":  # the key is the queue's weight, 1..10000
        from warrenmq.errors import PreconditionFailed
        from warrenmq.exchange.consistent_hash import parse_weight

        try:
            parse_weight(binding.routing_key)
        except PreconditionFailed as exc:
            yield (("bindings", index, "routing_key"),
                   f"a consistent-hash binding key is the queue's weight: {exc.text}")


def permission_users(cfg: BrokerConfig) -> Iterator[Finding]:
    users = {u.name for u in cfg.users}
    for index, permission in enumerate(cfg.permissions or ()):
        if permission is not None and permission.user not in users:
            yield (("permissions", index, "user"),
                   f'no user named "{permission.user}" in users')



def topic_permission_users(cfg: BrokerConfig) -> Iterator[Finding]:
    users = {u.name for u in cfg.users}
    seen: set[tuple[str, str, str]] = set()
    for index, permission in enumerate(cfg.topic_permissions or ()):
        if permission is None:
            continue
        if permission.user not in users:
            yield (("topic_permissions", index, "user"),
                   f'no user named "{permission.user}" in users')
        key = (permission.user, vhost_of(cfg, permission), permission.exchange)
        if key in seen:
            yield (("topic_permissions", index, "exchange"),
                   f'duplicate topic permission of user "{key[0]}" for exchange "{key[2]}"'
                   f' in vhost "{key[1]}"')
        seen.add(key)
