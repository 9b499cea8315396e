"""``warrenmq stream info|replay``: a stream queue's offsets, and copying part of it.

- ``info`` reads the queue from the management HTTP API: first/last offset, messages,
  bytes on disk, segments and each named consumer's committed offset (WarrenMQ's
  ``stream`` object; against RabbitMQ only the type and message count are known).
- ``replay`` is a plain AMQP client (aiormq), so it works against RabbitMQ as well: it
  consumes the stream from ``--from`` (prefetch ``--batch``) and republishes each message
  to ``--to-queue`` through the default exchange with confirms and ``mandatory``; after
  every batch it waits for the confirms, then acks the stream deliveries and writes its
  checkpoint (confirm-then-continue: a crash at any point loses nothing, at worst the
  last batch is copied twice). A rerun with the same stream and queue resumes after the
  checkpoint (``--restart`` ignores it). It stops after ``--until`` or when the stream has
  been idle for ``--idle`` seconds. Copies drop the ``x-stream-offset`` header and carry
  ``x-replayed-from`` (stream) and ``x-replayed-offset``.

Exit status: 0, 1 if a publish was refused or returned, 2 for usage and connection
errors, 130 when interrupted (the checkpoint is kept). Must not import the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import aiormq
from aiormq.abc import AbstractChannel, DeliveredMessage
from aiormq.exceptions import AMQPError, ChannelNotFoundEntity

from warrenmq.tools.dlq import _describe
from warrenmq.tools.dlq import connection as _connection
from warrenmq.tools.queues import ToolError, _request

_INTERVAL = re.compile(r"^[0-9]+(Y|M|D|h|m|s)$")


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    if not logging.getLogger().handlers:
        logging.getLogger("aiormq").addHandler(logging.NullHandler())
    name = f"warrenmq stream {args.stream_command}"
    try:
        if args.stream_command == "info":
            return info(args, out)
        return asyncio.run(replay(args, out, err))
    except ToolError as exc:
        print(f"{name}: {exc}", file=err)
    except (AMQPError, OSError, TimeoutError) as exc:
        print(f"{name}: {_describe(exc)}", file=err)
    except KeyboardInterrupt:
        print(f"{name}: interrupted (the checkpoint keeps what was confirmed)", file=err)
        return 130
    return 2


# --------------------------------------------------------------------------- info
def info(args: argparse.Namespace, out: TextIO) -> int:
    queue = _request(args.api, f"/api/queues/{quote(args.vhost, safe='')}/"
                               f"{quote(args.stream, safe='')}")
    if queue.get("type") != "stream":
        raise ToolError(f"queue '{args.stream}' in vhost '{args.vhost}' is a"
                        f" {queue.get('type', 'classic')} queue, not a stream")
    if args.json:
        print(json.dumps(queue, indent=2, sort_keys=True), file=out)
        return 0
    stream = queue.get("stream") or {}
    rows = [("stream", f"{args.stream} (vhost {args.vhost})"),
            ("messages", str(queue.get("messages", "n/a"))),
            ("first offset", str(stream.get("first_offset", "n/a"))),
            ("last offset", str(stream.get("last_offset", "n/a"))),
            ("size bytes", str(stream.get("size_bytes", "n/a"))),
            ("segments", str(stream.get("segments", "n/a"))),
            ("consumers", str(queue.get("consumers", 0)))]
    for key, value in rows:
        print(f"{key:<14}{value}", file=out)
    offsets = stream.get("consumer_offsets")
    if offsets is None:
        print("committed offsets: n/a (not a WarrenMQ broker)", file=out)
    elif not offsets:
        print("committed offsets: none (consumers pass x-stream-consumer-name)", file=out)
    else:
        print("committed offsets:", file=out)
        for consumer, offset in sorted(offsets.items()):
            print(f"  {consumer:<30}{offset}", file=out)
    return 0


# --------------------------------------------------------------------------- replay
def start_argument(text: str) -> Any:
    """--from as an x-stream-offset value (ToolError if it is none of the forms)."""
    if text in ("first", "last", "next") or _INTERVAL.match(text):
        return text
    if re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ToolError(f"--from {text!r}: expected first, last, next, an offset, an ISO"
                        " time such as 2026-12-01T10:00:00Z or an interval such as 30m"
                        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment


def state_path(args: argparse.Namespace) -> Path:
    if args.state:
        return Path(args.state)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{args.stream}-{args.to_queue}")
    return Path(f".warrenmq-replay-{safe}.json")


def load_state(path: Path, args: argparse.Namespace) -> int | None:
    """The next offset to copy from an earlier run, or None."""
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ToolError(f"checkpoint {path}: unreadable ({exc}); use --restart") from exc
    if state.get("stream") != args.stream or state.get("queue") != args.to_queue:
        raise ToolError(f"checkpoint {path} is for stream {state.get('stream')!r} to"
                        f" {state.get('queue')!r}; use --state or --restart")
    return int(state["next_offset"])


def save_state(path: Path, args: argparse.Namespace, next_offset: int, copied: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"stream": args.stream, "queue": args.to_queue,
                               "next_offset": next_offset, "copied": copied}) + "\n")
    tmp.replace(path)


class Copier:
    """Publishes with confirms, a batch at a time; acks the stream after the confirms."""

    def __init__(self, args: argparse.Namespace, source: AbstractChannel,
                 target: AbstractChannel, state: Path, err: TextIO) -> None:
        self.args = args
        self.source = source
        self.target = target
        self.state = state
        self.err = err
        self.copied = 0
        self.failed = 0
        self.next_offset: int | None = None
        self.last_report = time.monotonic()

    async def flush(self, batch: list[tuple[DeliveredMessage, int]]) -> None:
        if not batch:
            return
        confirms = []
        for message, offset in batch:
            props = message.header.properties
            headers = dict(props.headers or {})
            headers.pop("x-stream-offset", None)
            headers["x-replayed-from"] = self.args.stream
            headers["x-replayed-offset"] = offset
            props.headers = headers
            confirms.append(asyncio.ensure_future(self.target.basic_publish(
                message.body, exchange="", routing_key=self.args.to_queue,
                properties=props, mandatory=True)))
        results = await asyncio.gather(*confirms, return_exceptions=True)
        for result in results:
            if not isinstance(result, aiormq.spec.Basic.Ack):
                self.failed += 1
        if self.failed:
            raise ToolError(f"{self.failed} publish(es) to queue '{self.args.to_queue}'"
                            " were refused or returned; the checkpoint stays before them")
        last_message, last_offset = batch[-1]
        tag = last_message.delivery_tag
        assert tag is not None
        await self.source.basic_ack(tag, multiple=True)
        self.copied += len(batch)
        self.next_offset = last_offset + 1
        save_state(self.state, self.args, self.next_offset, self.copied)
        self.report()

    def report(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last_report < 1.0:
            return
        self.last_report = now
        until = f" of {self.args.until}" if self.args.until is not None else ""
        print(f"replay {self.args.stream} -> {self.args.to_queue}: copied={self.copied}"
              f" next_offset={self.next_offset}{until}", file=self.err, flush=True)


async def replay(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    start = start_argument(args.start)
    state = state_path(args)
    resume = None if args.restart else load_state(state, args)
    if resume is not None:
        print(f"resuming at offset {resume} (checkpoint {state})", file=err)
        start = resume
    async with _connection(args.url) as conn:
        target = await conn.channel()
        try:
            await target.queue_declare(args.to_queue, passive=True)
        except ChannelNotFoundEntity as exc:
            raise ToolError(f"no queue '{args.to_queue}': declare it first") from exc
        await target.confirm_delivery()
        source = await conn.channel()
        await source.basic_qos(prefetch_count=args.batch)
        inbox: asyncio.Queue[DeliveredMessage] = asyncio.Queue()
        await source.basic_consume(args.stream, inbox.put, arguments={
            "x-stream-offset": start,
            "x-stream-consumer-name": f"warrenmq-replay:{args.to_queue}"})
        copier = Copier(args, source, target, state, err)
        batch: list[tuple[DeliveredMessage, int]] = []
        while True:
            try:
                message = await asyncio.wait_for(inbox.get(), args.idle)
            except TimeoutError:
                break
            value = (message.header.properties.headers or {}).get("x-stream-offset", -1)
            offset = value if isinstance(value, int) else -1
            if args.until is not None and offset > args.until:
                break
            batch.append((message, offset))
            if len(batch) >= args.batch or (inbox.empty() and len(batch) >= args.batch // 2):
                await copier.flush(batch)
                batch = []
            if args.until is not None and offset >= args.until:
                break
        await copier.flush(batch)
        with contextlib.suppress(Exception):
            await source.close()
        copier.report(final=True)
        print(f"stream_replay_copied={copier.copied} next_offset={copier.next_offset}",
              file=out)
    return 0
