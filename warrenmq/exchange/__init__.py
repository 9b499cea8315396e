"""The routing layer: exchanges turn a routing key and headers into destinations.

This package owns bindings and routing only, and the registry of exchange types (the
built-in ones and plugins found through the ``warrenmq.exchanges`` entry-point group;
docs/plugins.md).  It imports nothing from warrenmq except ``warrenmq.errors`` (and
``protocol.properties``, to read a property a type hashes on), does no I/O and never
awaits; the broker owns queues, delivery and exchange-to-exchange traversal.
"""

from warrenmq.exchange.base import (
    Binding,
    Destination,
    Exchange,
    ExchangeOptions,
    HeadersGetter,
    canonical_arguments,
    canonical_value,
)
from warrenmq.exchange.consistent_hash import ConsistentHashExchange
from warrenmq.exchange.direct import DirectExchange
from warrenmq.exchange.failure import ExchangeTypeFailed
from warrenmq.exchange.fanout import FanoutExchange
from warrenmq.exchange.headers import HeadersExchange
from warrenmq.exchange.registry import (
    EXCHANGE_TYPES,
    PluginError,
    create_exchange,
    load_plugins,
    register,
)
from warrenmq.exchange.topic import TopicExchange, split_topic_key

__all__ = [
    "EXCHANGE_TYPES",
    "Binding",
    "ConsistentHashExchange",
    "Destination",
    "DirectExchange",
    "Exchange",
    "ExchangeOptions",
    "ExchangeTypeFailed",
    "FanoutExchange",
    "HeadersExchange",
    "HeadersGetter",
    "PluginError",
    "TopicExchange",
    "canonical_arguments",
    "canonical_value",
    "create_exchange",
    "load_plugins",
    "register",
    "split_topic_key",
]
