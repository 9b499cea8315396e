"""Logging setup: configures structlog (and stdlib logging) from ``LoggingConfig``.

Owns the processor chain (log level, ISO-8601 UTC timestamp, then a JSON or console
renderer; ``auto`` picks console on a terminal and JSON otherwise), level filtering,
the output stream, and routing stdlib ``logging`` records
(asyncio, uvloop, libraries) through the same renderer. Must not decide what the
broker logs, and must not be imported for side effects: nothing happens until
:func:`configure_logging` is called (normally once, by the CLI).

Conventions for callers: ``log = structlog.get_logger()``; event names are snake_case
(``log.info("connection_opened", peer=peer, vhost=vhost)``); context goes in
key/value pairs, never formatted into the event string.
"""

from __future__ import annotations

import logging as stdlib_logging
import sys
from typing import TextIO

import structlog
from structlog.typing import Processor

from warrenmq.config.schema import LoggingConfig

LEVELS = {
    "debug": stdlib_logging.DEBUG,
    "info": stdlib_logging.INFO,
    "warning": stdlib_logging.WARNING,
    "error": stdlib_logging.ERROR,
}


class _BrokerHandler(stdlib_logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler we install, so a reconfiguration can find and replace it."""


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _renderers(fmt: str, stream: TextIO) -> list[Processor]:
    """The final processors: exception formatting (JSON only) and the renderer.

    ``auto``: the console renderer for a terminal, JSON lines for anything else (a
    file, a pipe, a log collector)."""
    if fmt == "auto":
        fmt = "console" if _is_tty(stream) else "json"
    if fmt == "json":
        return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    return [structlog.dev.ConsoleRenderer(colors=_is_tty(stream))]


def configure_logging(cfg: LoggingConfig, stream: TextIO | None = None) -> None:
    """Send structlog and stdlib logging to ``stream`` (default: ``sys.stderr`` at call time).

    Safe to call again (e.g. in tests): the previous configuration is replaced.
    Loggers are not cached, so module-level ``structlog.get_logger()`` proxies pick up
    every reconfiguration.
    """
    out = sys.stderr if stream is None else stream
    level = LEVELS[cfg.level]
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    renderers = _renderers(cfg.format, out)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            structlog.processors.StackInfoRenderer(),
            *renderers,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,  # a connection's id, peer, vhost...
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            timestamper,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderers],
    )
    handler = _BrokerHandler(out)
    handler.setFormatter(formatter)
    root = stdlib_logging.getLogger()
    _remove_our_handlers(root)
    root.addHandler(handler)
    root.setLevel(level)


def reset_logging() -> None:
    """Undo :func:`configure_logging`: structlog defaults, our root handler removed."""
    structlog.reset_defaults()
    root = stdlib_logging.getLogger()
    _remove_our_handlers(root)
    root.setLevel(stdlib_logging.WARNING)


def _remove_our_handlers(root: stdlib_logging.Logger) -> None:
    for handler in list(root.handlers):
        if isinstance(handler, _BrokerHandler):
            root.removeHandler(handler)
