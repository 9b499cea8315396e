"""exchange.declare/delete/bind/unbind.

Permissions as RabbitMQ's access-control table (checked after the type and
default-exchange checks RabbitMQ makes first, before the exchange is looked up):
declare needs configure on the exchange, and for a new exchange with an
alternate-exchange also read on it and write on the alternate; delete needs configure;
bind and unbind need write on the destination and read on the source.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from warrenmq.broker.permissions import named_exchange
from warrenmq.exchange import EXCHANGE_TYPES
from warrenmq.protocol.methods import Method, method_class

if TYPE_CHECKING:
    from warrenmq.server.channel import Channel

DeclareOk = method_class("ExchangeDeclareOk")
DeleteOk = method_class("ExchangeDeleteOk")
BindOk = method_class("ExchangeBindOk")
UnbindOk = method_class("ExchangeUnbindOk")



def exchange_declare(channel: Channel, m: Method) -> None:
    if not m.passive and m.exchange and m.type in EXCHANGE_TYPES:
        grant = channel.grant
        grant.check("configure", "exchange", m.exchange)
        alternate = named_exchange(m.arguments.get("alternate-exchange"))
        if alternate is not None and m.exchange not in channel.vhost.exchanges:
            grant.check("read", "exchange", m.exchange)
            grant.check("write", "exchange", alternate)
    channel.vhost.declare_exchange(
        m.exchange,
        m.type,
        passive=m.passive,
        durable=m.durable,
        auto_delete=m.auto_delete,
        internal=m.internal,
        arguments=m.arguments,
    )
    if not m.nowait:
        channel.send(DeclareOk())


def exchange_delete(channel: Channel, m: Method) -> None:
    if m.exchange and not m.exchange.startswith("amq."):
        channel.grant.check("configure", "exchange", m.exchange)
    channel.vhost.delete_exchange(m.exchange, if_unused=m.if_unused)
    if not m.nowait:
        channel.send(DeleteOk())


def _check_binding(channel: Channel, m: Method) -> None:
    channel.grant.check("write", "exchange", m.destination)
    if m.source and m.destination:
        channel.grant.check("read", "exchange", m.source)
        source = channel.vhost.exchanges.get(m.source)
        if source is not None:  # topic authorisation: the binding key, read access
            channel.grant.topics.check("read", m.source, source.type_name, m.routing_key)


def exchange_bind(channel: Channel, m: Method) -> None:
    _check_binding(channel, m)
    channel.vhost.bind_exchange(m.destination, m.source, m.routing_key, m.arguments)
    if not m.nowait:
        channel.send(BindOk())


def exchange_unbind(channel: Channel, m: Method) -> None:
    _check_binding(channel, m)
    channel.vhost.unbind_exchange(m.destination, m.source, m.routing_key, m.arguments)
    if not m.nowait:
        channel.send(UnbindOk())


HANDLERS = {
    method_class("ExchangeDeclare").INDEX: exchange_declare,
    method_class("ExchangeDelete").INDEX: exchange_delete,
    method_class("ExchangeBind").INDEX: exchange_bind,
    method_class("ExchangeUnbind").INDEX: exchange_unbind,
}
