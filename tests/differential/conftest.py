"""Fixtures of the differential harness (see README.md here).

``rabbitmq``: one private RabbitMQ node for the whole test session, started on first use
and stopped by PID at the end (skipped, with the reason, when rabbitmq-server is absent).
``warren``: a WarrenMQ broker in-process on port 0, started per test from the same
definitions. ``diff``: ``await diff(scenario)`` runs a scenario against both and compares.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.differential.definitions import DEFINITIONS
from tests.differential.harness import Scenario, Transcript, differential
from tests.differential.node import RabbitMQNode, plugin_available, rabbitmq_available
from warrenmq.app import start
from warrenmq.config import ListenerConfig, ManagementConfig, StorageConfig, load_config
from warrenmq.server.listener import Server

CONSISTENT_HASH_PLUGIN = "rabbitmq_consistent_hash_exchange"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The first differential test also waits for the node to boot (~15 s, more on a
    loaded machine): give these tests more than the suite's 60 s."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.timeout(180))


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[RabbitMQNode]:
    reason = rabbitmq_available()
    if reason is not None:
        pytest.skip(f"differential tests need a RabbitMQ node: {reason}")
    # the consistent-hash plugin ships with Debian's package: enabled when present
    # (test_diff_consistent_hash.py skips, saying so, when it is not)
    plugins = tuple(p for p in (CONSISTENT_HASH_PLUGIN,) if plugin_available(p))
    node = RabbitMQNode(DEFINITIONS, plugins=plugins)
    node.start()
    try:
        yield node
    finally:
        node.stop()


async def start_warren(tmp_path: Path, **limits: int) -> Server:
    """WarrenMQ on 127.0.0.1:0 configured by the differential definitions."""
    path = tmp_path / "definitions.json"
    path.write_text(json.dumps(DEFINITIONS))
    config = load_config(path)
    config = dataclasses.replace(
        config,
        listeners=(ListenerConfig(host="127.0.0.1", port=0),),
        storage=StorageConfig(data_dir=str(tmp_path / "data")),
        management=ManagementConfig(enabled=False),
        limits=dataclasses.replace(config.limits, **limits),
    )
    return await start(config)


@pytest.fixture
async def warren(tmp_path: Path) -> AsyncIterator[Server]:
    server = await start_warren(tmp_path)
    yield server
    await server.close(grace=2.0)


Diff = Callable[[Scenario], Awaitable[tuple[Transcript, Transcript]]]


@pytest.fixture
def diff(rabbitmq: RabbitMQNode, warren: Server) -> Diff:
    async def run(scenario: Scenario) -> tuple[Transcript, Transcript]:
        return await differential(scenario, rabbitmq.port, warren.ports[0])

    return run
