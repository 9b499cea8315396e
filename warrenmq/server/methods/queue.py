"""queue.declare/bind/unbind/purge/delete.

An empty queue name means "the last queue declared on this channel" (AMQP 0-9-1 §1.7.2),
and for queue.bind an empty routing key then means that queue's name too.

Permissions as RabbitMQ's access-control table, checked before the queue is looked up:
declare (not passive) needs configure on the queue, and for a new queue with a
dead-letter exchange also read on the queue and write on that exchange; delete needs
configure, purge needs read; bind and unbind need write on the queue and read on the
exchange.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from warrenmq.broker.permissions import named_exchange
from warrenmq.broker.vhost import server_name
from warrenmq.errors import NotFound
from warrenmq.protocol.methods import Method, method_class

if TYPE_CHECKING:
    from warrenmq.server.channel import Channel

DeclareOk = method_class("QueueDeclareOk")
BindOk = method_class("QueueBindOk")
UnbindOk = method_class("QueueUnbindOk")
PurgeOk = method_class("QueuePurgeOk")
DeleteOk = method_class("QueueDeleteOk")



def queue_name(channel: Channel, name: str) -> str:
    """Expand the empty-name shortcut (RabbitMQ: 404 when nothing was declared)."""
    if name:
        return name
    if not channel.last_queue:
        raise NotFound("no previously declared queue")
    return channel.last_queue


def queue_declare(channel: Channel, m: Method) -> None:
    vhost = channel.vhost
    conn = channel.conn
    name = queue_name(channel, m.queue) if m.passive else m.queue or server_name()
    existed = name in vhost.queues
    if not m.passive:
        channel.grant.check("configure", "queue", name)
        dlx = named_exchange(m.arguments.get("x-dead-letter-exchange"))
        if dlx is not None and not existed:
            channel.grant.check("read", "queue", name)
            channel.grant.check("write", "exchange", dlx)
    queue = vhost.declare_queue(
        name,
        owner=conn,
        passive=m.passive,
        durable=m.durable,
        exclusive=m.exclusive,
        auto_delete=m.auto_delete,
        arguments=m.arguments,
        server_named=not m.queue,
    )
    if not existed and queue.exclusive:
        conn.exclusive_queues.append(queue)
    channel.last_queue = queue.name
    if not m.nowait:
        channel.send(DeclareOk(queue.name, queue.message_count, queue.consumer_count))


def _check_binding(channel: Channel, queue: str, exchange: str, key: str) -> None:
    channel.grant.check("write", "queue", queue)
    if exchange:
        channel.grant.check("read", "exchange", exchange)
        source = channel.vhost.exchanges.get(exchange)
        if source is not None:  # topic authorisation: the binding key, read access
            channel.grant.topics.check("read", exchange, source.type_name, key)


def queue_bind(channel: Channel, m: Method) -> None:
    name = queue_name(channel, m.queue)
    key = m.routing_key if (m.queue or m.routing_key) else name
    _check_binding(channel, name, m.exchange, key)
    channel.vhost.bind_queue(name, m.exchange, key, m.arguments, channel.conn)
    if not m.nowait:
        channel.send(BindOk())


def queue_unbind(channel: Channel, m: Method) -> None:
    name = queue_name(channel, m.queue)
    key = m.routing_key if (m.queue or m.routing_key) else name
    _check_binding(channel, name, m.exchange, key)
    channel.vhost.unbind_queue(name, m.exchange, key, m.arguments, channel.conn)
    channel.send(UnbindOk())


def queue_purge(channel: Channel, m: Method) -> None:
    name = queue_name(channel, m.queue)
    channel.grant.check("read", "queue", name)
    count = channel.vhost.purge_queue(name, channel.conn)
    if not m.nowait:
        channel.send(PurgeOk(count))


def queue_delete(channel: Channel, m: Method) -> None:
    vhost = channel.vhost
    name = queue_name(channel, m.queue)
    channel.grant.check("configure", "queue", name)
    if name not in vhost.queues:
        # RabbitMQ: deleting a queue that does not exist succeeds with a count of 0.
        if not m.nowait:
            channel.send(DeleteOk(0))
        return
    count, consumers = vhost.delete_queue(
        name, owner=channel.conn, if_unused=m.if_unused, if_empty=m.if_empty
    )
    if not m.nowait:  # RabbitMQ: delete-ok before the basic.cancel of its consumers
        channel.send(DeleteOk(count))
    for consumer in consumers:
        consumer.cancelled_by_server()  # type: ignore[attr-defined]


HANDLERS = {
    method_class("QueueDeclare").INDEX: queue_declare,
    method_class("QueueBind").INDEX: queue_bind,
    method_class("QueueUnbind").INDEX: queue_unbind,
    method_class("QueuePurge").INDEX: queue_purge,
    method_class("QueueDelete").INDEX: queue_delete,
}
