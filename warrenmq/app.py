"""Composition: turn a ``BrokerConfig`` into a running broker (Broker + Server + listeners).

The only place that reads the config object and hands plain values to the layers below.
Used by the CLI and by the test-suite fixtures, so tests run the same wiring as users.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

import structlog

from warrenmq.broker import delays
from warrenmq.broker.broker import Broker, User
from warrenmq.broker.definitions import restore as restore_definitions
from warrenmq.broker.permissions import Permission
from warrenmq.broker.vhost import VirtualHost
from warrenmq.config import BrokerConfig, ConfigError, SslConfig
from warrenmq.config.rabbit import effective_permissions
from warrenmq.declarations import SavedDefinitions, declare, warn_start
from warrenmq.declarations import reload as reload_config
from warrenmq.exchange.delayed import STORE_PREFIX
from warrenmq.exchange.registry import load_plugins
from warrenmq.message import Message
from warrenmq.protocol.fields import encode_shortstr
from warrenmq.server.listener import Server
from warrenmq.server.settings import ServerSettings
from warrenmq.server.tls import TlsContext, TlsOptions
from warrenmq.startup import (
    amqp_listener_error,
    banner,
    data_dir_error,
    facts,
    management_listener_error,
)
from warrenmq.storage import (
    MESSAGES_DIR,
    DataDirLock,
    DefinitionsStore,
    FsyncPolicy,
    MessageStore,
    RecoveredMessage,
    Recovery,
    StorageError,
)
from warrenmq.storage.dedup_log import DEDUP_FILE, DedupLog, WithDedup
from warrenmq.storage.streams import STREAMS_DIR, StreamStore, WithStreams

log = structlog.get_logger("warrenmq")

GIL_SWITCH_INTERVAL = 0.0005  # seconds; CPython's default is 0.005
#: Allocations between young-generation collections (CPython's default is 700).
GC_GEN0_THRESHOLD = 100_000


def tune_gc() -> None:
    """The broker process's garbage-collector policy, once it has started.

    The hot path's objects (messages, queue entries, store handles, frames) hold no
    reference cycles: reference counting frees them. The cyclic GC's default young
    collection every 700 allocations found nothing to free but kept walking them, and
    its older generations the broker's long-lived state; measured side by side, a
    threshold of 100,000 gave 7-22% more throughput (docs/benchmarks.md). ``freeze``
    moves what startup and recovery built out of the collector's sight for good.
    Cycles are still collected, only less often. Not done by ``start`` (tests run many
    brokers in one process), only by ``serve``.
    """
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 50, 100)


def build_broker(config: BrokerConfig) -> Broker:
    load_plugins()  # exchange-type plugins (PluginError names a broken one); once a process
    users = [
        User(
            u.name,
            password=u.password,
            password_hash=u.password_hash,
            tags=tuple(u.tags),
            loopback_only=u.loopback_only,
        )
        for u in config.users
    ]
    permissions = {(p.user, p.vhost or config.default_vhost):
                   Permission(p.configure, p.write, p.read)
                   for p in effective_permissions(config)}
    return Broker(vhosts=[v.name for v in config.vhosts], users=users, permissions=permissions)


def server_settings(config: BrokerConfig) -> ServerSettings:
    limits = config.limits
    return ServerSettings(
        frame_max=limits.frame_max,
        channel_max=limits.channel_max,
        heartbeat=limits.heartbeat,
        max_message_size=limits.max_message_size,
        max_connections=limits.max_connections,
        write_high_water=config.write_buffer_high_water,
        write_low_water=config.write_buffer_low_water,
        memory_high_watermark=config.memory_high_watermark_bytes,
        default_vhost=config.default_vhost,
        handshake_timeout=float(limits.handshake_timeout),
        max_handshakes=limits.max_handshakes,
        ssl_cert_login_from=config.auth.ssl_cert_login_from,
        failed_login_threshold=config.auth.failed_login_threshold,
        failed_login_window=float(config.auth.failed_login_window),
        failed_login_delay=float(config.auth.failed_login_delay),
    )


def tls_options(ssl: SslConfig | None) -> TlsOptions | None:
    if ssl is None:
        return None
    return TlsOptions(ssl.certfile, ssl.keyfile, ssl.cafile, ssl.verify == "verify_peer",
                      ssl.fail_if_no_peer_cert, ssl.ciphers)


def apply_limits(broker: Broker, config: BrokerConfig) -> None:
    """The vhost and user limits the config gives (RabbitMQ's vhost/user limits)."""
    for vhost in config.vhosts:
        for limit, value in (("max-connections", vhost.max_connections),
                             ("max-queues", vhost.max_queues)):
            if value is not None:
                broker.set_limit("vhost", vhost.name, limit, value)
    for user in config.users:
        for limit, value in (("max-connections", user.max_connections),
                             ("max-channels", user.max_channels)):
            if value is not None:
                broker.set_limit("user", user.name, limit, value)


class Durability:
    """What a running broker holds open in its data directory; closed on shutdown."""

    def __init__(self, data_dir: Path, fsync: str, queue_memory_limit: int) -> None:
        self.queue_memory_limit = queue_memory_limit
        self.lock = DataDirLock(data_dir)
        self.lock.acquire()  # DataDirLocked: another broker owns this directory
        try:
            self.definitions = DefinitionsStore(data_dir)
            self.store, self.recovery = MessageStore.open(
                data_dir / MESSAGES_DIR, fsync=cast(FsyncPolicy, fsync))
            self.streams = StreamStore(data_dir / STREAMS_DIR)
            self.dedup = DedupLog.open(data_dir / DEDUP_FILE, fsync=fsync != "never")
        except BaseException:
            self.lock.release()
            raise

    def restore(self, broker: Broker) -> None:
        """Durable definitions, then every live message into its queue, in order."""
        for vhost in broker.vhosts.values():
            vhost.streams = self.streams  # before the definitions: they open streams
            vhost.dedup_log = self.dedup  # before the definitions: caches take their keys
        restore_definitions(broker, self.definitions.load())
        self.dedup.discard_recovered()
        ids = itertools.count(self.recovery.max_msg_id + 1)
        for vhost in broker.vhosts.values():
            vhost.attach_store(self.store, ids, self.queue_memory_limit)
        restored = delayed = 0
        for key, messages in self.recovery.queues.items():
            vhost_name, _, queue_name = key.partition("\x00")
            owner = broker.vhosts.get(vhost_name)
            if queue_name.startswith(STORE_PREFIX):  # an x-delayed-message's held ones
                delayed += self._restore_delayed(owner, key, queue_name, messages)
                continue
            queue = owner.queues.get(queue_name) if owner is not None else None
            if queue is None:
                self.store.drop_queue(key)  # its definition is gone: so are its messages
                continue
            queue.restore(self._messages(messages))
            restored += len(messages)
        log.info("messages_recovered", messages=restored, queues=len(self.recovery.queues),
                 delayed=delayed)
        self.recovery = Recovery()  # let the recovered records be collected

    def _restore_delayed(self, vhost: VirtualHost | None, key: str, name: str,
                         messages: list[RecoveredMessage]) -> int:
        exchange = vhost.exchanges.get(name[len(STORE_PREFIX):]) if vhost else None
        if vhost is None or not delays.is_delayed(exchange):
            self.store.drop_queue(key)  # the exchange is gone: so are its messages
            return 0
        return delays.restore(vhost, exchange, messages, self.store.read_body)

    def warn_orphans(self) -> None:
        """One warning per stream directory whose stream is not declared (after the
        restored and the configured definitions): what it is and what to do."""
        for path, vhost, name, size in self.streams.orphans():
            log.warning("stream_orphaned", directory=str(path), vhost=vhost, stream=name,
                        bytes=size,
                        hint="no stream queue of this name is declared; declare it again "
                             "(durable, x-queue-type: stream) to read these segments, or "
                             "delete the directory to free the space")

    def _messages(
        self, recovered: list[RecoveredMessage]
    ) -> list[tuple[Message, bool, int, float]]:
        out = []
        for r in recovered:
            route = encode_shortstr(r.exchange) + encode_shortstr(r.routing_key)
            message = Message(r.exchange, r.routing_key, route, r.properties, r.body or b"")
            message.msg_id = r.msg_id
            message.location = r.location
            message.store = self.store
            if r.body is None:  # a large body: left on disk until it is delivered
                message.size = r.location.length
                message.paged = True
            out.append((message, r.delivered, r.failures, r.published))
        return out

    def close(self) -> None:
        try:
            try:
                self.streams.close()
                self.dedup.close()
            finally:
                self.store.close()
        finally:
            self.lock.release()


async def start(config: BrokerConfig) -> Server:
    """Recover the data directory, build the broker and start every listener."""
    broker = build_broker(config)
    storage = config.storage
    try:
        durability = Durability(Path(storage.data_dir), storage.fsync,
                                storage.queue_memory_limit)
    except StorageError:
        raise  # another broker holds it, or the store is unreadable: says so itself
    except OSError as exc:
        raise data_dir_error(storage.data_dir, exc) from exc
    try:
        durability.restore(broker)
        # the config's topology, users, permissions and policies, before any listener;
        # ConfigError (exit 2) on a conflict with a restored durable entity
        declare(broker, config)
    except BaseException:
        durability.close()
        raise
    warn_start(config)
    durability.warn_orphans()
    apply_limits(broker, config)
    server = Server(broker, server_settings(config))
    server.save_definitions = SavedDefinitions(durability.definitions.save, config)
    server.definitions_changed()
    server.attach_store(WithDedup(WithStreams(durability.store, durability.streams),
                                  durability.dedup, durability.store))
    # The committer's worker thread needs the GIL back as soon as each fsync returns; with
    # CPython's default 5 ms switch interval the busy loop thread keeps it and every
    # publisher confirm waits (see docs/benchmarks.md, persistent_confirm).
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    server.on_close.append(durability.close)
    try:
        for listener in config.listeners:
            try:
                await server.listen(listener.host, listener.port, tls_options(listener.ssl))
            except OSError as exc:
                raise amqp_listener_error(listener.host, listener.port, exc) from exc
        if config.management.enabled:
            await start_management(server, config)
    except BaseException:
        await server.close()
        raise
    return server


async def start_management(server: Server, config: BrokerConfig) -> None:
    """The HTTP listener (API, /metrics, dashboard), stopped first on shutdown."""
    from warrenmq.management.app import ManagementServer  # aiohttp: only when enabled

    management = ManagementServer(server, data_dir=Path(config.storage.data_dir))
    tls = tls_options(config.management.ssl)
    context = None
    if tls is not None:  # HTTPS, with the same options and reloads as amqps
        where = f"{config.management.host}:{config.management.port}"
        server.tls_contexts.append(TlsContext(tls, where))
        context = server.tls_contexts[-1].context
    host, port = config.management.host, config.management.port
    try:
        server.management_port = await management.start(host, port, context)
    except OSError as exc:
        raise management_listener_error(host, port, exc) from exc
    if tls is not None:
        server.tls_contexts[-1].protocol = "https"
        server.tls_contexts[-1].port = server.management_port
    server.before_close.append(management.close)


async def serve(config: BrokerConfig, load: Callable[[], BrokerConfig] | None = None) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully; SIGHUP re-reads the config
    with ``load`` (the file and the command line's overrides) and applies what it can."""
    # the handlers first: a client may connect (and a SIGTERM arrive) as soon as the AMQP
    # listener is up, before the management listener is; a stop asked for meanwhile is a
    # graceful shutdown right after the start
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _still_starting)
    server = await start(config)
    tune_gc()
    if load is not None:
        current = [config]
        loop.add_signal_handler(signal.SIGHUP, _reload, server, current, load)
    else:  # SIGHUP's default action would kill the broker
        loop.add_signal_handler(signal.SIGHUP, _nothing_to_reload)
    found = facts(server, config)
    if sys.stdout.isatty():
        sys.stdout.write(banner(found))
        sys.stdout.flush()
    log.info("broker_started", **found)
    try:
        await stop.wait()
    finally:
        log.info("broker_stopping")
        await server.close()


def _still_starting() -> None:
    log.warning("config_reload_skipped", reason="the broker is still starting; send SIGHUP"
                " again once it logged broker_started")


def _nothing_to_reload() -> None:
    log.warning("config_reload_skipped",
                reason="the broker was started without --config: there is no file to re-read")


def _reload(server: Server, current: list[BrokerConfig], load: Callable[[], BrokerConfig]
            ) -> None:
    """SIGHUP: an invalid file changes nothing (config_reload_failed lists every problem)."""
    try:
        new = load()
    except ConfigError as exc:
        log.error("config_reload_failed", problems=[str(p) for p in exc.problems])
        return
    except OSError as exc:
        log.error("config_reload_failed", problems=[str(exc)])
        return
    server.reload_tls()  # certificates re-read even when the file is unchanged
    try:
        reload_config(server, current[0], new)
    except Exception:
        log.exception("config_reload_failed")
        return
    current[0] = new
    if isinstance(server.save_definitions, SavedDefinitions):
        server.save_definitions.config = new
    server.definitions_changed()
