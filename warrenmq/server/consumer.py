"""Consumer: a basic.consume subscription; the server's side of ``DeliveryTarget``.

Credit lives here (design: "prefetch credit, ~30 lines"): a consumer may take a message
while its own unacked count is under its prefetch, the channel's consumers together are
under the channel's global prefetch, the channel is not paused by channel.flow, and the
connection's socket is keeping up. 0 means unlimited for both prefetch values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from warrenmq.protocol.methods import deliver_frames, encode_deliver, shortstr

if TYPE_CHECKING:
    from warrenmq.queues.queue import Queue, QueuedMessage
    from warrenmq.server.channel import Channel


class Consumer:
    __slots__ = (
        "arguments",
        "channel",
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
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.prefetch = prefetch
        self.unacked = 0
        self.arguments = arguments

    def has_credit(self) -> bool:
        channel = self.channel
        if not channel.active:
            return False
        if self.prefetch and self.unacked >= self.prefetch:
            return False
        if channel.global_prefetch and channel.consumer_unacked >= channel.global_prefetch:
            return False
        return channel.conn.can_write()

    def deliver(self, queue: Queue, qm: QueuedMessage) -> bool:
        channel = self.channel
        tag = channel.next_tag
        channel.next_tag = tag + 1
        message = qm.message
        conn = channel.conn
        body = message.body
        if 0 < len(body) <= conn.frame_max - 8:
            # Inlined single-body-frame case of encode_deliver (the common one).
            data = deliver_frames(channel.number, self.tag_bytes, tag, qm.redelivered,
                                  message.route, message.properties, body)
            conn._out.append(data)  # noqa: SLF001 - hot path, see Connection.write
            conn._out_bytes += len(data)  # noqa: SLF001
            if conn._flush_handle is None:  # noqa: SLF001
                conn.schedule_flush()
        else:
            conn.write_parts(
                encode_deliver(channel.number, self.tag_bytes, tag, qm.redelivered,
                               message.route, message.properties, body, conn.frame_max)
            )
        if self.no_ack:
            return False
        channel.unacked[tag] = (queue, qm, self)
        self.unacked += 1
        channel.consumer_unacked += 1
        return True

    def cancelled_by_server(self) -> None:
        """The queue went away under this consumer (deleted, owner gone)."""
        self.channel.server_cancel(self)
