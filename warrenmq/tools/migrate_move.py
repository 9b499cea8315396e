"""Moving one queue's messages for ``warrenmq migrate``: consume, publish, confirm, ack.

``Mover.move`` consumes the source queue (prefetch ``window``) and publishes each
message to the same-named queue on the target through the default exchange, mandatory,
on a channel in confirm mode, with the message's property bytes as they arrived (so
headers and x-death keep their exact encoding). What the source adds at delivery does
not travel: the redelivered flag, and the ``x-delivery-count`` header it sets on a
redelivery from a queue with a delivery limit (the target counts afresh). A source
message is acked only after the target confirmed it and every message delivered before
it: the acks go out as one ``multiple`` ack per contiguous confirmed prefix. A nack or
a return from the target halts the queue at once; nothing after the first unconfirmed
message is acked, and closing the source connection gives those back to the source
queue. So an interruption at any point loses nothing; at worst up to ``window``
messages were confirmed but not yet acked and are moved again by the next run
(at-least-once).

``MigrateProgress`` is the display: a bar redrawn in place on a terminal (overall and
current queue), else a line every few seconds. Must not read definitions or talk HTTP.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import deque
from typing import TextIO

from warrenmq.protocol.fields import table_entries
from warrenmq.protocol.methods import method_class
from warrenmq.tools.progress import Pacer
from warrenmq.tools.wire import Client, Content, WireError

CONSUMER_TAG = "warrenmq-migrate"
IDLE = 2.0  # seconds without a delivery after which a queue counts as drained
_PENDING, _CONFIRMED, _REFUSED = 0, 1, 2
_ACK = method_class("BasicAck")
_U32 = struct.Struct(">I")
DELIVERY_COUNT = b"\x10x-delivery-count"  # the header's name as a shortstr


def without_delivery_count(raw: bytes) -> bytes:
    """``raw`` properties minus the source's ``x-delivery-count`` header (its count of
    deliveries there, which a quorum queue on the target would otherwise start from);
    every other byte is kept. Content-type and content-encoding (shortstrs) come first."""
    if DELIVERY_COUNT not in raw:
        return raw
    flags = int.from_bytes(raw[:2], "big")
    offset = 2
    for flag in (0x8000, 0x4000):
        if flags & flag:
            offset += 1 + raw[offset]
    if not flags & 0x2000:
        return raw
    try:
        (size,) = _U32.unpack_from(raw, offset)
        stop = offset + 4 + size
        body = b"".join(entry for key, entry in table_entries(raw, offset + 4, stop)
                        if key != "x-delivery-count")
    except (ValueError, IndexError, struct.error):  # the source checked them; keep as is
        return raw
    return raw[:offset] + _U32.pack(len(body)) + body + raw[stop:]


class MoveError(Exception):
    """The target refused a message or the queue vanished; the run must stop."""


class MigrateProgress:
    """Overall and per-queue progress on ``stream`` (a tty gets a bar redrawn in place)."""

    WIDTH = 24

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream = stream
        self.total = total
        self.done_before = 0  # messages moved by queues already finished in this run
        self.started = time.monotonic()
        self.last = 0.0
        try:
            self.tty = stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False

    def _bar(self, done: int, total: int) -> str:
        filled = self.WIDTH * min(done, total) // total if total else self.WIDTH
        return "#" * filled + "." * (self.WIDTH - filled)

    def update(self, queue: str, moved: int, expected: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < (0.1 if self.tty else 2.0):
            return
        self.last = now
        overall = self.done_before + moved
        rate = overall / max(now - self.started, 1e-6)
        if self.tty:
            self.stream.write(
                f"\r\x1b[Kall [{self._bar(overall, self.total)}] {overall}/{self.total}  "
                f"{queue} [{self._bar(moved, expected)}] {moved}/{expected}  {rate:,.0f} msg/s")
        else:
            self.stream.write(f"progress: {queue} {moved}/{expected}, all {overall}/"
                              f"{self.total}, {rate:,.0f} msg/s\n")
        self.stream.flush()

    def queue_done(self, vhost: str, queue: str, moved: int, seconds: float) -> None:
        self.done_before += moved
        prefix = "\r\x1b[K" if self.tty else ""
        self.stream.write(f"{prefix}moved {moved} message(s) from queue {queue!r} in vhost "
                          f"{vhost!r} in {seconds:.1f} s\n")
        self.stream.flush()


class Mover:
    """Moves messages between two open clients, one queue at a time."""

    def __init__(self, source: Client, target: Client, pacer: Pacer,
                 progress: MigrateProgress, window: int) -> None:
        self.source = source
        self.target = target
        self.pacer = pacer
        self.progress = progress
        self.window = window
        self.seq = 0  # the target channel's publish sequence (confirm mode)
        self.inflight: deque[list[int]] = deque()  # [target seq, source tag, state]
        self.incoming: deque[Content] = deque()
        self.wake = asyncio.Event()
        self.failure: str | None = None
        self.cancelled = False
        self.moved = 0
        self.queue = ""
        self.last_delivery = 0.0
        source.on_delivery = self._delivered
        source.on_cancel = self._server_cancelled
        target.on_confirm = self._confirmed
        target.on_return = self._returned

    async def start(self) -> None:
        await self.target.call(method_class("ConfirmSelect")(False))
        await self.source.call(method_class("BasicQos")(0, self.window, False))

    async def move(self, queue: str, expected: int) -> int:
        """Move about ``expected`` messages (what the queue held); returns how many."""
        self.queue, self.moved, self.cancelled = queue, 0, False
        self.incoming.clear()
        received = 0
        self.last_delivery = time.monotonic()
        await self.source.call(method_class("BasicConsume")(
            0, queue, CONSUMER_TAG, False, False, False, False, {}))
        while True:
            self._check()
            while self.incoming:
                content = self.incoming.popleft()
                await self.pacer.wait()
                await self.target.drain()
                self._check()
                self.seq += 1
                self.inflight.append([self.seq, content.delivery_tag, _PENDING])
                self.target.publish(queue, without_delivery_count(content.properties),
                                    content.body)
                received += 1
                self.progress.update(queue, self.moved, expected)  # redraws at most 10/s
            idle = time.monotonic() - self.last_delivery > IDLE and not self.inflight
            if not self.cancelled and (received >= expected or idle):
                await self._cancel()
            if self.cancelled and not self.incoming and not self.inflight:
                break
            self.progress.update(queue, self.moved, expected)
            self.wake.clear()
            if not self.incoming:
                try:
                    await asyncio.wait_for(self.wake.wait(), 0.5)
                except TimeoutError:
                    pass
        self.progress.update(queue, self.moved, expected, force=True)
        return self.moved

    async def _cancel(self) -> None:
        self.cancelled = True
        # deliveries sent before cancel-ok land in `incoming` and are moved too
        await self.source.call(method_class("BasicCancel")(CONSUMER_TAG, False))

    def _check(self) -> None:
        if self.failure is not None:
            raise MoveError(self.failure)
        for side, client in (("source", self.source), ("target", self.target)):
            if client.error is not None:
                raise WireError(f"{side}: {client.error}")

    # ---------------------------------------------------------------- callbacks
    def _delivered(self, content: Content) -> None:
        self.incoming.append(content)
        self.last_delivery = time.monotonic()
        self.wake.set()

    def _server_cancelled(self, consumer_tag: str) -> None:
        self.cancelled = True  # the source queue was deleted under us
        self.wake.set()

    def _returned(self, content: Content) -> None:
        # Sent before the publish's ack: halting here means it is never acked at the source.
        self.failure = (f"the target returned a message for queue {self.queue!r} "
                        f"({content.reply_code}: no such queue there?)")
        self.wake.set()

    def _confirmed(self, tag: int, multiple: bool, ack: bool) -> None:
        if not self.inflight:
            return
        state = _CONFIRMED if ack else _REFUSED
        first = self.inflight[0][0]
        if multiple:
            for entry in self.inflight:
                if entry[0] > tag:
                    break
                if entry[2] == _PENDING:
                    entry[2] = state
        elif 0 <= tag - first < len(self.inflight):
            self.inflight[tag - first][2] = state
        self._settle()
        self.wake.set()

    def _settle(self) -> None:
        if self.failure is not None:
            return  # halted: nothing more is acked at the source
        last = 0
        while self.inflight and self.inflight[0][2] == _CONFIRMED:
            last = self.inflight.popleft()[1]
            self.moved += 1
        if last and self.source.error is None:
            self.source.send(_ACK(last, True))
        if self.inflight and self.inflight[0][2] == _REFUSED:
            self.failure = f"the target refused (nacked) a message for queue {self.queue!r}"
