"""exchange.declare/delete/bind/unbind."""

from __future__ import annotations

from typing import TYPE_CHECKING

from warrenmq.protocol.methods import Method, method_class

if TYPE_CHECKING:
    from warrenmq.server.channel import Channel

DeclareOk = method_class("ExchangeDeclareOk")
DeleteOk = method_class("ExchangeDeleteOk")
BindOk = method_class("ExchangeBindOk")
UnbindOk = method_class("ExchangeUnbindOk")



def exchange_declare(channel: Channel, m: Method) -> None:
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
    channel.vhost.delete_exchange(m.exchange, if_unused=m.if_unused)
    if not m.nowait:
        channel.send(DeleteOk())


def exchange_bind(channel: Channel, m: Method) -> None:
    channel.vhost.bind_exchange(m.destination, m.source, m.routing_key, m.arguments)
    if not m.nowait:
        channel.send(BindOk())


def exchange_unbind(channel: Channel, m: Method) -> None:
    channel.vhost.unbind_exchange(m.destination, m.source, m.routing_key, m.arguments)
    if not m.nowait:
        channel.send(UnbindOk())


HANDLERS = {
    method_class("ExchangeDeclare").INDEX: exchange_declare,
    method_class("ExchangeDelete").INDEX: exchange_delete,
    method_class("ExchangeBind").INDEX: exchange_bind,
    method_class("ExchangeUnbind").INDEX: exchange_unbind,
}
