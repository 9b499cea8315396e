"""Composition: turn a ``BrokerConfig`` into a running broker (Broker + Server + listeners).

The only place that reads the config object and hands plain values to the layers below.
Used by the CLI and by the test-suite fixtures, so tests run the same wiring as users.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import structlog

from warrenmq.broker.broker import Broker, User
from warrenmq.config import BrokerConfig
from warrenmq.server.listener import Server
from warrenmq.server.settings import ServerSettings

log = structlog.get_logger("warrenmq")


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
    )


def _prepare_data_dir(path: str) -> None:
    """Create the data directory before the loop serves anyone (a one-off, blocking)."""
    Path(path).mkdir(parents=True, exist_ok=True)


async def start(config: BrokerConfig) -> Server:
    """Build the broker and start every listener; returns the running server."""
    _prepare_data_dir(config.storage.data_dir)
    server = Server(build_broker(config), server_settings(config))
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
