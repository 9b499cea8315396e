"""Server: the listening sockets and the set of live connections of one broker.

Starts one asyncio server per configured listener, creates a ``Connection`` protocol per
accepted socket, and on shutdown stops accepting, closes every connection with
320 CONNECTION_FORCED and waits (bounded) for them to go.

It owns the committer (group commit of the message store) and the alarms that block
publishers: the memory alarm (RabbitMQ's vm_memory_high_watermark, measured here as the
bytes of message bodies held ready in queues, which unlike the process RSS goes down
again when consumers catch up) and the disk alarm (a failing store commit). While one
is raised, a connection that publishes is sent connection.blocked and its socket is no
longer read — TCP back-pressure — until the alarms clear and it gets
connection.unblocked. Consumers keep being served meanwhile.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from warrenmq.broker.broker import Broker
from warrenmq.broker.definitions import snapshot
from warrenmq.broker.flow import log_dead_letters
from warrenmq.clock import COARSE
from warrenmq.errors import ReplyCode
from warrenmq.server.committer import Committable, Committer
from warrenmq.server.connection import Connection
from warrenmq.server.delay_timer import DelayTimer
from warrenmq.server.guard import ConnectionGuard
from warrenmq.server.settings import ServerSettings
from warrenmq.server.tls import TlsContext, TlsOptions

log = structlog.get_logger("warrenmq.server")


class Server:
    def __init__(
        self, broker: Broker, settings: ServerSettings | None = None, *,
        cluster_name: str | None = None,
    ) -> None:
        self.broker = broker
        self.settings = settings or ServerSettings()
        self.cluster_name = cluster_name or f"warrenmq@{socket.gethostname()}"
        self.connections: set[Connection] = set()
        self.guard = ConnectionGuard(self.settings)  # handshakes, failed logins, limits
        self.tls_contexts: list[TlsContext] = []  # re-read on SIGHUP
        self.tls_ports: set[int] = set()
        self._servers: list[asyncio.Server] = []
        #: saves the durable definitions document; set by the composition root
        self.save_definitions: Callable[[dict[str, Any]], None] | None = None
        self.definitions_unsaved = False  # the last save failed; retried by the tick
        self._definitions_retry_due = 0.0
        self._saved_definitions: dict[str, Any] | None = None
        self._saved_generations: tuple[int, ...] | None = None
        self.on_close: list[Callable[[], None]] = []  # run last on shutdown (storage, lock)
        #: awaited first on shutdown (the management listener), set by the composition root
        self.before_close: list[Callable[[], Awaitable[None]]] = []
        self.management_port: int | None = None  # the management listener's bound port
        self.memory_alarm = False
        self.committer: Committer | None = None  # set by attach_store()
        self._alarm_timer: asyncio.TimerHandle | None = None
        self._tick_timer: asyncio.TimerHandle | None = None
        self.delay_timer = DelayTimer(broker, self.kick_commit)  # x-delayed-message
        self._dead_letters_logged_due = 0.0  # loop time the next dead-letter lines may go
        broker.on_user_deleted.append(self._user_deleted)

    def _protocol(self) -> Connection:
        return Connection(self)

    async def listen(self, host: str, port: int,
                     tls: TlsOptions | None = None) -> tuple[str, int]:
        """Start a listener (amqps with ``tls``); returns the bound (host, port) — port 0
        picks a free one. A TLS handshake must finish within the handshake timeout."""
        loop = asyncio.get_running_loop()
        if tls is None:
            srv = await loop.create_server(self._protocol, host, port, reuse_address=True,
                                           backlog=1024)
        else:
            context = TlsContext(tls, f"{host}:{port}")
            srv = await loop.create_server(
                lambda: Connection(self, context), host, port, reuse_address=True,
                backlog=1024, ssl=context.context,
                ssl_handshake_timeout=self.settings.handshake_timeout)
            self.tls_contexts.append(context)
            context.port = int(srv.sockets[0].getsockname()[1])
            self.tls_ports.add(context.port)
        self._servers.append(srv)
        if self.settings.memory_high_watermark and self._alarm_timer is None:
            self._check_memory()
        if self._tick_timer is None:
            self._tick()
        bound = srv.sockets[0].getsockname()
        log.info("listener_started", host=bound[0], port=bound[1], tls=tls is not None)
        return str(bound[0]), int(bound[1])

    def apply_settings(self, settings: ServerSettings) -> None:
        """A reload's new settings: connections accepted from now on read them (open
        ones keep theirs); the handshake and login guard reads them at once."""
        self.settings = settings
        self.guard.settings = settings

    def reload_tls(self) -> None:
        """SIGHUP: every TLS listener re-reads its certificate, key and CAs."""
        for context in self.tls_contexts:
            context.reload()

    @property
    def ports(self) -> list[int]:
        return [int(s.sockets[0].getsockname()[1]) for s in self._servers if s.sockets]

    @property
    def disk_alarm(self) -> bool:
        """The message store's last commit failed (disk full, I/O error)."""
        return self.committer is not None and self.committer.error is not None

    @property
    def alarm(self) -> bool:
        """Publishers are blocked: memory over the watermark, or the disk failing."""
        return self.memory_alarm or self.disk_alarm

    @property
    def alarm_reason(self) -> str:
        """connection.blocked's reason as RabbitMQ words it (rabbit_reader): "low on
        memory", "low on disk" or "low on memory & disk"."""
        active = [name for name, on in (("memory", self.memory_alarm),
                                        ("disk", self.disk_alarm)) if on]
        return "low on " + " & ".join(active or ["memory"])

    def _unblock_if_clear(self) -> None:
        if not self.alarm:
            for conn in list(self.connections):
                conn.unblock()

    # ----------------------------------------------------------------- durability
    def attach_store(self, store: Committable) -> None:
        """Confirm persistent publishes only once the store has fsynced them."""
        self.committer = Committer(store, self._committed)

    def _committed(self) -> None:
        for conn in list(self.connections):
            for channel in list(conn.channels.values()):
                if channel.unsynced:
                    channel.flush_confirms()
                elif channel.tx is not None and channel.tx.committing:
                    channel.tx.release_commits(channel)
        self._unblock_if_clear()

    @property
    def commit_landed(self) -> bool:
        """The store's writer finished a commit the loop has not handled yet."""
        committer = self.committer
        return committer is not None and committer.landed

    @property
    def sync_ops(self) -> int:
        """Group commits that wrote data (messages and/or stream records): one
        fdatasync each (one per touched file, strictly)."""
        return self.committer.syncs if self.committer is not None else 0

    def kick_commit(self) -> None:
        if self.committer is not None:
            self.committer.kick()

    def definitions_changed(self) -> None:
        """Save the durable definitions if they differ from the last save (cold path).

        Nothing to do unless some vhost's generation moved since the last look, so the
        callers (every connection close, every topology method) need not check."""
        if self.save_definitions is None:
            return
        generations = tuple(v.generation for v in self.broker.vhosts.values())
        if generations == self._saved_generations:
            return
        document = snapshot(self.broker)
        if document != self._saved_definitions:
            try:
                self.save_definitions(document)
            except OSError as exc:
                # Disk full or failing: as in RabbitMQ, whose disk alarm blocks publishers
                # but not declares, the change stands in memory; the timer tick retries the
                # save every second until it succeeds (it could not confirm messages into
                # the new entity meanwhile: the store fails too).
                if not self.definitions_unsaved:
                    log.error("definitions_save_failed", error=str(exc), errno=exc.errno)
                self.definitions_unsaved = True
                return
            if self.definitions_unsaved:
                log.info("definitions_saved_after_failure")
            self.definitions_unsaved = False
            self._saved_definitions = document
        self._saved_generations = generations

    def _tick(self) -> None:
        """Queue timers (TTL, retry delays, x-expires) for every vhost, every tick."""
        loop = asyncio.get_running_loop()
        COARSE.refresh()
        try:
            self.delay_timer.attach()  # vhosts added since the last tick
            for vhost in self.broker.vhosts.values():
                if vhost.timed or vhost.holding:  # queue timers; held messages due
                    generation = vhost.generation
                    for consumer in vhost.tick(vhost.clock.monotonic()):
                        consumer.cancelled_by_server()  # type: ignore[attr-defined]
                    if vhost.generation != generation:  # x-expires removed a queue
                        self.definitions_changed()
            if self.definitions_unsaved and loop.time() >= self._definitions_retry_due:
                self._definitions_retry_due = loop.time() + 1.0
                self.definitions_changed()
            if loop.time() >= self._dead_letters_logged_due:
                self._log_dead_letters(loop.time())
        except Exception:
            log.exception("timer_tick_failed")
        self.kick_commit()
        self._tick_timer = loop.call_later(self.settings.tick_interval, self._tick)

    def _log_dead_letters(self, now: float) -> None:
        """Dead letters counted since the last time, one line per queue and reason; at
        most once per ``dead_letter_log_interval``, so it is never a line per message."""
        logged = False
        for vhost in self.broker.vhosts.values():
            if vhost.dead_letter_log:
                log_dead_letters(vhost)
                logged = True
        if logged:
            self._dead_letters_logged_due = now + self.settings.dead_letter_log_interval

    def _user_deleted(self, name: str) -> None:
        """RabbitMQ closes a deleted user's connections: 320 "user 'u' is deleted"."""
        for conn in list(self.connections):
            if conn.user is not None and conn.user.name == name:
                conn.close(int(ReplyCode.CONNECTION_FORCED),
                           f"CONNECTION_FORCED - user '{name}' is deleted")

    def held_bytes(self) -> int:
        """Ready message bytes of every queue, and the bodies delayed exchanges hold."""
        vhosts = self.broker.vhosts.values()
        return sum(q.ready_bytes for vhost in vhosts for q in vhost.queues.values()) + sum(
            x.held.body_bytes for vhost in vhosts for x in vhost.delayed)

    def _check_memory(self) -> None:
        held = self.held_bytes()
        limit = self.settings.memory_high_watermark
        if not self.memory_alarm and held >= limit:
            self.memory_alarm = True
            log.warning("alarm_raised", alarm="memory", held_bytes=held, watermark=limit)
        elif self.memory_alarm and held < limit:
            self.memory_alarm = False
            log.info("alarm_cleared", alarm="memory", held_bytes=held, watermark=limit)
            self._unblock_if_clear()
        self._alarm_timer = asyncio.get_running_loop().call_later(
            self.settings.alarm_check_interval, self._check_memory
        )

    async def _before_close(self) -> None:
        while self.before_close:
            try:
                await self.before_close.pop()()
            except Exception:
                log.exception("shutdown_step_failed")

    async def close(self, grace: float = 5.0) -> None:
        """Graceful shutdown: stop accepting, close connections with 320, wait for them."""
        await self._before_close()
        if self._alarm_timer is not None:
            self._alarm_timer.cancel()
        self.delay_timer.close()
        if self._tick_timer is not None:
            self._tick_timer.cancel()
        for srv in self._servers:
            srv.close()
        for conn in list(self.connections):
            conn.close(int(ReplyCode.CONNECTION_FORCED),
                       "CONNECTION_FORCED - broker forced connection closure with reason"
                       " 'shutdown'")
        if self.connections:
            await asyncio.wait({c.closed for c in self.connections}, timeout=grace)
        for conn in list(self.connections):
            conn.abort()
        for srv in self._servers:
            await srv.wait_closed()
        self._servers.clear()
        if self.committer is not None:  # before on_close closes the store under it
            await self.committer.close()
        while self.on_close:
            try:
                self.on_close.pop()()
            except Exception:
                log.exception("shutdown_step_failed")
        self._log_dead_letters(0.0)
        log.info("server_stopped")
