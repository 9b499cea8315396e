"""Shared fixtures: a real WarrenMQ broker started in-process on 127.0.0.1, port 0.

Tests talk to it over real TCP with real client libraries (aio-pika, aiormq, pika in a
thread) or raw bytes; nothing is mocked. The event loop is uvloop, as in production.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvloop

from warrenmq.app import start
from warrenmq.config import (
    BrokerConfig,
    LimitsConfig,
    ListenerConfig,
    ManagementConfig,
    StorageConfig,
)
from warrenmq.server.listener import Server


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, object]:
    return {"uvloop": uvloop.new_event_loop}


@dataclasses.dataclass
class BrokerHandle:
    server: Server
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}/"

    def vhost(self, name: str = "/"):  # type: ignore[no-untyped-def]
        return self.server.broker.vhosts[name]


def make_config(
    tmp_path: Path, top: dict[str, object] | None = None, **limits: int
) -> BrokerConfig:
    """A config on 127.0.0.1:0 with a private data dir, ``limits`` and top-level ``top``.

    The management listener is off (every broker would want port 15672); tests of it
    pass ``top={"management": ManagementConfig(port=0)}``."""
    top = {"management": ManagementConfig(enabled=False), **(top or {})}
    return BrokerConfig(
        listeners=(ListenerConfig(host="127.0.0.1", port=0),),
        storage=StorageConfig(data_dir=str(tmp_path / "data")),
        limits=dataclasses.replace(LimitsConfig(), **limits),
        **top,  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[BrokerHandle]:
    """A broker on ``tmp_path/data`` for the duration of the block, stopped cleanly: a
    second ``running(tmp_path)`` afterwards is a restart on the same data directory."""
    server = await start(make_config(tmp_path))
    try:
        yield BrokerHandle(server, "127.0.0.1", server.ports[0])
    finally:
        await server.close(grace=2.0)


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[BrokerHandle]:
    server = await start(make_config(tmp_path))
    yield BrokerHandle(server, "127.0.0.1", server.ports[0])
    await server.close(grace=2.0)


@pytest.fixture
async def broker_factory(tmp_path: Path) -> AsyncIterator[object]:
    """Start brokers with custom limits: ``await broker_factory(heartbeat=1)``; other
    top-level config fields go in ``top={...}``."""
    servers: list[Server] = []

    async def factory(top: dict[str, object] | None = None, **limits: int) -> BrokerHandle:
        server = await start(make_config(tmp_path, top, **limits))
        servers.append(server)
        return BrokerHandle(server, "127.0.0.1", server.ports[0])

    yield factory
    for server in servers:
        await server.close(grace=2.0)
