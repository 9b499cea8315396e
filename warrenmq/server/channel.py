"""Channel: one AMQP channel of a connection.

Owns the content assembler for basic.publish (method → header → bodies; RabbitMQ's
rabbit_command_assembler), the consumers started on it, the unacked map (delivery tag →
queue, queued message, consumer) and publisher-confirm sequence numbers. Method handlers
live in ``server/methods/<class>.py``; this module routes to them and is the one place a
channel-level ``AMQPError`` becomes channel.close with the failing method's ids (logged
as ``channel_error``). Cold-path methods run with ``channel`` bound in the logging
context; publishes and acks do not pay for that. basic.publish's write permission is
decided once per exchange name and remembered in the connection's grant (``writable``),
so the publish path costs a set lookup.
"""

from __future__ import annotations

import bisect
import struct
from collections import deque
from typing import TYPE_CHECKING, Final, cast

import structlog

from warrenmq.errors import (
    AccessRefused,
    AMQPError,
    ChannelError,
    CommandInvalid,
    NotFound,
    NotImplemented_,
    PreconditionFailed,
    SyntaxError_,
    UnexpectedFrame,
)
from warrenmq.message import Message
from warrenmq.protocol.content import encode_confirm, encode_return
from warrenmq.protocol.fields import FieldError
from warrenmq.protocol.frames import body_frame_end, content_header_end
from warrenmq.protocol.methods import (
    BY_INDEX,
    Method,
    decode_method,
    method_class,
    method_frame,
    parse_publish,
)
from warrenmq.protocol.properties import get_property
from warrenmq.protocol.properties import validate as validate_properties
from warrenmq.server.logctx import bound_channel, method_name
from warrenmq.server.methods import HANDLERS
from warrenmq.server.publish_checks import CHECKED_BITS, check_properties
from warrenmq.server.unacked import Unacked

if TYPE_CHECKING:
    from warrenmq.broker.vhost import VirtualHost
    from warrenmq.queues.queue import Queue
    from warrenmq.queues.ready import QueuedMessage
    from warrenmq.server.connection import Connection
    from warrenmq.server.consumer import Consumer
    from warrenmq.server.transaction import Transaction

log = structlog.get_logger("warrenmq.channel")

#: Methods handled with ``channel`` bound in the logging context: all but the per-message
#: basic.* ones (get, ack, nack, reject; publish never reaches the handlers).
_COLD: Final = frozenset(
    index for index, cls in BY_INDEX.items() if cls.CLASS_ID != 60
) | frozenset(
    method_class(name).INDEX
    for name in ("BasicQos", "BasicConsume", "BasicCancel", "BasicRecover", "BasicRecoverAsync")
)

_CONTENT_HEADER: Final = struct.Struct(">HHQ")
_PUBLISH_PREFIX: Final = b"\x00\x3c\x00\x28"
ChannelOpenOk: Final = method_class("ChannelOpenOk")
ChannelOpen: Final = method_class("ChannelOpen")
ChannelClose: Final = method_class("ChannelClose")
ChannelCloseOk: Final = method_class("ChannelCloseOk")
BasicCancel: Final = method_class("BasicCancel")
EMPTY_PROPERTIES: Final = b"\x00\x00"
_USER_ID_FLAG: Final = 0x10  # low byte of the property flags: bit 4 is user_id



