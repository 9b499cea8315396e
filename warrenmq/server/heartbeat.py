"""Heartbeat: keep an idle connection visibly alive and drop a silent peer.

AMQP 0-9-1 §4.2.7 with RabbitMQ's timing: any traffic counts as a heartbeat. Every half
interval the monitor sends a heartbeat frame if nothing was written since the last tick,
and counts ticks with nothing received; two whole intervals of silence (four ticks) end
the connection, logged, without a close frame (the peer is presumed gone).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from warrenmq.protocol.frames import HEARTBEAT

SILENT_TICKS = 4


class HeartbeatMonitor:
    """The connection sets ``sent``/``received`` as traffic flows; ticks read and reset them."""

    __slots__ = ("_missed", "_on_timeout", "_timer", "_write", "interval", "received", "sent")

    def __init__(self, write: Callable[[bytes], None], on_timeout: Callable[[], None]) -> None:
        self._write = write
        self._on_timeout = on_timeout
        self._timer: asyncio.TimerHandle | None = None
        self._missed = 0
        self.interval = 0
        self.sent = False
        self.received = False

    def start(self, interval: int) -> None:
        """Begin with the negotiated interval in seconds; 0 disables heartbeats."""
        self.interval = interval
        if interval > 0:
            self.sent = self.received = True
            self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.interval / 2, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if not self.sent:
            self._write(HEARTBEAT)
        self.sent = False
        self._missed = 0 if self.received else self._missed + 1
        self.received = False
        if self._missed >= SILENT_TICKS:
            self._on_timeout()
            return
        self._schedule()
