"""``warrenmq dlq replay``: republish dead letters, as a plain AMQP client.

Target, for each message:
- by default (``--to-queue``) the queue it died in (``replay_rules.died_in``: the
  newest ``x-death`` entry's queue), through the default exchange: no other queue gets
  a copy, whatever the original exchange's type;
- ``--via-exchange`` re-routes through ``x-first-death-exchange`` with the first
  death's first routing key: every queue bound there gets a copy again (a fanout
  duplicates into queues that never failed), so a warning is printed first;
- ``--exchange X [--routing-key K]``: there instead (X is checked once, up front).
Filters (``--from-queue``, ``--reason``, ``--message-id``, ``--older-than``) leave what
they do not match in the DLQ, counted as skipped, as are messages without ``x-death``.

Each copy keeps body and properties (``x-death`` history included), drops
``x-delivery-count``, ``CC`` and ``BCC``, and records the replay in ``x-replay-count``
and ``x-replayed-from``. It is published on a second channel with publisher confirms
and ``mandatory=True``, and the original is acked from the DLQ only after the broker
confirmed the copy: a crash at any point loses nothing (at worst a duplicate). Skipped
and failed messages stay unacked until the end (the channel close requeues them), so
none is fetched twice in one run; at most the number held at the start is processed
(and at most ``--limit``), so a replay into a still-broken consumer cannot loop.
``--dry-run`` fetches the same messages, publishes nothing and prints how many would go
to each target; closing its channel gives them all back (marked redelivered).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
from typing import Any, TextIO

from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from aiormq.exceptions import ChannelClosed, ChannelNotFoundEntity, DeliveryError, PublishError
from pamqp import commands as spec

from warrenmq.tools.deaths import origin
from warrenmq.tools.dlq import (
    TIMEOUT,
    ToolError,
    connection,
    describe,
    get,
    headers_of,
    open_queue,
)
from warrenmq.tools.progress import Counts, Pacer, Progress
from warrenmq.tools.replay_rules import ReplayFilter, died_in, replay_headers

FANOUT_WARNING = (
    "warning: --via-exchange re-routes through the exchange each message was first"
    " published to: every queue bound there with a matching key gets a copy again, not"
    " only the queue it died in (through a fanout exchange, all of them). Without"
    " --via-exchange each message goes back only to the queue it died in.")


def _filter(args: argparse.Namespace) -> ReplayFilter:
    return ReplayFilter(from_queue=args.from_queue, reason=args.reason,
                        message_id=args.message_id, older_than=args.older_than)


def target(args: argparse.Namespace, message: DeliveredMessage) -> tuple[str, str] | None:
    """(exchange, routing key) to republish to, or None to leave the message."""
    headers = headers_of(message)
    queue = died_in(headers, args.queue)
    if not _filter(args).matches(headers, message.header.properties.message_id, args.queue):
        return None
    found = origin(headers)
    original_key = found.routing_keys[0] if found and found.routing_keys else None
    if args.exchange is not None:
        if args.routing_key is not None:
            return args.exchange, args.routing_key
        return args.exchange, original_key or message.routing_key or ""
    if found is None or queue is None:
        return None
    if args.via_exchange:
        return (found.exchange, original_key) if original_key is not None else None
    return "", queue


def _label(exchange: str, key: str) -> str:
    return f"queue {key}" if exchange == "" else f"exchange {exchange} (key {key!r})"


def republished(message: DeliveredMessage, dlq: str) -> spec.Basic.Properties:
    properties = copy.copy(message.header.properties)
    properties.headers = replay_headers(properties.headers, dlq)
    return properties


class Replayer:
    """Republishes one fetched message at a time and settles it from the DLQ."""

    def __init__(self, conn: AbstractConnection, getter: AbstractChannel,
                 args: argparse.Namespace, progress: Progress) -> None:
        self.conn = conn
        self.getter = getter
        self.args = args
        self.progress = progress
        self.counts = Counts()
        self.targets: dict[str, int] = {}
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
                properties=republished(message, self.args.queue), mandatory=True,
                timeout=TIMEOUT,
            )
        except PublishError as exc:
            frame: Any = exc.frame  # a basic.return
            return f"returned {frame.reply_code} {frame.reply_text}"
        except DeliveryError:
            return "nacked by the broker"
        except ChannelClosed as exc:
            return f"refused: {describe(exc)}"
        except TimeoutError:
            # The confirm may still come: drop this channel so it cannot confuse the next.
            self.publisher = None
            with contextlib.suppress(Exception):
                await channel.close()
            return f"no confirm within {TIMEOUT:g} s"
        return None

    async def handle(self, message: DeliveredMessage) -> None:
        found = target(self.args, message)
        if found is None:
            self.counts.skipped += 1
            return
        label = _label(*found)
        if self.args.dry_run:
            self.targets[label] = self.targets.get(label, 0) + 1
            self.counts.replayed += 1
            return
        problem = await self._publish(message, *found)
        if problem is not None:
            self.counts.failed += 1
            exchange, key = found
            self.progress.note(f"failed: message {message.header.properties.message_id or '-'}"
                               f" to exchange {exchange!r} key {key!r}: {problem}")
            return
        assert isinstance(message.delivery, spec.Basic.GetOk)
        await self.getter.basic_ack(int(message.delivery.delivery_tag or 0))
        self.counts.replayed += 1
        self.targets[label] = self.targets.get(label, 0) + 1


async def _check_exchange(conn: AbstractConnection, exchange: str) -> None:
    if exchange == "":
        return
    channel = await conn.channel(publisher_confirms=False)
    try:
        await channel.exchange_declare(exchange, passive=True, timeout=TIMEOUT)
    except ChannelNotFoundEntity as exc:
        raise ToolError(f"exchange {exchange!r} not found: nothing was replayed") from exc
    with contextlib.suppress(Exception):
        await channel.close()


def _summary(replayer: Replayer, out: TextIO, err: TextIO) -> None:
    """Counts per target (stdout for a dry run, else stderr), then the totals on stdout."""
    if replayer.targets:
        table = out if replayer.args.dry_run else err
        width = max(len(t) for t in replayer.targets)
        print(f"{'TARGET'.ljust(width)}  MESSAGES", file=table)
        for label, number in sorted(replayer.targets.items()):
            print(f"{label.ljust(width)}  {number}", file=table)
    counts = replayer.counts
    if replayer.args.dry_run:
        print(f"dry run: would replay {counts.replayed}, would leave {counts.skipped};"
              " nothing was published or removed", file=out)
    else:
        print(counts.line(), file=out)


async def replay(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.via_exchange and not args.dry_run:
        print(FANOUT_WARNING, file=err)
    async with connection(args.url) as conn:
        if args.exchange is not None:
            await _check_exchange(conn, args.exchange)
        getter, available = await open_queue(conn, args.queue)
        total = available if args.limit is None else min(args.limit, available)
        progress = Progress(err, total, args.queue)
        replayer = Replayer(conn, getter, args, progress)
        pacer = Pacer(None if args.dry_run else args.rate)
        try:
            for _ in range(total):
                await pacer.wait()
                message = await get(getter, args.queue)
                if message is None:
                    break
                await replayer.handle(message)
                progress.update(replayer.counts)
        finally:
            progress.finish(replayer.counts)
            _summary(replayer, out, err)
    return 0 if replayer.counts.failed == 0 else 1
