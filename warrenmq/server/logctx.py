"""Logging context of the server edge: who a log line is about, bound through contextvars.

Each connection owns a ``contextvars.Context`` that its protocol callbacks run in
(``Connection.context``); ``connection_id`` and ``peer`` are bound in it when the socket
is accepted, ``user`` and ``vhost`` at connection.open, so every event logged while
serving that connection (a queue declared, a channel error, a dead-letter exchange
missing) carries them without passing them around. Timers and callbacks scheduled from
inside it inherit a copy (asyncio copies the current context when scheduling).
``channel`` is bound only around the handling of cold-path methods (``bound_channel``),
never per publish or ack: binding costs a few microseconds.

Owns: those helpers and ``method_name`` (RabbitMQ's name for a method, for channel and
connection errors). Must not: configure logging (``warrenmq.logging`` does) or log.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import Context
from typing import Any

import structlog

from warrenmq.protocol.methods import BY_INDEX

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_CLASSES = ("connection", "channel", "exchange", "queue", "basic", "confirm", "tx")


def _dotted(name: str) -> str:
    """``QueueDeclare`` -> ``queue.declare``, ``BasicRecoverAsync`` -> ``basic.recover_async``."""
    words = _CAMEL.sub(" ", name).lower().split()
    if words and words[0] in _CLASSES:
        return words[0] + "." + "_".join(words[1:])
    return "_".join(words)


_NAMES = {index: _dotted(cls.NAME) for index, cls in BY_INDEX.items()}


def method_name(class_id: int, method_id: int) -> str | None:
    """RabbitMQ's name for a method ("queue.declare"), None for 0/0 or an unknown one."""
    return _NAMES.get((class_id << 16) | method_id)


def bind(context: Context, **values: Any) -> None:
    """Bind ``values`` in ``context`` (for code not already running inside it)."""
    context.run(structlog.contextvars.bind_contextvars, **values)


@contextmanager
def bound_channel(number: int) -> Iterator[None]:
    """``channel`` bound in the current context for the duration of a block."""
    tokens = structlog.contextvars.bind_contextvars(channel=number)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
