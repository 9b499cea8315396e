"""Consumer: a basic.consume subscription; the server's side of ``DeliveryTarget``.

Credit lives here (design: "prefetch credit, ~30 lines"): a consumer may take messages
while its own unacked count is under its prefetch, the channel's consumers together are
under the channel's global prefetch, the channel is not paused by channel.flow, and the
connection's socket is keeping up. 0 means unlimited for both prefetch values.

Its start and end are logged (``consumer_added`` by basic.consume, ``consumer_cancelled``
with the reason: basic.cancel, queue_deleted, channel_closed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import structlog

from warrenmq.protocol.content import DeliverEncoder, encode_deliver, shortstr
from warrenmq.queues.queue import DeliveryTarget

if TYPE_CHECKING:
    from warrenmq.queues.queue import Queue
    from warrenmq.queues.ready import QueuedMessage
    from warrenmq.server.channel import Channel


log = structlog.get_logger("warrenmq.consumer")

#: Most messages handed over in one call when the prefetch allows more (or is unlimited);
#: the socket's write buffer is re-checked between batches.
BATCH: Final = 256


class Consumer(DeliveryTarget):
    __slots__ = (
        "arguments",
        "channel",
        "encoder",
        "exclusive",
        "no_ack",
        "prefetch",
        "queue",
        "tag",
        "tag_bytes",
        "unacked",
    )

    def __init__(
        self,
        channel: Channel,
        queue: Queue,
        tag: str,
        *,
        no_ack: bool,
        exclusive: bool,
        prefetch: int,
        arguments: dict[str, Any],
    ) -> None:
        self.channel = channel
        self.queue = queue
        self.tag = tag
        self.tag_bytes = shortstr(tag)
        self.encoder = DeliverEncoder(channel.number, self.tag_bytes)
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.prefetch = prefetch
        self.unacked = 0
        self.arguments = arguments

    def credit(self) -> int:
        """How many messages this consumer may be sent now (see the module docstring)."""
        channel = self.channel
        if not channel.active or not channel.conn.can_write():
            return 0
        credit = BATCH
        if self.prefetch:
            credit = min(credit, self.prefetch - self.unacked)
        if channel.global_prefetch:
            credit = min(credit, channel.global_prefetch - channel.consumer_unacked)
        return credit

    def deliver(self, queue: Queue, qms: list[QueuedMessage]) -> int:
        """Encode a basic.deliver for each message into the connection's out buffer."""
        channel = self.channel
        conn = channel.conn
        encoder = self.encoder
        limit = conn.frame_max - 8
        out = conn.out
        acks = not self.no_ack
        first = tag = channel.next_tag
        size = 0
        for qm in qms:
            message = qm.message
            body = message.body if not message.paged else message.load_body()
            if len(body) <= limit:
                data = encoder.frames(tag, qm.redelivered, message.route, qm.properties, body)
                out.append(data)
                size += len(data)
            else:
                parts = encode_deliver(channel.number, self.tag_bytes, tag, qm.redelivered,
                                       message.route, qm.properties, body, conn.frame_max)
                out.extend(parts)
                size += sum(map(len, parts))
            if acks:
                qm.consumer = self
            tag += 1
        channel.next_tag = tag
        conn.wrote(size)
        if not acks:
            queue.auto_acked(qms)
            return 0
        channel.unacked.extend(first, qms)
        count = len(qms)
        self.unacked += count
        channel.consumer_unacked += count
        return count

    def cancelled_by_server(self) -> None:
        """The queue went away under this consumer (deleted, owner gone)."""
        self.channel.server_cancel(self)

    def log_added(self) -> None:
        log.info("consumer_added", queue=self.queue.name, consumer_tag=self.tag,
                 exclusive=self.exclusive, no_ack=self.no_ack, prefetch_count=self.prefetch,
                 arguments=self.arguments)

    def log_cancelled(self, reason: str, **context: Any) -> None:
        """``context``: fields to state outright when the logging context may belong to
        another connection (a queue deleted by someone else)."""
        log.info("consumer_cancelled", queue=self.queue.name, consumer_tag=self.tag,
                 reason=reason, **context)