class Channel:
    def __init__(self, conn: Connection, number: int) -> None:
        self.conn = conn
        self.number = number
        grant = conn.grant  # channels open only after connection.open set it
        assert grant is not None
        self.grant = grant
        # exchanges basic.publish may use: the grant's set, cleared in place on a change
        self.writable = grant.writable
        # topic permissions by exchange name: the grant's dict, replaced in place
        self.topic_rules = grant.topics.rules
        self.state = "open"
        self.max_message_size = conn.settings.max_message_size  # fixed for the process
        self.active = True
        self.consumers: dict[str, Consumer] = {}
        self.unacked = Unacked()
        self.next_tag = 1
        self.prefetch_count = 0
        self.global_prefetch = 0
        self.consumer_unacked = 0
        self.confirm = False
        self.publish_seq = 0
        self.confirmed = 0
        self.nacks: list[int] = []  # publish sequence numbers to nack, ascending
        self.unsynced: deque[tuple[int, int]] = deque()  # (publish seq, store ticket)
        self.last_queue = ""
        self.tx: Transaction | None = None  # set by tx.select (server/transaction.py)
        # the last publish's route bytes and their decoded (exchange, routing key)
        self._route = b""
        self._names = ("", "")
        # basic.publish awaiting its content: (exchange, routing key, flag bits, route)
        self._publish: tuple[str, str, int, bytes] | None = None
        self._properties = b""
        self._body_size = 0
        self._received = 0
        self._parts: list[bytes] = []
        self._in_body = False

    @property
    def vhost(self) -> VirtualHost:
        """The connection's virtual host (channels exist only after connection.open)."""
        vhost = self.conn.vhost
        assert vhost is not None
        return vhost

    def opened(self) -> None:
        self.conn.write(method_frame(self.number, ChannelOpenOk(b"")))

    def send(self, method: Method) -> None:
        self.conn.write(method_frame(self.number, method))

    # ----------------------------------------------------------------- frames in
    def on_method_frame(self, payload: bytes) -> None:
        if self._publish is not None:
            # RabbitMQ's command assembler names the publish whose content was cut short.
            expected = "content body" if self._in_body else "content header for class 60"
            raise UnexpectedFrame(
                f"expected {expected} on channel {self.number}, got a method frame",
                class_id=60, method_id=40,
            )
        if payload[:4] == _PUBLISH_PREFIX and self.state == "open":
            publish = parse_publish(payload)
            if publish[2] & 2:
                raise NotImplemented_("immediate=true", class_id=60, method_id=40)
            self._publish = publish
            return
        method = decode_method(payload)
        if self.state != "open":
            self._on_method_closing(method)
            return
        if method.INDEX in _COLD:
            with bound_channel(self.number):
                self._handle(method)
        else:
            self._handle(method)

    def _handle(self, method: Method) -> None:
        handler = HANDLERS.get(method.INDEX)
        vhost = self.vhost
        generation = vhost.generation
        try:
            if handler is None:
                self._unhandled(method)
            else:
                handler(self, method)
            if vhost.generation != generation:  # a cheap test: acks come through here too
                # before the reply is flushed: a declare-ok means the definition is saved
                self.conn.server.definitions_changed()
        except AMQPError as exc:
            if not exc.class_id:
                exc.class_id, exc.method_id = method.CLASS_ID, method.METHOD_ID
            if not exc.is_channel_error:
                raise
            self.close_with(exc)

    def _unhandled(self, method: Method) -> None:
        raise CommandInvalid(f"unexpected method {method.NAME} from a client")

    def _on_method_closing(self, method: Method) -> None:
        # After we sent channel.close only close-ok (or a crossing close) matters (§2.2.4).
        # After the client's close ("closed", until the rest of that read is handled),
        # RabbitMQ ignores methods too, answers another close, refuses a reopen (504).
        if isinstance(method, ChannelClose):
            self.send(ChannelCloseOk())
        elif self.state == "closed":
            if isinstance(method, ChannelOpen):
                raise ChannelError(f"second 'channel.open' seen on channel {self.number}",
                                   class_id=20, method_id=10)
        elif isinstance(method, ChannelCloseOk):
            self.conn.release_channel(self.number)

    def on_header_frame(self, payload: bytes) -> None:
        if self._publish is None or self._in_body:
            if self.state != "open":
                return
            ids = (60, 40) if self._publish is not None else (0, 0)
            raise UnexpectedFrame(f"unexpected content header frame on channel {self.number}",
                                  class_id=ids[0], method_id=ids[1])
        if len(payload) < 14:
            raise SyntaxError_("content header frame too short", class_id=60, method_id=40)
        class_id, weight, size = _CONTENT_HEADER.unpack_from(payload, 0)
        if class_id != 60 or weight != 0:  # RabbitMQ: weight must be 0, else 505
            raise UnexpectedFrame(f"content header for class {class_id} weight {weight},"
                                  " expected class 60 weight 0",
                                  class_id=60, method_id=40)
        properties = payload[12:]
        if properties != EMPTY_PROPERTIES:
            try:
                validate_properties(properties)
            except FieldError as exc:
                raise SyntaxError_(f"malformed content properties: {exc}", class_id=60,
                                   method_id=40) from exc
        self._properties = properties
        self._body_size = size
        self._received = 0
        self._parts = []
        self._in_body = True
        limit = self.conn.settings.max_message_size
        if size > limit:
            self._publish = None
            self._in_body = False
            self.close_with(PreconditionFailed(
                f"message size {size} is larger than configured max size {limit}",
                class_id=60, method_id=40))
            return
        if size == 0:
            self._complete(b"")

    def on_body_frame(self, payload: bytes) -> None:
        if not self._in_body:
            if self.state != "open":
                return
            ids = (60, 40) if self._publish is not None else (0, 0)
            raise UnexpectedFrame(f"unexpected content body frame on channel {self.number}",
                                  class_id=ids[0], method_id=ids[1])
        self._received += len(payload)
        if self._received > self._body_size:
            raise UnexpectedFrame(
                f"content body of {self._received} bytes exceeds the declared {self._body_size}",
                class_id=60, method_id=40,
            )
        if self._received == self._body_size:
            if self._parts:
                self._parts.append(payload)
                body = b"".join(self._parts)
                self._parts = []
            else:
                body = payload
            self._complete(body)
        else:
            self._parts.append(payload)

    def publish_from(self, buf: bytes, start: int, stop: int, end: int, limit: int) -> int:
        """basic.publish with its content all in ``buf``: the publish fast path.

        ``buf[start:stop]`` is a basic.publish method payload. When the content header
        and one body frame for it follow, complete and well formed (or a header saying
        the body is empty), the message is taken straight from ``buf`` — exchange,
        routing key, properties and body each sliced once — and routed; the offset
        after its last frame is returned. Anything else (a multi-frame body, content
        not read yet, a malformed or unusual frame) returns -1 and the frames take the
        frame-by-frame path, which gives every error its exact reply."""
        if self._publish is not None or self.state != "open":
            return -1
        ex_start = start + 7  # class, method (4), ticket (2), exchange length (1)
        ex_end = ex_start + buf[start + 6]
        if ex_end >= stop:
            return -1
        rk_end = ex_end + 1 + buf[ex_end]
        if rk_end + 1 != stop:
            return -1
        bits = buf[rk_end]
        header = stop + 1  # the content header frame
        if bits & 2 or end - header < 27:
            return -1
        number = self.number
        header_stop = content_header_end(buf, header, end, number, limit)
        if header_stop < 0 or buf[header + 9] or buf[header + 10]:  # weight != 0: 505 below
            return -1
        size = 0
        for i in range(header + 11, header + 19):
            size = (size << 8) | buf[i]
        # more than one body frame, or too big: the frame-by-frame path says what is wrong
        if size > limit or size > self.max_message_size:
            return -1
        following = body_frame_end(buf, header_stop + 1, end, number, size)
        if following < 0:
            return -1
        body = buf[following - 1 - size : following - 1]  # b"" when there is no body frame
        properties = buf[header + 19 : header_stop]
        route = buf[start + 6 : rk_end]
        try:
            if properties != EMPTY_PROPERTIES:
                validate_properties(properties)
            if route != self._route:
                # a publisher usually repeats its exchange and routing key: decoded once,
                # and the same str objects (hash cached) serve every dict lookup after
                self._names = (buf[ex_start:ex_end].decode(), buf[ex_end + 1 : rk_end].decode())
                self._route = route
            else:
                route = self._route
        except (FieldError, UnicodeDecodeError):
            return -1
        exchange, routing_key = self._names
        message = Message(exchange, routing_key, route, properties, body)
        self._publish_message(message, bits & 1 == 1)
        return following

    # ----------------------------------------------------------------- publishing
    def _complete(self, body: bytes) -> None:
        publish = self._publish
        assert publish is not None
        self._publish = None
        self._in_body = False
        exchange, routing_key, bits, route = publish
        self._publish_message(Message(exchange, routing_key, route, self._properties, body),
                              bool(bits & 1))

    def _publish_message(self, message: Message, mandatory: bool) -> None:
        try:
            self._route_message(message, mandatory)
        except AMQPError as exc:
            exc.class_id, exc.method_id = 60, 40
            if not exc.is_channel_error:
                raise
            self.close_with(exc)

    def _route_message(self, message: Message, mandatory: bool) -> None:
        vhost = self.conn.vhost
        assert vhost is not None
        if message.exchange not in self.writable:  # RabbitMQ: permission before lookup
            self.grant.check_publish(message.exchange, message.exchange in vhost.exchanges)
        exchange = vhost.exchanges.get(message.exchange)
        if exchange is None:
            raise NotFound(f"no exchange '{message.exchange}' in vhost '{vhost.name}'")
        if exchange.internal:
            raise AccessRefused(
                f"cannot publish to internal exchange '{exchange.name}' in vhost '{vhost.name}'"
            )
        topic_rules = self.topic_rules
        if topic_rules and exchange.name in topic_rules:  # topic authorisation
            self.grant.topics.check("write", exchange.name, exchange.type_name,
                                    message.routing_key)
        props = message.properties  # RabbitMQ checks user_id after the exchange
        if len(props) > 1:
            if props[0] & CHECKED_BITS:  # expiration, delivery_mode, headers: 406s
                check_properties(props)
            if props[1] & _USER_ID_FLAG:
                self._check_user_id(get_property(props, "user_id"))
        tx = self.tx
        if tx is not None:  # checked now, routed at tx.commit
            tx.hold_publish(exchange, message, mandatory)
            return
        routed, rejected, ticket = vhost.publish(exchange, message, mandatory)
        self.conn.published = True
        if not routed and not rejected and mandatory:
            self.conn.write_parts(encode_return(
                self.number, 312, "NO_ROUTE", message.route, message.properties, message.body,
                self.conn.frame_max))
        if self.confirm:
            self._count_publish(rejected, ticket)

    def _count_publish(self, rejected: bool, ticket: int) -> None:
        """A publish in confirm mode: a nack to send, or an ack once ``ticket`` is synced."""
        self.publish_seq += 1
        if rejected:
            self.nacks.append(self.publish_seq)
        elif ticket:
            self.unsynced.append((self.publish_seq, ticket))
        self.conn.mark_dirty(self)

    def _check_user_id(self, claimed: str) -> None:
        """RabbitMQ's check_user_id_header: user_id must be the authenticated user."""
        user = self.conn.user
        if user is not None and claimed != user.name and "impersonator" not in user.tags:
            raise PreconditionFailed(
                f"user_id property set to '{claimed}' but authenticated user was '{user.name}'"
            )

    def flush_confirms(self) -> None:
        """Confirm, in order, every publish that is settled: acks with ``multiple`` over
        each run, a basic.nack for each publish a queue refused (reject-publish) or the
        disk could not store. A persistent message is settled once the store's commit
        covering its record has been fsynced (``unsynced`` holds those still waiting)."""
        if self.publish_seq <= self.confirmed or self.state != "open":
            return
        limit = self._settled_upto()
        write = self.conn.write
        while self.nacks and self.nacks[0] <= limit:
            nacked = self.nacks.pop(0)
            if nacked - 1 > self.confirmed:
                write(encode_confirm(self.number, nacked - 1, nacked - 2 > self.confirmed, True))
            write(encode_confirm(self.number, nacked, False, False))
            self.confirmed = nacked
        if limit > self.confirmed:
            write(encode_confirm(self.number, limit, limit - self.confirmed > 1, True))
            self.confirmed = limit

    def _settled_upto(self) -> int:
        unsynced = self.unsynced
        committer = self.conn.server.committer
        while unsynced and committer is not None:
            seq, ticket = unsynced[0]
            if ticket <= committer.durable:
                unsynced.popleft()
            elif committer.is_failed(ticket):
                unsynced.popleft()
                bisect.insort(self.nacks, seq)
            else:
                return seq - 1
        return self.publish_seq

    # ----------------------------------------------------------------- consumers
    def redispatch(self) -> None:
        for queue in {c.queue for c in self.consumers.values()}:
            queue.dispatch()

    def server_cancel(self, consumer: Consumer) -> None:
        if self.consumers.get(consumer.tag) is not consumer:
            return
        del self.consumers[consumer.tag]
        consumer.log_cancelled("queue_deleted", connection_id=self.conn.id, channel=self.number)
        if self.conn.client_capabilities.get("consumer_cancel_notify") and self.state == "open":
            self.send(BasicCancel(consumer.tag, True))

    # ----------------------------------------------------------------- settling
    def settle(self, entries: list[QueuedMessage], requeue: bool | None) -> None:
        """Ack (requeue None), requeue (True) or discard (False) unacked entries."""
        touched: dict[Queue, list[QueuedMessage]]
        first = entries[0] if entries else None
        if first is not None and first.queue is entries[-1].queue \
                and first.consumer is entries[-1].consumer and self._one_source(entries):
            # the common case, one consumer of one queue: no grouping per message
            queue = first.queue
            assert queue is not None
            touched = {queue: entries}
            if first.consumer is not None:
                cast("Consumer", first.consumer).unacked -= len(entries)
                self.consumer_unacked -= len(entries)
        else:
            touched = self._group(entries)
        for queue, qms in touched.items():
            if requeue is None:
                queue.ack(qms)
            elif requeue:
                queue.requeue(qms)
            else:
                queue.discard(qms)
        if requeue is not None:
            dead = [queue for queue in touched if queue.dead]
            if dead:
                self.vhost.route_dead_letters(dead)
        dispatch = set(touched)
        if self.global_prefetch:
            dispatch.update(c.queue for c in self.consumers.values())
        for queue in dispatch:
            queue.dispatch()

    @staticmethod
    def _one_source(entries: list[QueuedMessage]) -> bool:
        queue, consumer = entries[0].queue, entries[0].consumer
        for qm in entries:
            if qm.queue is not queue or qm.consumer is not consumer:
                return False
        return True

    def _group(self, entries: list[QueuedMessage]) -> dict[Queue, list[QueuedMessage]]:
        touched: dict[Queue, list[QueuedMessage]] = {}
        for qm in entries:
            if qm.consumer is not None:
                cast("Consumer", qm.consumer).unacked -= 1
                self.consumer_unacked -= 1
            queue = qm.queue
            assert queue is not None
            touched.setdefault(queue, []).append(qm)
        return touched

    def take_unacked(self, delivery_tag: int, multiple: bool) -> list[QueuedMessage]:
        """Remove and return the entries an ack/nack/reject names (406 if unknown)."""
        return self.unacked.take(delivery_tag, multiple)

    # ----------------------------------------------------------------- closing
    def close_with(self, exc: AMQPError) -> None:
        """Close this channel with an error (channel.close), as the server."""
        if self.state != "open":
            return
        log.warning(
            "channel_error",
            channel=self.number,
            reply_code=int(exc.reply_code),
            reply_text=exc.text,
            class_id=exc.class_id,
            method_id=exc.method_id,
            method=method_name(exc.class_id, exc.method_id),
        )
        self.send(ChannelClose(int(exc.reply_code), exc.reply_text(), exc.class_id,
                               exc.method_id))
        self.state = "closing"
        self.release()

    def closed_by_client(self) -> None:
        self.release()
        self.send(ChannelCloseOk())
        self.state = "closed"
        self.conn.loop.call_soon(self.conn.forget_channel, self)

    def remove_consumers(self) -> list[Queue]:
        """Cancel this channel's consumers; returns the queues that lost one and remain
        (to dispatch once the unacked messages are back: a successor gets them first)."""
        vhost = self.conn.vhost
        consumers, self.consumers = self.consumers, {}
        remaining: list[Queue] = []
        for consumer in consumers.values():
            consumer.log_cancelled("channel_closed", channel=self.number)
            queue = consumer.queue
            if queue.remove_consumer(consumer) and vhost is not None:
                vhost.remove_queue(queue, "auto_delete")
            elif not queue.deleted:
                remaining.append(queue)
        return remaining

    def requeue_unacked(self) -> None:
        entries = self.unacked.take_all()
        if entries:
            self.settle(entries, requeue=True)

    def release(self) -> None:
        """Give back consumers and unacked messages (they return to their queues)."""
        self._publish = None
        self._in_body = False
        self._parts = []
        tx = self.tx
        if tx is not None:  # an uncommitted transaction is discarded
            tx.discard(self)
        queues = self.remove_consumers()
        self.requeue_unacked()
        for queue in queues:
            queue.dispatch()

