"""The routing layer: exchanges turn a routing key and headers into destinations.

This package owns bindings and routing only.  It imports nothing from warrenmq except
``warrenmq.errors``, does no I/O and never awaits; the broker owns queues, delivery and
exchange-to-exchange traversal.
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
from warrenmq.exchange.direct import DirectExchange
from warrenmq.exchange.fanout import FanoutExchange
from warrenmq.exchange.headers import HeadersExchange
from warrenmq.exchange.registry import EXCHANGE_TYPES, create_exchange
from warrenmq.exchange.topic import TopicExchange, split_topic_key

__all__ = [
    "EXCHANGE_TYPES",
    "Binding",
    "Destination",
    "DirectExchange",
    "Exchange",
    "ExchangeOptions",
    "FanoutExchange",
    "HeadersExchange",
    "HeadersGetter",
    "TopicExchange",
    "canonical_arguments",
    "canonical_value",
    "create_exchange",
    "split_topic_key",
]
