"""Containment of a failing exchange type: an exception from its code becomes a clear error.

Owns ``ExchangeTypeFailed``, the error a client sees when an exchange type's own code
(a plugin's ``route``, ``validate_binding``, ``validate_arguments``, ``hold``, ...)
raises something other than an ``AMQPError``. It closes the one channel that used the
exchange with 541 INTERNAL_ERROR, naming the exchange, its type and the exception, and
logs the traceback once; the connection, the broker and every other client go on.

Why a channel error with 541: the fault is the broker's (a plugin's), not the client's
(so not 406/404), and it is not a protocol fault of the connection, so only the channel
that met it closes. RabbitMQ reports a crash inside the broker as INTERNAL_ERROR too.
Must not import anything above ``warrenmq.errors``.
"""

from __future__ import annotations

from typing import Any

import structlog

from warrenmq.errors import InternalError

log = structlog.get_logger("warrenmq.exchange")


class ExchangeTypeFailed(InternalError):
    """541 INTERNAL_ERROR, closing the channel only (see the module docstring)."""

    @property
    def is_channel_error(self) -> bool:
        return True


def contain(exchange: Any, action: str, exc: BaseException) -> ExchangeTypeFailed:
    """The error to raise for ``exc`` raised by ``exchange``'s type while doing ``action``.

    ``exchange`` is an ``Exchange`` or an exchange class (``validate_arguments`` runs
    before there is an instance).
    """
    cls = exchange if isinstance(exchange, type) else type(exchange)
    type_name = getattr(cls, "type_name", cls.__qualname__)
    name = getattr(exchange, "name", None)
    where = f"exchange '{name}' of type '{type_name}'" if name is not None else (
        f"exchange type '{type_name}'")
    log.error("exchange_type_failed", exchange=name, type=type_name, action=action,
              module=cls.__module__, error=f"{type(exc).__name__}: {exc}", exc_info=exc)
    return ExchangeTypeFailed(
        f"{where} failed to {action}: {type(exc).__name__}: {exc}"
        f" (a fault in the exchange type's code, module {cls.__module__})"
    )
