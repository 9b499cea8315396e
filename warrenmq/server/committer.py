"""Committer: group commit of the message store, off the event loop.

Appending to the store only buffers records. The committer hands everything buffered to
one worker-thread ``commit()`` (write + fsync) at a time; whatever is appended while that
runs goes into the next one, so many publishes share one fsync and the loop keeps serving
other connections meanwhile. When a commit lands, channels release the publisher
confirms it covered. A failed commit (disk full, I/O error) marks its tickets failed —
their publishers get basic.nack — raises the disk alarm, and is retried after a pause.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from warrenmq.storage import PreparedCommit
from warrenmq.storage.dedup_log import Committable

__all__ = ["Committable", "Committer"]

log = structlog.get_logger("warrenmq.storage")

RETRY_AFTER_ERROR = 1.0


class Committer:
    def __init__(self, store: Committable, on_result: Callable[[], None]) -> None:
        self.store = store
        self.on_result = on_result
        self.durable = 0  # every ticket <= this is on disk
        self.failed: list[tuple[int, int]] = []  # (after, upto] ranges that failed
        self.error: OSError | None = None
        # commits that wrote (and, unless fsync is "never", synced) data: the message
        # store's, the streams' segments or offsets, or both in one commit
        self.syncs = 0
        # set by the worker thread as soon as a write is done, before the loop hears of
        # it: a connection busy with a big read lets the loop finish the commit first
        self.landed = False
        self._running = False
        self._closed = False
        self._inflight: asyncio.Future[int] | None = None
        self._retry: asyncio.TimerHandle | None = None

    def kick(self) -> None:
        """Start a commit if records are waiting and none is running."""
        if self._running or self._retry is not None or self._closed \
                or not self.store.pending_bytes:
            return
        self._running = True
        batch = self.store.prepare_commit()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, self._write, batch)
        self._inflight = future
        future.add_done_callback(lambda f: self._done(f, batch))

    def _write(self, batch: PreparedCommit) -> int:
        """Worker thread."""
        try:
            return self.store.write_prepared(batch)
        finally:
            self.landed = True

    def _done(self, future: asyncio.Future[int], batch: PreparedCommit) -> None:
        self._running = False
        self.landed = False
        upto = batch.target
        ok = future.exception() is None
        self.store.finish_commit(batch, ok)
        try:
            self.durable = max(self.durable, future.result())
            if self.store.synced(batch):
                self.syncs += 1
            if self.error is not None:
                log.info("alarm_cleared", alarm="disk")
            self.error = None
        except OSError as exc:
            if self.error is None:
                log.error("alarm_raised", alarm="disk", error=str(exc), errno=exc.errno)
            self.error = exc
            if upto > self.durable:
                self.failed.append((self.durable, upto))
            self._retry = asyncio.get_running_loop().call_later(RETRY_AFTER_ERROR, self._retry_now)
        except Exception:  # a bug must not stop confirms for good
            log.exception("commit_failed")
            self._retry = asyncio.get_running_loop().call_later(RETRY_AFTER_ERROR, self._retry_now)
        self.on_result()
        self.kick()

    def _retry_now(self) -> None:
        self._retry = None
        self.kick()

    def is_failed(self, ticket: int) -> bool:
        return any(after < ticket <= upto for after, upto in self.failed)

    async def close(self, grace: float = 30.0) -> None:
        """Start no more commits and wait for the running one to land and be accounted
        for, so that the store can be closed after this (shutdown: the store's own close
        commits what is left)."""
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        inflight = self._inflight
        if self._running and inflight is not None:
            # its done callback (_done) was added first, so it has run when this returns
            await asyncio.wait({inflight}, timeout=grace)
