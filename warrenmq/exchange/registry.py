"""The exchange type registry: maps an ``exchange.declare`` type name to its class.

Owns ``EXCHANGE_TYPES`` and ``create_exchange``.  It does not decide whether a declare is
allowed (names, redeclare equivalence, permissions); the broker does that.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from warrenmq.errors import CommandInvalid
from warrenmq.exchange.base import Exchange
from warrenmq.exchange.delayed import DelayedExchange
from warrenmq.exchange.direct import DirectExchange
from warrenmq.exchange.fanout import FanoutExchange
from warrenmq.exchange.headers import HeadersExchange
from warrenmq.exchange.topic import TopicExchange

EXCHANGE_TYPES: Mapping[str, type[Exchange]] = MappingProxyType(
    {cls.type_name: cls for cls in (DirectExchange, FanoutExchange, TopicExchange, HeadersExchange,
                                    DelayedExchange)}
)


def create_exchange(
    type_name: str,
    name: str,
    *,
    durable: bool = False,
    auto_delete: bool = False,
    internal: bool = False,
    arguments: Mapping[str, Any] | None = None,
) -> Exchange:
    """A new, unbound exchange of the named type.

    Raises ``CommandInvalid`` (503) for an unknown type, as RabbitMQ does.
    """
    try:
        exchange_class = EXCHANGE_TYPES[type_name]
    except KeyError:
        raise CommandInvalid(f"unknown exchange type '{type_name}'") from None
    return exchange_class(
        name,
        durable=durable,
        auto_delete=auto_delete,
        internal=internal,
        arguments=arguments,
    )
