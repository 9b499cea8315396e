"""basic.* methods except basic.publish (which the channel assembles with its content).

basic.qos follows RabbitMQ's per_consumer_qos: global=false sets the prefetch of consumers
started afterwards on the channel, global=true limits the channel's consumers together.
"""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING, Final

from warrenmq.errors import NotAllowed, NotImplemented_, PreconditionFailed
from warrenmq.protocol.content import encode_get_ok
from warrenmq.protocol.methods import Method, method_class
from warrenmq.queues.consumers import consumer_priority
from warrenmq.queues.stream import StreamQueue
from warrenmq.server.consumer import Consumer
from warrenmq.server.methods.queue import queue_name
from warrenmq.server.publish_checks import check_consumer_arguments

if TYPE_CHECKING:
    from warrenmq.queues.ready import QueuedMessage
    from warrenmq.server.channel import Channel

QosOk = method_class("BasicQosOk")
ConsumeOk = method_class("BasicConsumeOk")
CancelOk = method_class("BasicCancelOk")
GetEmpty = method_class("BasicGetEmpty")
RecoverOk = method_class("BasicRecoverOk")



def basic_qos(channel: Channel, m: Method) -> None:
    if m.prefetch_size:
        raise NotImplemented_(f"prefetch_size!=0 ({m.prefetch_size})")
    if m.global_:
        channel.global_prefetch = m.prefetch_count
    else:
        channel.prefetch_count = m.prefetch_count
    channel.send(QosOk())
    channel.redispatch()


def _consumer_tag() -> str:
    return "amq.ctag-" + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


def basic_consume(channel: Channel, m: Method) -> None:
    name = queue_name(channel, m.queue)
    channel.grant.check("read", "queue", name)  # RabbitMQ: before the lookup
    queue = channel.vhost.queue(name, channel.conn)
    tag = m.consumer_tag or _consumer_tag()
    if tag in channel.consumers:
        raise NotAllowed(f"attempt to reuse consumer tag '{tag}'")
    if m.arguments:
        check_consumer_arguments(m.arguments, f"queue '{name}' in vhost '{queue.vhost}'")
    priority = consumer_priority(m.arguments, f"queue '{name}' in vhost '{queue.vhost}'")
    queue.check_consumer(exclusive=m.exclusive)
    stream = queue if isinstance(queue, StreamQueue) else None
    start = None if stream is None else stream.consume_start(
        no_ack=m.no_ack, prefetch=channel.prefetch_count, arguments=m.arguments)
    if stream is None and "x-stream-offset" in m.arguments:  # RabbitMQ: 406 too
        raise PreconditionFailed(f"invalid arg 'x-stream-offset' for queue '{name}' in vhost"
                                 f" '{queue.vhost}' of queue type rabbit_classic_queue")
    consumer = Consumer(
        channel,
        queue,
        tag,
        no_ack=m.no_ack,
        exclusive=m.exclusive,
        prefetch=channel.prefetch_count,
        arguments=dict(m.arguments),
    )
    if not m.nowait:
        channel.send(ConsumeOk(tag))
    channel.consumers[tag] = consumer
    if stream is not None and start is not None:
        stream.add_reader(consumer, start)  # starts at its offset, then as add_consumer
    else:
        queue.add_consumer(consumer, priority)
    consumer.log_added()


def basic_cancel(channel: Channel, m: Method) -> None:
    consumer = channel.consumers.pop(m.consumer_tag, None)
    if consumer is not None:
        consumer.log_cancelled("basic.cancel")
        queue = consumer.queue
        if queue.remove_consumer(consumer):
            channel.vhost.remove_queue(queue, "auto_delete")
        elif not queue.deleted:
            queue.dispatch()  # a single active consumer's successor (nothing is requeued)
    if not m.nowait:
        channel.send(CancelOk(m.consumer_tag))


def basic_get(channel: Channel, m: Method) -> None:
    name = queue_name(channel, m.queue)
    channel.grant.check("read", "queue", name)
    queue = channel.vhost.queue(name, channel.conn)
    qm = queue.get()
    if qm is None:
        channel.send(GetEmpty(""))
        return
    tag = channel.next_tag
    channel.next_tag = tag + 1
    if not m.no_ack:
        qm.consumer = None
        channel.unacked.add(tag, qm)
        queue.track_unacked()
    msg = qm.message
    conn = channel.conn
    conn.write_parts(encode_get_ok(channel.number, tag, qm.redelivered, msg.route,
                                   queue.message_count, qm.properties, msg.load_body(),
                                   conn.frame_max))
    if m.no_ack:
        queue.auto_acked([qm])


def basic_ack(channel: Channel, m: Method) -> None:
    tx = channel.tx
    if tx is not None:  # held until tx.commit (server/transaction.py)
        tx.hold_settle(channel, m.delivery_tag, m.multiple, None)
        return
    channel.settle(channel.take_unacked(m.delivery_tag, m.multiple), None)


def basic_reject(channel: Channel, m: Method) -> None:
    tx = channel.tx
    if tx is not None:
        tx.hold_settle(channel, m.delivery_tag, False, m.requeue)
        return
    entries = channel.take_unacked(m.delivery_tag, False)
    if channel.vhost.streams_in_use:
        refuse_stream_settle(entries)
    channel.settle(entries, m.requeue)


def basic_nack(channel: Channel, m: Method) -> None:
    tx = channel.tx
    if tx is not None:
        tx.hold_settle(channel, m.delivery_tag, m.multiple, m.requeue)
        return
    entries = channel.take_unacked(m.delivery_tag, m.multiple)
    if channel.vhost.streams_in_use:
        refuse_stream_settle(entries)
    channel.settle(entries, m.requeue)


def refuse_stream_settle(entries: list[QueuedMessage]) -> None:
    """RabbitMQ 3.10: basic.nack/reject of a stream message is a 540 connection error."""
    for qm in entries:
        queue = qm.queue
        if isinstance(queue, StreamQueue):
            raise NotImplemented_(
                f"basic.nack and basic.reject not supported by stream queues {queue.where}")


def _recover(channel: Channel, m: Method) -> None:
    # RabbitMQ (rabbit_channel) only implements requeue=true; false is a 540 connection error.
    if not m.requeue:
        raise NotImplemented_("requeue=false")
    channel.requeue_unacked()


def basic_recover(channel: Channel, m: Method) -> None:
    _recover(channel, m)
    channel.send(RecoverOk())


def basic_recover_async(channel: Channel, m: Method) -> None:
    _recover(channel, m)


HANDLERS: Final = {
    method_class("BasicQos").INDEX: basic_qos,
    method_class("BasicConsume").INDEX: basic_consume,
    method_class("BasicCancel").INDEX: basic_cancel,
    method_class("BasicGet").INDEX: basic_get,
    method_class("BasicAck").INDEX: basic_ack,
    method_class("BasicReject").INDEX: basic_reject,
    method_class("BasicNack").INDEX: basic_nack,
    method_class("BasicRecover").INDEX: basic_recover,
    method_class("BasicRecoverAsync").INDEX: basic_recover_async,
}
