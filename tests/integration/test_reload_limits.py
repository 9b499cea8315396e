"""Limits on a running ``warrenmq serve --config`` process: SIGHUP re-applies the YAML's
limits, and limits set through the management API survive a restart.

SIGHUP: the file's ``limits`` (max_message_size, handshake_timeout...), vhost limits and
user limits are edited, the process is sent SIGHUP, and each new value is checked over
the wire (406 for a body over the new size, 530 for a connection or channel over a new
limit, a silent socket closed at the new handshake deadline); a limit dropped from the
file is cleared; a file with an error keeps every old value and logs the file, line and
key path. Restart: limits the API sets on a user and a vhost the config declares are
in the data directory and back after the process restarts, except a limit the file
itself states, which the file decides (documented in docs/security.md).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import cast

import aiormq
import pytest

from tests.conftest import BrokerHandle
from tests.integration.test_limits import open_refused
from tests.integration.test_reload import Broker, free_port
from tests.mgmthttp import Http


class LimitsBroker(Broker):
    """The reload test's broker process, optionally with its management listener."""

    def __init__(self, tmp_path: Path, management: bool = False) -> None:
        super().__init__(tmp_path)
        self.management_port = free_port() if management else None

    def write(self, body: str) -> None:
        management = (f"{{port: {self.management_port}}}" if self.management_port
                      else "{enabled: false}")
        self.config.write_text(
            f"listeners: [{{port: {self.port}}}]\nstorage: {{data_dir: {self.data}}}\n"
            f"management: {management}\nlogging: {{format: json}}\n{body}")

    def amqp(self, user: str = "guest", password: str = "guest") -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/"


BEFORE = """
limits: {max_message_size: 4096, handshake_timeout: 10s}
vhosts: [{name: /, max_connections: 5}]
users:
  - {name: guest, password: guest, loopback_only: true, tags: [administrator], max_channels: 5}
"""
AFTER = """
limits: {max_message_size: 2048, handshake_timeout: 1s}
vhosts: [{name: /, max_connections: 2}]
users:
  - {name: guest, password: guest, loopback_only: true, tags: [administrator], max_channels: 2}
"""
BROKEN = AFTER.replace("max_message_size: 2048", "max_message_size: lots")
DROPPED = AFTER.replace("vhosts: [{name: /, max_connections: 2}]", "vhosts: [{name: /}]")


async def publish(url: str, size: int) -> None:
    """Publish ``size`` bytes with a confirm; raises the broker's refusal."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.basic_publish(b"x" * size, routing_key="nowhere")
    finally:
        await connection.close()


async def silent_socket_lifetime(port: int) -> float:
    """Seconds until the broker closes a socket that sends nothing (bounded: 15 s)."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await asyncio.wait_for(reader.read(), 15)
    finally:
        writer.close()
    return time.monotonic() - started


@pytest.mark.timeout(120)
async def test_sighup_reapplies_limits(tmp_path: Path) -> None:
    broker = LimitsBroker(tmp_path)
    broker.write(BEFORE)
    await broker.start()
    try:
        await publish(broker.url, 3000)  # under 4096
        held = await aiormq.connect(broker.url)
        await held.channel()
        await held.channel()  # 2 channels: fine under max_channels 5

        broker.write(AFTER)
        broker.hangup()
        reloaded = await broker.wait_event("config_reloaded")
        assert {"limits.max_message_size: 4096 -> 2048", "limits.handshake_timeout: 10 -> 1",
                'max-connections limit of vhost "/"', 'max-channels limit of user "guest"',
                } <= set(reloaded["changed"]), reloaded

        # user max-channels 2: the held connection has 2 open, a third is refused (530
        # closes that connection)
        with pytest.raises(aiormq.exceptions.ConnectionNotAllowed,
                           match=r"maximum allowed user limit of \(2\)"):
            await held.channel()
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed,
                           match="message size 3000 is larger than configured max size 2048"):
            await publish(broker.url, 3000)
        await publish(broker.url, 1000)
        # vhost max-connections 2: two fit, the third is refused
        two = [await aiormq.connect(broker.url) for _ in range(2)]
        close = await open_refused(cast(BrokerHandle, broker))  # reads only .port
        assert (close.reply_code, close.reply_text) == (530, (
            "NOT_ALLOWED - access to vhost '/' refused for user 'guest':"
            " connection limit (2) is reached"))
        for connection in two:
            await connection.close()
        # the new handshake deadline: 1 s, not 10
        assert await silent_socket_lifetime(broker.port) < 5

        # a file with an error: logged with file, line and key path; old values stay
        broker.write(BROKEN)
        broker.hangup()
        failed = await broker.wait_event("config_reload_failed")
        (problem,) = failed["problems"]
        line = next(n for n, text in enumerate(broker.config.read_text().splitlines(), 1)
                    if "lots" in text)
        assert problem.startswith(f"{broker.config}:{line}:") and \
            "limits.max_message_size" in problem, problem
        assert broker.proc is not None and broker.proc.returncode is None
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
            await publish(broker.url, 3000)  # still 2048

        # a limit dropped from the file is cleared
        broker.write(DROPPED)
        broker.hangup()
        reloaded = await broker.wait_event("config_reloaded", 2)
        assert 'max-connections limit of vhost "/"' in reloaded["removed"], reloaded
        extra = [await aiormq.connect(broker.url) for _ in range(2)]  # 3 open now
        for connection in extra:
            await connection.close()
    finally:
        await broker.stop()


CONFIG_USERS = """
users:
  - {name: guest, password: guest, loopback_only: true, tags: [administrator]}
  - {name: app, password: pw, max_connections: 3}
permissions:
  - {user: guest, configure: ".*", write: ".*", read: ".*"}
  - {user: app, configure: ".*", write: ".*", read: ".*"}
"""


@pytest.mark.timeout(120)
async def test_api_limits_on_config_users_survive_a_restart(tmp_path: Path) -> None:
    broker = LimitsBroker(tmp_path, management=True)
    broker.write(CONFIG_USERS)
    await broker.start()
    assert broker.management_port is not None
    http = Http(broker.management_port)
    try:
        for path, value in (("user-limits/app/max-channels", 1),
                            ("user-limits/app/max-connections", 10),
                            ("vhost-limits/%2F/max-queues", 4)):
            reply = await http.request("PUT", f"/api/{path}", body={"value": value})
            assert reply.status == 204, (path, reply)
        # in the data directory when the answer arrives
        saved = json.loads((broker.data / "definitions.json").read_text())
        assert saved["user_limits"] == [{"user": "app", "limits": {"max-channels": 1}}]
        assert "app" not in {u["name"] for u in saved["users"]}  # the config's own user
    finally:
        await broker.stop()

    await broker.start()  # the same file and data directory
    try:
        limits = await http.json("/api/user-limits/app")
        # max-connections is the file's (3): it states it; max-channels came from the API
        assert limits == [{"user": "app", "value": {"max-channels": 1, "max-connections": 3}}]
        assert await http.json("/api/vhost-limits/%2F") == [
            {"vhost": "/", "value": {"max-queues": 4}}]
        user = await http.json("/api/users/app")  # as RabbitMQ 3.10.8 shows a user's limits
        assert user["limits"] == {"max-channels": 1, "max-connections": 3}
        connection = await aiormq.connect(broker.amqp("app", "pw"))
        await connection.channel()
        with pytest.raises(aiormq.exceptions.ConnectionNotAllowed,
                           match=r"maximum allowed user limit of \(1\)"):
            await connection.channel()
    finally:
        await broker.stop()
