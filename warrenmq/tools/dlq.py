"""``warrenmq dlq inspect|replay``: dead letter queue tooling as a plain AMQP client.

Both commands use aiormq and only client-visible AMQP 0-9-1, so they work against
RabbitMQ as well as WarrenMQ. Messages are fetched with ``basic.get`` (no_ack=False),
never ``basic.consume``: a message we hold but do not settle is not redelivered to us
during the run, and closing the channel at the end gives it back to the queue.

- ``inspect`` fetches up to ``--limit`` messages, prints them (a table, or one JSON object
  per line with ``--json``) and closes the channel without acking anything: every message
  stays in the queue (the broker marks them redelivered, as any requeue does).
- ``replay`` republishes each message (body and properties unchanged, except that
  ``x-delivery-count``, ``CC`` and ``BCC`` headers are dropped) on a second channel with
  publisher confirms and ``mandatory=True``, and acks it from the DLQ only after the
  broker confirmed it: a crash at any point loses nothing (at worst a duplicate). The
  target is the message's origin (``x-first-death-exchange`` and the first routing key of
  the first death's ``x-death`` entry; one publish per message, so a replay does not fan
  out again to every CC destination) or ``--exchange``/``--routing-key``. A message without
  ``x-death`` is skipped with ``--to-original``; a returned, nacked or refused publish is
  failed. Skipped and failed messages stay unacked until the end (the channel close
  requeues them), so none is fetched twice in one run. At most the number of messages the
  queue held at the start is processed (and at most ``--limit``), so a replay into a
  still-broken consumer cannot loop forever.

Exit status: 0 when nothing failed, 1 when some message failed, 2 for usage and
connection errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
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
    DeliveryError,
    PublishError,
)
from pamqp import commands as spec

from warrenmq.tools.deaths import deaths, json_safe, origin, preview
from warrenmq.tools.progress import Counts, Pacer, Progress

TIMEOUT = 10.0  # bound on every single wait for the broker
_DROPPED_HEADERS = ("x-delivery-count", "CC", "BCC")
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
        return asyncio.run(_replay(args, out, err))
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


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, OSError | ToolError) else f"{type(exc).__name__}: {text}"


@contextlib.asynccontextmanager
async def _connection(url: str) -> AsyncIterator[AbstractConnection]:
    try:
        conn = await asyncio.wait_for(aiormq.connect(url), TIMEOUT)
    except (AMQPError, OSError, TimeoutError, ValueError) as exc:
        raise ToolError(f"cannot connect to {_safe_url(url)}: {_describe(exc)}") from exc
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), TIMEOUT)


async def _open_queue(conn: AbstractConnection, queue: str) -> tuple[AbstractChannel, int]:
    """A channel for basic.get on ``queue`` and the queue's message count."""
    channel = await conn.channel(publisher_confirms=False)
    try:
        ok = await channel.queue_declare(queue, passive=True, timeout=TIMEOUT)
    except ChannelNotFoundEntity as exc:
        raise ToolError(f"queue {queue!r} not found") from exc
    return channel, int(ok.message_count or 0)


async def _get(channel: AbstractChannel, queue: str) -> DeliveredMessage | None:
    got = await channel.basic_get(queue, no_ack=False, timeout=TIMEOUT)
    return got if isinstance(got.delivery, spec.Basic.GetOk) else None


def _headers(message: DeliveredMessage) -> dict[str, Any]:
    return dict(message.header.properties.headers or {})


# --------------------------------------------------------------------------- inspect
def _record(message: DeliveredMessage) -> dict[str, Any]:
    headers = _headers(message)
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
    async with _connection(args.url) as conn:
        channel, available = await _open_queue(conn, args.queue)
        while len(records) < args.limit:
            message = await _get(channel, args.queue)
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


# --------------------------------------------------------------------------- replay
def _target(args: argparse.Namespace, message: DeliveredMessage) -> tuple[str, str] | None:
    """(exchange, routing key) to republish to, or None to skip the message."""
    found = origin(_headers(message))
    original_key = found.routing_keys[0] if found and found.routing_keys else None
    if args.exchange is not None:
        if args.routing_key is not None:
            return args.exchange, args.routing_key
        return args.exchange, original_key or message.routing_key or ""
    if found is None or original_key is None:
        return None
    return found.exchange, original_key


def _republished(message: DeliveredMessage) -> spec.Basic.Properties:
    properties = copy.copy(message.header.properties)
    if properties.headers:
        properties.headers = {k: v for k, v in properties.headers.items()
                              if k not in _DROPPED_HEADERS}
    return properties


class _Replayer:
    """Republishes one fetched message at a time and settles it from the DLQ."""

    def __init__(self, conn: AbstractConnection, getter: AbstractChannel,
                 args: argparse.Namespace, progress: Progress) -> None:
        self.conn = conn
        self.getter = getter
        self.args = args
        self.progress = progress
        self.counts = Counts()
        self.publisher: AbstractChannel | None = None

    async def _publisher(self) -> AbstractChannel:
        if self.publisher is None or self.publisher.is_closed:
            self.publisher = await self.conn.channel(publisher_confirms=True)
        return self.publisher

    async def _publish(self, message: DeliveredMessage, exchange: str, key: str) -> str | None:
        """Publish and await the confirm; the reason it failed, or None."""
        channel = await self._publisher()
        try:
            await channel.basic_publish(
                message.body, exchange=exchange, routing_key=key,
                properties=_republished(message), mandatory=True, timeout=TIMEOUT,
            )
        except PublishError as exc:
            frame: Any = exc.frame  # a basic.return
            return f"returned {frame.reply_code} {frame.reply_text}"
        except DeliveryError:
            return "nacked by the broker"
        except ChannelClosed as exc:
            return f"refused: {_describe(exc)}"
        except TimeoutError:
            # The confirm may still come: drop this channel so it cannot confuse the next.
            self.publisher = None
            with contextlib.suppress(Exception):
                await channel.close()
            return f"no confirm within {TIMEOUT:g} s"
        return None

    async def handle(self, message: DeliveredMessage) -> None:
        target = _target(self.args, message)
        if target is None:
            self.counts.skipped += 1
            return
        problem = await self._publish(message, *target)
        if problem is not None:
            self.counts.failed += 1
            exchange, key = target
            self.progress.note(f"failed: message {message.header.properties.message_id or '-'}"
                               f" to exchange {exchange!r} key {key!r}: {problem}")
            return
        assert isinstance(message.delivery, spec.Basic.GetOk)
        await self.getter.basic_ack(int(message.delivery.delivery_tag or 0))
        self.counts.replayed += 1


async def _replay(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    async with _connection(args.url) as conn:
        getter, available = await _open_queue(conn, args.queue)
        total = available if args.limit is None else min(args.limit, available)
        progress = Progress(err, total, args.queue)
        replayer = _Replayer(conn, getter, args, progress)
        pacer = Pacer(args.rate)
        try:
            for _ in range(total):
                await pacer.wait()
                message = await _get(getter, args.queue)
                if message is None:
                    break
                await replayer.handle(message)
                progress.update(replayer.counts)
        finally:
            progress.finish(replayer.counts)
            print(replayer.counts.line(), file=out)
    return 0 if replayer.counts.failed == 0 else 1
