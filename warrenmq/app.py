"""Composition: turn a ``BrokerConfig`` into a running broker (Broker + Server + listeners).

The only place that reads the config object and hands plain values to the layers below.
Used by the CLI and by the test-suite fixtures, so tests run the same wiring as users.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
from pathlib import Path
from typing import cast

import structlog

from warrenmq.broker.broker import Broker, User
from warrenmq.broker.definitions import restore as restore_definitions
from warrenmq.config import BrokerConfig
from warrenmq.message import Message
from warrenmq.protocol.fields import encode_shortstr
from warrenmq.server.listener import Server
from warrenmq.server.settings import ServerSettings
from warrenmq.storage import (
    MESSAGES_DIR,
    DataDirLock,
    DefinitionsStore,
    FsyncPolicy,
    MessageStore,
    RecoveredMessage,
    Recovery,
)

log = structlog.get_logger("warrenmq")

GIL_SWITCH_INTERVAL = 0.0005  # seconds; CPython's default is 0.005


def build_broker(config: BrokerConfig) -> Broker:
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
    return Broker(vhosts=[v.name for v in config.vhosts], users=users)


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
    )


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
        except BaseException:
            self.lock.release()
            raise

    def restore(self, broker: Broker) -> None:
        """Durable definitions, then every live message into its queue, in order."""
        restore_definitions(broker, self.definitions.load())
        ids = itertools.count(self.recovery.max_msg_id + 1)
        for vhost in broker.vhosts.values():
            vhost.attach_store(self.store, ids, self.queue_memory_limit)
        restored = 0
        for key, messages in self.recovery.queues.items():
            vhost_name, _, queue_name = key.partition("\x00")
            owner = broker.vhosts.get(vhost_name)
            queue = owner.queues.get(queue_name) if owner is not None else None
            if queue is None:
                self.store.drop_queue(key)  # its definition is gone: so are its messages
                continue
            queue.restore(self._messages(messages))
            restored += len(messages)
        log.info("messages_recovered", messages=restored, queues=len(self.recovery.queues))
        self.recovery = Recovery()  # let the recovered records be collected

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
            self.store.close()
        finally:
            self.lock.release()


async def start(config: BrokerConfig) -> Server:
    """Recover the data directory, build the broker and start every listener."""
    broker = build_broker(config)
    storage = config.storage
    durability = Durability(Path(storage.data_dir), storage.fsync, storage.queue_memory_limit)
    try:
        durability.restore(broker)
    except BaseException:
        durability.close()
        raise
    server = Server(broker, server_settings(config))
    server.save_definitions = durability.definitions.save
    server.definitions_changed()
    server.attach_store(durability.store)
    # The committer's worker thread needs the GIL back as soon as each fsync returns; with
    # CPython's default 5 ms switch interval the busy loop thread keeps it and every
    # publisher confirm waits (see docs/benchmarks.md, persistent_confirm).
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    server.on_close.append(durability.close)
    try:
        for listener in config.listeners:
            await server.listen(listener.host, listener.port)
    except BaseException:
        await server.close()
        raise
    return server


async def serve(config: BrokerConfig) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    server = await start(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("broker_started", ports=server.ports, data_dir=config.storage.data_dir)
    try:
        await stop.wait()
    finally:
        log.info("broker_stopping")
        await server.close()
