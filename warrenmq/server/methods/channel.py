"""channel.* methods on an open channel (channel.open itself is handled by the connection)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from warrenmq.errors import ChannelError
from warrenmq.protocol.methods import Method, method_class

if TYPE_CHECKING:
    from warrenmq.server.channel import Channel

FlowOk = method_class("ChannelFlowOk")


def channel_open(channel: Channel, method: Method) -> None:
    # AMQP 0-9-1 §1.5.2.1: opening an already open channel is a connection error.
    raise ChannelError(f"second 'channel.open' seen on channel {channel.number}")


def channel_flow(channel: Channel, method: Method) -> None:
    channel.active = bool(method.active)
    channel.send(FlowOk(channel.active))
    if channel.active:
        channel.redispatch()


def channel_close(channel: Channel, method: Method) -> None:
    channel.closed_by_client()


def channel_close_ok(channel: Channel, method: Method) -> None:
    """A close-ok we never asked for; ignore it as RabbitMQ does."""


def channel_flow_ok(channel: Channel, method: Method) -> None:
    """The server never sends channel.flow, so a flow-ok needs nothing."""


HANDLERS = {
    method_class("ChannelOpen").INDEX: channel_open,
    method_class("ChannelFlow").INDEX: channel_flow,
    method_class("ChannelFlowOk").INDEX: channel_flow_ok,
    method_class("ChannelClose").INDEX: channel_close,
    method_class("ChannelCloseOk").INDEX: channel_close_ok,
}
