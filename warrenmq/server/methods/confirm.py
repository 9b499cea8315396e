"""confirm.select: publisher confirms (a RabbitMQ extension to AMQP 0-9-1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from warrenmq.protocol.methods import Method, method_class

if TYPE_CHECKING:
    from warrenmq.server.channel import Channel

SelectOk = method_class("ConfirmSelectOk")


def confirm_select(channel: Channel, m: Method) -> None:
    channel.confirm = True
    if not m.nowait:
        channel.send(SelectOk())


HANDLERS = {method_class("ConfirmSelect").INDEX: confirm_select}
