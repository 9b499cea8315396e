"""confirm.select: publisher confirms (a RabbitMQ extension to AMQP 0-9-1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from warrenmq.errors import PreconditionFailed
from warrenmq.protocol.methods import Method, method_class

if TYPE_CHECKING:
    from warrenmq.server.channel import Channel

SelectOk = method_class("ConfirmSelectOk")


def confirm_select(channel: Channel, m: Method) -> None:
    if channel.tx is not None:
        raise PreconditionFailed("cannot switch from tx to confirm mode")
    channel.confirm = True
    if not m.nowait:
        channel.send(SelectOk())


HANDLERS = {method_class("ConfirmSelect").INDEX: confirm_select}
