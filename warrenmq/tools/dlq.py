"""``warrenmq dlq inspect|replay``: dead letter queue tooling as a plain AMQP client.

Both commands use aiormq and only client-visible AMQP 0-9-1, so they work against
RabbitMQ as well as WarrenMQ. Messages are fetched with ``basic.get`` (no_ack=False),
never ``basic.consume``: a message we hold but do not settle is not redelivered to us
during the run, and closing the channel at the end gives it back to the queue.

- ``inspect`` fetches up to ``--limit`` messages, prints them (a table, or one JSON object
  per line with ``--json``) and closes the channel without acking anything: every message
  stays in the queue (the broker marks them redelivered, as any requeue does).
- ``replay`` (``dlq_replay.py``) republishes messages with publisher confirms and acks
  each from the DLQ only after the broker confirmed its copy.

Exit status: 0 when nothing failed, 1 when some message failed, 2 for usage and
connection errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from aiormq.exceptions import (
    AMQPError,
    ChannelClosed,
    ChannelNotFoundEntity,
    ConnectionClosed,
    InvalidFrameError,
    ProbableAuthenticationError,
)
from pamqp import commands as spec

from warrenmq.tools.amqp_probe import close_reason
from warrenmq.tools.deaths import deaths, json_safe, origin, preview

TIMEOUT = 10.0  # bound on every single wait for the broker
_COLUMNS = ("MESSAGE-ID", "REASON", "EXCHANGE", "ROUTING-KEYS", "QUEUE", "DEATHS", "TIME",
            "BODY")


class ToolError(Exception):
    """A usage or connection problem: reported in one line, exit status 2."""


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``warrenmq dlq ...`` (parsed ``args``); returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    if not logging.getLogger().handlers:  # we report errors ourselves, in one line
        logging.getLogger("aiormq").addHandler(logging.NullHandler())
    name = f"warrenmq dlq {args.dlq_command}"
    if args.dlq_command == "replay" and args.routing_key is not None and args.exchange is None:
        print(f"{name}: --routing-key needs --exchange", file=err)
        return 2
    try:
        if args.dlq_command == "inspect":
            return asyncio.run(_inspect(args, out, err))
        from warrenmq.tools.dlq_replay import replay

        return asyncio.run(replay(args, out, err))
    except ToolError as exc:
        print(f"{name}: {exc}", file=err)
    except (AMQPError, OSError, TimeoutError) as exc:
        print(f"{name}: {_describe(exc)}", file=err)
    except KeyboardInterrupt:
        print(f"{name}: interrupted (unsettled messages stay in the queue)", file=err)
    return 2


# --------------------------------------------------------------------------- connection
def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def describe(exc: BaseException) -> str:
    """An error in the broker's words where there are some (reply code and text)."""
    if isinstance(exc, ProbableAuthenticationError):
        return f"access refused: {exc.args[0] if exc.args else 'login refused'}"
    if isinstance(exc, ConnectionClosed | ChannelClosed) and exc.args:
        return " ".join(str(a) for a in exc.args)
    if isinstance(exc, TimeoutError):
        return f"no answer within {TIMEOUT:g} s"
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, OSError | ToolError) else f"{type(exc).__name__}: {text}"


_describe = describe


def check_amqp_url(url: str) -> None:
    """Refuse what is not an AMQP URL (say, the management API's http:// one)."""
    scheme = urlsplit(url).scheme
    if scheme not in ("amqp", "amqps"):
        raise ToolError(f"{_safe_url(url)} is not an AMQP URL: give amqp://USER:PASSWORD@HOST:5672/"
                        "VHOST (an http:// URL is the management API's, for warrenmq list ...)")


@contextlib.asynccontextmanager
async def connection(url: str) -> AsyncIterator[AbstractConnection]:
    check_amqp_url(url)
    try:
        conn = await asyncio.wait_for(aiormq.connect(url), TIMEOUT)
    except InvalidFrameError as exc:  # aiormq hides the broker's connection.close
        reason = await close_reason(url)
        why = f"the broker refused: {reason}" if reason else _describe(exc)
        raise ToolError(f"cannot connect to {_safe_url(url)}: {why}") from exc
    except (AMQPError, OSError, TimeoutError, ValueError) as exc:
        raise ToolError(f"cannot connect to {_safe_url(url)}: {_describe(exc)}") from exc
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), TIMEOUT)


async def open_queue(conn: AbstractConnection, queue: str) -> tuple[AbstractChannel, int]:
    """A channel for basic.get on ``queue`` and the queue's message count."""
    channel = await conn.channel(publisher_confirms=False)
    try:
        ok = await channel.queue_declare(queue, passive=True, timeout=TIMEOUT)
    except ChannelNotFoundEntity as exc:
        raise ToolError(f"queue {queue!r} not found") from exc
    return channel, int(ok.message_count or 0)


async def get(channel: AbstractChannel, queue: str) -> DeliveredMessage | None:
    got = await channel.basic_get(queue, no_ack=False, timeout=TIMEOUT)
    return got if isinstance(got.delivery, spec.Basic.GetOk) else None


def headers_of(message: DeliveredMessage) -> dict[str, Any]:
    return dict(message.header.properties.headers or {})


# --------------------------------------------------------------------------- inspect
def _record(message: DeliveredMessage) -> dict[str, Any]:
    headers = headers_of(message)
    found = origin(headers)
    return {
        "message_id": message.header.properties.message_id,
        "reason": found.reason if found else None,
        "exchange": found.exchange if found else None,
        "routing_keys": list(found.routing_keys) if found else [],
        "queue": found.queue if found else None,
        "count": found.count if found else 0,
        "time": found.time.isoformat() if found and found.time else None,
        "body_size": len(message.body),
        "body_preview": preview(message.body),
        "x_death": json_safe(deaths(headers)),
    }


def _cells(record: dict[str, Any]) -> tuple[str, ...]:
    exchange = record["exchange"]
    when = record["time"]
    return (
        record["message_id"] or "-",
        record["reason"] or "-",
        "-" if exchange is None else exchange or "(default)",
        ",".join(record["routing_keys"]) or "-",
        record["queue"] or "-",
        str(record["count"]),
        when.replace("T", " ").replace("+00:00", "Z") if when else "-",
        record["body_preview"],
    )


def _table(records: list[dict[str, Any]]) -> list[str]:
    rows = [_COLUMNS, *(_cells(record) for record in records)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]])
            for row in rows]


async def _inspect(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    records: list[dict[str, Any]] = []
    async with connection(args.url) as conn:
        channel, available = await open_queue(conn, args.queue)
        while len(records) < args.limit:
            message = await get(channel, args.queue)
            if message is None:
                break
            records.append(_record(message))
        # Nothing was acked: closing the channel gives every message back to the queue.
        await channel.close()
    if args.json:
        for record in records:
            print(json.dumps(record, sort_keys=True), file=out)
    else:
        for line in _table(records):
            print(line.rstrip(), file=out)
    print(f"{len(records)} message(s) shown; {args.queue} held {available}", file=err)
    return 0


_connection = connection  # the name warrenmq.tools.stream imports
