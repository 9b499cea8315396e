"""The exchange type registry: maps an ``exchange.declare`` type name to its class.

Owns the one list of exchange types the broker knows (``EXCHANGE_TYPES``, a live
read-only view), ``register`` (the single way in, for the built-in types and plugins
alike), ``load_plugins`` (classes named in the ``warrenmq.exchanges`` entry-point group
of installed packages, loaded once at broker start; a broken one is a ``PluginError``
naming the entry point and its package) and ``create_exchange``. It does not decide
whether a declare is allowed (names, redeclare equivalence, permissions); the broker does.
Everything else that lists exchange types (config checks, management, the CLI, the
definitions import) reads ``EXCHANGE_TYPES`` or ``exchange_type_names()``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from types import MappingProxyType
from typing import Any, Final

import structlog

from warrenmq.errors import AMQPError, CommandInvalid
from warrenmq.exchange.base import Exchange
from warrenmq.exchange.consistent_hash import ConsistentHashExchange
from warrenmq.exchange.delayed import DelayedExchange
from warrenmq.exchange.direct import DirectExchange
from warrenmq.exchange.failure import contain
from warrenmq.exchange.fanout import FanoutExchange
from warrenmq.exchange.headers import HeadersExchange
from warrenmq.exchange.topic import TopicExchange

log = structlog.get_logger("warrenmq.exchange")

#: The entry-point group an out-of-tree package names its exchange classes in.
ENTRY_POINT_GROUP: Final = "warrenmq.exchanges"
BUILT_IN: Final = "built-in"

_types: dict[str, type[Exchange]] = {}
_origins: dict[str, str] = {}
_loaded_entry_points: set[str] = set()
_scanned: list[bool] = []

#: type name -> class, every registered type (built-in and plugin); a live view.
EXCHANGE_TYPES: Mapping[str, type[Exchange]] = MappingProxyType(_types)


class PluginError(Exception):
    """An exchange-type plugin cannot be used; the text names the entry point and package."""


def register(cls: type[Exchange], origin: str = BUILT_IN) -> None:
    """Make ``cls`` declarable under ``cls.type_name``; ``origin`` says where it came from.

    Raises ``PluginError`` for a class that is not a concrete ``Exchange`` subclass with
    a type name, or whose name is taken by another class.
    """
    if not (isinstance(cls, type) and issubclass(cls, Exchange)):
        raise PluginError(f"{origin}: {cls!r} is not a subclass of warrenmq.exchange.Exchange")
    type_name = getattr(cls, "type_name", None)
    if not isinstance(type_name, str) or not type_name or len(type_name.encode()) > 255:
        raise PluginError(f"{origin}: {cls.__qualname__} needs a class attribute type_name,"
                          " a non-empty string of at most 255 bytes")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise PluginError(f"{origin}: {cls.__qualname__} does not implement {missing}")
    existing = _types.get(type_name)
    if existing is not None and existing is not cls:
        raise PluginError(f"{origin}: exchange type '{type_name}' is already registered by"
                          f" {_origins[type_name]} ({existing.__module__}.{existing.__qualname__})")
    _types[type_name] = cls
    _origins[type_name] = origin


def unregister(type_name: str) -> None:
    """Forget a plugin type (tests); the built-in types stay."""
    if _origins.get(type_name, BUILT_IN) != BUILT_IN:
        del _types[type_name]
        del _origins[type_name]


def origin_of(type_name: str) -> str:
    """Where a registered type comes from: "built-in" or the plugin's entry point."""
    return _origins[type_name]


def exchange_type_names() -> tuple[str, ...]:
    """Every registered type name, built-in types first, in registration order."""
    return tuple(_types)


def _describe(ep: EntryPoint) -> str:
    dist = ep.dist
    package = f"package {dist.name} {dist.version}" if dist is not None else "unknown package"
    return f"exchange-type plugin '{ep.name} = {ep.value}' ({package}, entry point group" \
           f" {ENTRY_POINT_GROUP})"


def load_plugins(rescan: bool = False) -> list[str]:
    """Register every class in the ``warrenmq.exchanges`` entry-point group; returns the
    new type names. Idempotent: the installed packages are scanned once per process
    unless ``rescan``. A plugin that fails to import, is not an ``Exchange``
    subclass or whose entry-point name differs from its ``type_name`` raises
    ``PluginError`` (the broker refuses to start: a half-loaded set of types would make
    durable exchanges of the missing type vanish on restart)."""
    if _scanned and not rescan:
        return []
    _scanned.append(True)
    added: list[str] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        key = f"{ep.name}={ep.value}"
        if key in _loaded_entry_points:
            continue
        origin = _describe(ep)
        try:
            cls = ep.load()
        except Exception as exc:
            raise PluginError(f"{origin} failed to load: {type(exc).__name__}: {exc}"
                              " (fix or uninstall the package)") from exc
        register(cls, origin)
        if cls.type_name != ep.name:
            unregister(cls.type_name)
            raise PluginError(f"{origin}: the entry point's name must be the class's"
                              f" type_name '{cls.type_name}'")
        _loaded_entry_points.add(key)
        added.append(ep.name)
        log.info("exchange_type_plugin_loaded", type=ep.name, plugin=ep.value,
                 package=ep.dist.name if ep.dist is not None else None)
    return added


def create_exchange(
    type_name: str,
    name: str,
    *,
    durable: bool = False,
    auto_delete: bool = False,
    internal: bool = False,
    arguments: Mapping[str, Any] | None = None,
) -> Exchange:
    """A new, unbound exchange of the named type, its arguments checked by the type.

    Raises ``CommandInvalid`` (503) for an unknown type, as RabbitMQ does; the type's
    ``validate_arguments`` raises ``PreconditionFailed`` (406) for arguments it refuses.
    """
    try:
        exchange_class = _types[type_name]
    except KeyError:
        raise CommandInvalid(f"unknown exchange type '{type_name}'") from None
    try:
        exchange_class.validate_arguments(dict(arguments) if arguments else {})
        return exchange_class(
            name,
            durable=durable,
            auto_delete=auto_delete,
            internal=internal,
            arguments=arguments,
        )
    except AMQPError:
        raise
    except Exception as exc:  # a plugin's fault: a clear 541 on this channel only
        raise contain(exchange_class, f"create exchange '{name}'", exc) from exc


for _builtin in (DirectExchange, FanoutExchange, TopicExchange, HeadersExchange,
                 ConsistentHashExchange, DelayedExchange):
    register(_builtin)


def exchange_types_listing() -> list[dict[str, object]]:
    """The exchange types as the management API's overview lists them (RabbitMQ's shape)."""
    return [{"name": name, "description": (cls.__doc__ or "").strip().split("\n")[0],
             "enabled": True, "origin": _origins[name]} for name, cls in _types.items()]
