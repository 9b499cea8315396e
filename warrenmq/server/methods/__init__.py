"""Method handlers, one module per AMQP class; ``HANDLERS`` maps method index → handler.

A handler takes the channel and the decoded method, calls into the virtual host and
writes the reply. It raises typed errors and leaves their translation to the channel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from warrenmq.protocol.methods import Method

if TYPE_CHECKING:
    from warrenmq.server.channel import Channel

Handler = Callable[["Channel", Method], None]


def _collect() -> dict[int, Handler]:
    from warrenmq.server import transaction
    from warrenmq.server.methods import basic, channel, confirm, exchange, queue

    table: dict[int, Handler] = {}
    for module in (channel, exchange, queue, basic, confirm, transaction):
        table.update(module.HANDLERS)
    return table


HANDLERS: dict[int, Handler] = _collect()
