"""AMQP transactions (tx.select / tx.commit / tx.rollback) with RabbitMQ 3.10's semantics.

Owns a transactional channel's held work: publishes that passed their checks on arrival
(permissions, the exchange, user_id) but reach queues only at tx.commit, and the
acks/nacks/rejects taken out of the channel's unacked map but not yet applied. A commit
routes the publishes (basic.return for the unroutable mandatory ones goes out before
commit-ok), then applies the settlements in arrival order; commit-ok waits until the
store has fsynced every persistent message the commit put in a durable queue — the
group commit that releases publisher confirms releases it too
(``Server._committed`` → ``release_commits``). A rollback drops the publishes and puts
the held deliveries back in the unacked map (nothing is requeued); closing the channel
discards the transaction (``discard``), and the held deliveries are then requeued with
the channel's other unacked ones.

Only ``Channel`` calls in here, and only when ``channel.tx`` is set: a channel that never
ran tx.select pays one attribute test per publish and per ack.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import structlog

from warrenmq.errors import InternalError, PreconditionFailed
from warrenmq.protocol.content import encode_return
from warrenmq.protocol.methods import Method, method_class

if TYPE_CHECKING:
    from warrenmq.exchange.base import Exchange
    from warrenmq.message import Message
    from warrenmq.queues.ready import QueuedMessage
    from warrenmq.server.channel import Channel

log = structlog.get_logger("warrenmq.channel")

SelectOk = method_class("TxSelectOk")
CommitOk = method_class("TxCommitOk")
RollbackOk = method_class("TxRollbackOk")


class Transaction:
    """The uncommitted work of one transactional channel."""

    def __init__(self) -> None:
        self.publishes: list[tuple[Exchange, Message, bool]] = []
        # ((delivery tag, delivery) pairs, requeue): requeue None acks them, True/False
        # nacks or rejects them with that requeue flag
        self.settles: list[tuple[list[tuple[int, QueuedMessage]], bool | None]] = []
        self.acks_uncommitted = 0
        # store tickets of commits whose commit-ok waits for an fsync (0: nothing stored)
        self.committing: deque[int] = deque()

    @property
    def messages_uncommitted(self) -> int:
        return len(self.publishes)

    def hold_publish(self, exchange: Exchange, message: Message, mandatory: bool) -> None:
        self.publishes.append((exchange, message, mandatory))

    def hold_settle(self, channel: Channel, delivery_tag: int, multiple: bool,
                    requeue: bool | None) -> None:
        """Take what an ack/nack/reject names out of the unacked map now (an unknown tag
        is a 406 now, as RabbitMQ's collect_acks), and hold it until the commit."""
        if multiple:  # the tags take_unacked will take, in the same (ascending) order
            tags = [tag for tag, _ in channel.unacked.items()
                    if not delivery_tag or tag <= delivery_tag]
        else:
            tags = [delivery_tag]
        entries = channel.take_unacked(delivery_tag, multiple)
        self.settles.append((list(zip(tags, entries, strict=True)), requeue))
        self.acks_uncommitted += len(entries)

    def commit(self, channel: Channel) -> None:
        """Route the held publishes, apply the held settlements, queue the commit-ok."""
        publishes, self.publishes = self.publishes, []
        settles, self.settles = self.settles, []
        self.acks_uncommitted = 0
        vhost = channel.vhost
        conn = channel.conn
        ticket = 0
        for exchange, message, mandatory in publishes:
            routed, rejected, stored = vhost.publish(exchange, message, mandatory)
            ticket = max(ticket, stored)
            if mandatory and not routed and not rejected:
                conn.write_parts(encode_return(
                    channel.number, 312, "NO_ROUTE", message.route, message.properties,
                    message.body, conn.frame_max))
        if publishes:
            conn.published = True
        for held, requeue in settles:
            channel.settle([entry for _, entry in held], requeue)
        self.committing.append(ticket)
        self.release_commits(channel)

    def release_commits(self, channel: Channel) -> None:
        """Send, in order, the commit-oks whose messages are on disk."""
        committer = channel.conn.server.committer
        committing = self.committing
        while committing:
            ticket = committing[0]
            if ticket and committer is not None and ticket > committer.durable:
                if committer.is_failed(ticket):
                    committing.clear()
                    # RabbitMQ cannot lose a committed message silently either: the
                    # client learns of it through the connection's end.
                    channel.conn.close_with(InternalError(
                        "tx.commit failed: the message store could not write to disk"))
                return
            committing.popleft()
            if channel.state == "open":
                channel.send(CommitOk())

    def rollback(self, channel: Channel) -> None:
        """Drop the held publishes; the held deliveries are unacked again, in tag order."""
        self.publishes = []
        self._restore(channel)

    def discard(self, channel: Channel) -> None:
        """The channel is closing: forget the publishes and commit-oks; the held deliveries
        go back to the unacked map, which the channel then requeues."""
        self.publishes = []
        self.committing.clear()
        self._restore(channel)

    def _restore(self, channel: Channel) -> None:
        settles, self.settles = self.settles, []
        self.acks_uncommitted = 0
        if not settles:
            return
        channel.unacked.restore([pair for pairs, _ in settles for pair in pairs])


# ------------------------------------------------------------------ tx.* handlers


def tx_select(channel: Channel, m: Method) -> None:
    if channel.confirm:
        raise PreconditionFailed("cannot switch from confirm to tx mode")
    if channel.tx is None:
        channel.tx = Transaction()
        log.debug("channel_transactional", channel=channel.number)
    channel.send(SelectOk())


def _transaction(channel: Channel) -> Transaction:
    tx = channel.tx
    if tx is None:
        raise PreconditionFailed("channel is not transactional")
    return tx


def tx_commit(channel: Channel, m: Method) -> None:
    _transaction(channel).commit(channel)


def tx_rollback(channel: Channel, m: Method) -> None:
    _transaction(channel).rollback(channel)
    channel.send(RollbackOk())


HANDLERS = {
    method_class("TxSelect").INDEX: tx_select,
    method_class("TxCommit").INDEX: tx_commit,
    method_class("TxRollback").INDEX: tx_rollback,
}
