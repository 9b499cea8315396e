"""The config's declarations on a running broker: at start, on SIGHUP, and when saved.

Composition-layer logic (it reads the config and calls the broker): the declarative
sections -- vhosts, users, permissions, policies, exchanges, queues, bindings -- become
a definitions document (``config.rabbit.declarations``) that ``broker.apply`` checks and
applies. At start a conflict with an existing durable entity stops the broker with the
config file's line (exit 2). A reload applies additions and safe changes (vhost and
user limits included), removes users, permissions, policies and limits the file no longer lists,
swaps in the new ``limits`` and ``auth`` settings (``live_settings``), and reports what
it cannot apply live (listeners, storage, a changed queue's arguments) and what it
never does (delete an exchange, queue or binding). Must not touch sockets or await.

Saving: users, permissions and policies the config declares are left out of the data
directory's definitions (the config declares them again at every start, so removing
one from the file removes it); those made at run time (definitions import, the
management API) are kept, and so are limits set through the API on users and vhosts the
config declares (``user_limits``), except the limits the config itself states. Vhosts
and durable topology are always kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from warrenmq.broker.apply import Applied, DefinitionsConflict, apply
from warrenmq.broker.broker import Broker
from warrenmq.broker.definitions import mark_changed
from warrenmq.config import BrokerConfig, ConfigError
from warrenmq.config.rabbit import declarations, entity_key
from warrenmq.config.spec import ConfigSource
from warrenmq.live_settings import apply_live_settings
from warrenmq.logging import configure_logging
from warrenmq.server.listener import Server

log = structlog.get_logger("warrenmq.config")

#: Settings a reload cannot change on a running broker.
RESTART_ONLY = ("listeners", "storage", "management", "default_vhost",
                "memory_high_watermark_bytes", "write_buffer_high_water",
                "write_buffer_low_water")
#: Sections whose entries the config owns (not saved in the data directory).
CONFIG_OWNED = ("users", "permissions", "topic_permissions", "policies")


def _source(config: BrokerConfig) -> ConfigSource:
    return config.source if config.source is not None else ConfigSource("<config>")


def declare(broker: Broker, config: BrokerConfig) -> Applied:
    """Apply the config's declarations at start, before any client connects.

    Raises ConfigError (each problem at the config entry's file:line) on a conflict with
    what the data directory restored; nothing is saved then.
    """
    try:
        applied = apply(broker, declarations(config), strict=True)
    except DefinitionsConflict as exc:
        source = _source(config)
        raise ConfigError([source.problem((issue.section, issue.index), issue.message)
                           for issue in exc.issues]) from None
    if applied.notes:
        log.warning("config_not_acted_on", notes=applied.notes)
    return applied


def warn_start(config: BrokerConfig) -> None:
    """Log what a config file holds that deserves a warning (cold, once at start)."""
    source = config.source
    if source is None:
        return
    plain = [u.name for index, u in enumerate(config.users)
             if u.password is not None and f"users[{index}]" in source.positions]
    if plain:
        log.warning("plain_password_in_config", users=plain, file=source.file,
                    hint="development only; give password_hash instead (RabbitMQ's salted"
                         " SHA-256, as `warrenmq definitions export` writes it)")
    if source.notes:
        log.warning("definitions_not_applied", file=source.file, notes=list(source.notes))


class SavedDefinitions:
    """Wraps the data directory's save: the config's own users, permissions and
    policies are left out. ``config`` follows reloads."""

    def __init__(self, save: Callable[[dict[str, Any]], None], config: BrokerConfig) -> None:
        self.save = save
        self.config = config

    def __call__(self, document: dict[str, Any]) -> None:
        owned = declarations(self.config)
        out = dict(document)
        for section in CONFIG_OWNED:
            mine = {entity_key(section, entry) for entry in owned[section]}
            out[section] = [entry for entry in document.get(section, [])
                            if entity_key(section, entry) not in mine]
        stated = {(kind, e["name"]): set(e.get("limits") or {})
                  for kind in ("vhosts", "users") for e in owned[kind]}
        # limits set at run time (the management API) on users the config declares:
        # kept apart, as their user entries are not saved; limits the config itself
        # states are its own (a reload or restart sets them from the file)
        out["user_limits"] = [
            {"user": e["name"], "limits": extra}
            for e in document.get("users", []) if ("users", e["name"]) in stated
            and (extra := _unstated(e, stated[("users", e["name"])]))]
        out["vhosts"] = [
            {**e, "limits": _unstated(e, stated[("vhosts", e["name"])])}
            if ("vhosts", e["name"]) in stated and e.get("limits") else e
            for e in document.get("vhosts", [])]
        self.save(out)


def _unstated(entry: dict[str, Any], stated: set[str]) -> dict[str, Any]:
    return {k: v for k, v in (entry.get("limits") or {}).items() if k not in stated}


def reload(server: Server, old: BrokerConfig, new: BrokerConfig) -> dict[str, list[str]]:
    """Apply a re-read config to the running broker; returns (and logs) the report."""
    broker = server.broker
    before, after = declarations(old), declarations(new)
    removed: list[str] = []
    for section in CONFIG_OWNED:
        keep = {entity_key(section, e) for e in after[section]}
        for entry in before[section]:
            if entity_key(section, entry) not in keep and _remove(broker, section, entry):
                removed.append(_describe(section, entry))
    removed += _clear_dropped_limits(broker, before, after)
    applied = apply(broker, after, strict=False)
    if old.logging != new.logging:
        configure_logging(new.logging)
        applied.changed.append("logging")
    settings_changed, not_live = apply_live_settings(server, old, new)
    applied.changed += settings_changed
    not_live += [f"{name} (restart to apply)" for name in RESTART_ONLY
                 if getattr(old, name) != getattr(new, name)]
    source = _source(new)
    not_live += [str(source.problem((i.section, i.index), i.message)) for i in applied.issues]
    kept = _kept(before, after)
    if applied.added or applied.changed or removed:
        mark_changed(broker)
    report = {"added": applied.added, "changed": applied.changed, "removed": removed,
              "not_applied": not_live, "not_deleted": kept, "notes": applied.notes}
    log.info("config_reloaded", file=source.file, added=applied.added,
             changed=applied.changed, removed=removed)
    if not_live or kept or applied.notes:
        log.warning("config_reload_incomplete", not_applied=not_live, not_deleted=kept,
                    notes=applied.notes,
                    hint="exchanges, queues and bindings are never deleted on reload")
    return report


def _clear_dropped_limits(broker: Broker, before: dict[str, Any], after: dict[str, Any]
                          ) -> list[str]:
    """Vhost and user limits the old file set and the new one no longer does."""
    cleared: list[str] = []
    for section, kind in (("vhosts", "vhost"), ("users", "user")):
        now = {e["name"]: e.get("limits") or {} for e in after[section]}
        table = broker.vhost_limits if kind == "vhost" else broker.user_limits
        for entry in before[section]:
            if entry["name"] not in (broker.vhosts if kind == "vhost" else broker.users):
                continue
            for limit in entry.get("limits") or {}:
                if limit not in now.get(entry["name"], {}) \
                        and limit in table.get(entry["name"], {}):
                    broker.set_limit(kind, entry["name"], limit, None)
                    cleared.append(f'{limit} limit of {kind} "{entry["name"]}"')
    return cleared


def _remove(broker: Broker, section: str, entry: dict[str, Any]) -> bool:
    if section == "users":
        return bool(broker.delete_user(entry["name"]))
    if section == "permissions":
        return bool(broker.clear_permission(entry["user"], entry["vhost"]))
    if section == "topic_permissions":
        return broker.clear_topic_permission(entry["user"], entry["vhost"], entry["exchange"])
    return bool(broker.clear_policy(entry["vhost"], entry["name"]))


def _describe(section: str, entry: dict[str, Any]) -> str:
    if section == "users":
        return f'user "{entry["name"]}"'
    if section == "permissions":
        return f'permission of user "{entry["user"]}" in vhost "{entry["vhost"]}"'
    if section == "topic_permissions":
        return (f'topic permission of user "{entry["user"]}" for exchange'
                f' "{entry["exchange"]}" in vhost "{entry["vhost"]}"')
    return f'policy "{entry["name"]}" in vhost "{entry["vhost"]}"'


def _kept(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Entities the old config declared and the new one does not: left in place."""
    kept = []
    for section in ("vhosts", "exchanges", "queues", "bindings"):
        keep = {entity_key(section, e) for e in after[section]}
        kept += [_entity(section, e) for e in before[section]
                 if entity_key(section, e) not in keep]
    return kept


def _entity(section: str, e: dict[str, Any]) -> str:
    if section == "vhosts":
        return f'vhost "{e["name"]}"'
    if section == "bindings":
        return (f'binding of {e["destination_type"]} "{e["destination"]}" to exchange'
                f' "{e["source"]}" with routing key "{e["routing_key"]}" in vhost "{e["vhost"]}"')
    return f'{section[:-1]} "{e["name"]}" in vhost "{e["vhost"]}"'
