"""Opening a stream queue at declare: its rules checked, its log opened (cold path).

Kept apart from ``broker/vhost.py`` so declaring a classic queue runs no stream code;
the vhost calls ``open_stream`` only for ``x-queue-type: stream``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from warrenmq.errors import PreconditionFailed
from warrenmq.queues.stream import StreamQueue
from warrenmq.queues.stream_args import check_declare, parse_stream_arguments

if TYPE_CHECKING:
    from warrenmq.broker.vhost import VirtualHost


def open_stream(vhost: VirtualHost, name: str, *, durable: bool, exclusive: bool,
                auto_delete: bool, arguments: Mapping[str, Any]) -> StreamQueue:
    where = f"queue '{name}' in vhost '{vhost.name}'"
    check_declare(where, durable=durable, exclusive=exclusive, auto_delete=auto_delete)
    stream_args = parse_stream_arguments(arguments, where)
    if vhost.streams is None:
        raise PreconditionFailed(f"cannot declare stream {where}: this broker has no data"
                                 " directory for stream segments")
    queue = StreamQueue(name, vhost=vhost.name, arguments=arguments, stream_args=stream_args,
                        streams=vhost.streams, clock=vhost.clock)
    return queue
