"""Deduplication keys across a restart and a crash (docs/deduplication.md).

A durable queue or exchange keeps its keys in ``<data_dir>/dedup.log``, written and
synced by the same group commit as the message store, so a key is on disk no later than
the publisher confirm of the message that set it. Checked: a clean restart (in-process
broker, same data directory), SIGKILL of a real ``python -m warrenmq serve`` process
right after the confirms arrived, a non-durable entity forgetting its keys (memory
only), and a deleted-then-redeclared durable queue not inheriting the old keys.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiormq
import pytest
from pamqp import commands

from tests.conftest import make_config
from tests.helpers import TIMEOUT
from tests.process import BrokerProcess
from warrenmq.app import start
from warrenmq.broker.policies import Policy

pytestmark = pytest.mark.asyncio

DEDUP = {"x-message-deduplication": True}


def keyed(key: str, persistent: bool = True) -> commands.Basic.Properties:
    return commands.Basic.Properties(headers={"x-deduplication-header": key},
                                     delivery_mode=2 if persistent else 1)


async def declare(ch: Any) -> None:
    await ch.queue_declare("dq", durable=True, arguments={**DEDUP, "x-cache-ttl": 3_600_000})
    await ch.queue_declare("mem", durable=False, arguments=DEDUP)
    await ch.exchange_declare("dx", exchange_type="fanout", durable=True, arguments=DEDUP)
    await ch.queue_declare("behind-dx", durable=True)
    await ch.queue_bind("behind-dx", "dx")


async def publish_all(url: str, keys: list[str], *, persistent: bool = True) -> None:
    """Publish each key to dq, mem and dx with confirms; returns once all are acked."""
    conn = await aiormq.connect(url)
    try:
        ch = await conn.channel(publisher_confirms=True)
        await declare(ch)
        confirms = []
        for key in keys:
            for exchange, routing_key in (("", "dq"), ("", "mem"), ("dx", "")):
                confirms.append(ch.basic_publish(key.encode(), exchange=exchange,
                                                 routing_key=routing_key,
                                                 properties=keyed(key, persistent)))
        for confirm in await asyncio.wait_for(asyncio.gather(*confirms), TIMEOUT * 4):
            assert isinstance(confirm, commands.Basic.Ack)
    finally:
        await conn.close()


async def depths(url: str) -> dict[str, int]:
    conn = await aiormq.connect(url)
    try:
        ch = await conn.channel()
        await declare(ch)  # the transient queue is gone after a restart
        out = {}
        for name in ("dq", "mem", "behind-dx"):
            ok = await ch.queue_declare(name, passive=True)
            out[name] = int(ok.message_count)
        return out
    finally:
        await conn.close()


async def test_keys_survive_a_clean_restart(tmp_path: Path) -> None:
    keys = [f"order-{i}" for i in range(20)]
    server = await start(make_config(tmp_path))
    url = f"amqp://guest:guest@127.0.0.1:{server.ports[0]}/"
    await publish_all(url, keys)
    await publish_all(url, keys[:5], persistent=False)  # duplicates already
    assert await depths(url) == {"dq": 20, "mem": 20, "behind-dx": 20}
    await server.close(grace=2.0)

    server = await start(make_config(tmp_path))
    url = f"amqp://guest:guest@127.0.0.1:{server.ports[0]}/"
    try:
        vhost = server.broker.vhosts["/"]
        assert len(vhost.queues["dq"].dedup.entries) == 20
        await publish_all(url, keys)
        # the durable queue and exchange still knew every key; the transient queue
        # (declared again by publish_all) starts with an empty cache, as memory does
        assert await depths(url) == {"dq": 20, "mem": 20, "behind-dx": 20}
        assert vhost.queues["dq"].dedup.duplicates == 20
    finally:
        await server.close(grace=2.0)


async def test_keys_of_transient_messages_survive_too(tmp_path: Path) -> None:
    """The key belongs to the durable entity, not to the message: a transient message's
    key is durable before its confirm as well."""
    server = await start(make_config(tmp_path))
    url = f"amqp://guest:guest@127.0.0.1:{server.ports[0]}/"
    await publish_all(url, ["t1", "t2"], persistent=False)
    on_disk = (tmp_path / "data" / "dedup.log").read_bytes()  # as the confirms arrived
    assert b"st1" in on_disk and b"st2" in on_disk
    await server.close(grace=2.0)
    server = await start(make_config(tmp_path))
    url = f"amqp://guest:guest@127.0.0.1:{server.ports[0]}/"
    try:
        await publish_all(url, ["t1", "t2", "t3"])
        depth = await depths(url)
        assert depth["dq"] == 1 and depth["behind-dx"] == 1  # only t3: t1, t2 were lost
        # with the broker (transient), and their keys kept: the durable entities drop them
    finally:
        await server.close(grace=2.0)


async def test_redeclared_queue_does_not_inherit_old_keys(tmp_path: Path) -> None:
    server = await start(make_config(tmp_path))
    url = f"amqp://guest:guest@127.0.0.1:{server.ports[0]}/"
    await publish_all(url, ["a", "b"])
    conn = await aiormq.connect(url)
    ch = await conn.channel()
    await ch.queue_delete("dq")
    await ch.queue_declare("dq", durable=True, arguments={**DEDUP, "x-cache-ttl": 3_600_000})
    await conn.close()
    await server.close(grace=2.0)
    server = await start(make_config(tmp_path))
    url = f"amqp://guest:guest@127.0.0.1:{server.ports[0]}/"
    try:
        assert server.broker.vhosts["/"].queues["dq"].dedup.entries == {}
        await publish_all(url, ["a"])
        assert (await depths(url))["dq"] == 1
    finally:
        await server.close(grace=2.0)


async def test_keys_survive_sigkill(tmp_path: Path) -> None:
    """Publish with confirms, SIGKILL the broker as soon as the last confirm arrived,
    restart on the same data directory, publish the same keys again: all dropped."""
    data = tmp_path / "data"
    keys = [f"k{i}" for i in range(200)]
    transient = [f"t{i}" for i in range(100)]
    async with BrokerProcess(data, management=False) as broker:
        await publish_all(broker.amqp_url, keys)
        # transient messages: only their keys' own records make these durable
        await publish_all(broker.amqp_url, transient, persistent=False)
        assert await broker.stop(signal.SIGKILL) == -signal.SIGKILL
    async with BrokerProcess(data, management=False) as broker:
        before = await depths(broker.amqp_url)
        assert before == {"dq": 200, "behind-dx": 200, "mem": 0}  # persistent ones only
        await publish_all(broker.amqp_url, keys + transient)
        assert await depths(broker.amqp_url) == {"dq": 200, "behind-dx": 200, "mem": 300}
        assert await broker.stop() == 0


async def test_a_policy_made_cache_survives_a_restart(tmp_path: Path) -> None:
    """Deduplication from a policy on a durable queue: the keys come back at start-up
    whether the policy or the queue is restored first."""
    server = await start(make_config(tmp_path))
    server.broker.set_policy(Policy("dedup", "/", "^pq$", "queues", 0,
                                    {"message-deduplication": True}))
    server.definitions_changed()
    url = f"amqp://guest:guest@127.0.0.1:{server.ports[0]}/"
    conn = await aiormq.connect(url)
    ch = await conn.channel(publisher_confirms=True)
    await ch.queue_declare("pq", durable=True)
    for key in ("a", "b", "a"):
        await ch.basic_publish(b"x", routing_key="pq", properties=keyed(key))
    await conn.close()
    await server.close(grace=2.0)
    server = await start(make_config(tmp_path))
    try:
        queue = server.broker.vhosts["/"].queues["pq"]
        assert queue.dedup is not None and list(queue.dedup.entries) == [b"sa", b"sb"]
    finally:
        await server.close(grace=2.0)
