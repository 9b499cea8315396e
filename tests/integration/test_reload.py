"""SIGHUP reloads the config of a running ``python -m warrenmq serve`` process.

Covers, against a real broker subprocess and real clients (aio-pika, aiormq): new
exchanges, queues, bindings, users, permissions and policies are applied live and the
new durable queue is saved; what cannot change live (a queue's arguments, the listener
settings) and what a reload never does (delete an exchange or queue dropped from the
file) are logged, and left as they were; persistent messages, ready and unacked, are all
still there and the unacked one can be acked after the reload; an invalid file logs
``config_reload_failed`` with every problem and changes nothing; a user removed from the
file can no longer log in and its open connection is closed. Waits are bounded (log
lines polled for a few seconds); the process is killed by PID if it outlives the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pytest

from tests.helpers import TIMEOUT

REPO = Path(__file__).resolve().parents[2]
HASH = "Wahoc+CDsxYKRkqHRTVUtojppRCVVHcsdPQ/Q758k/HOsmHF"  # "pw", made by RabbitMQ 3.10

BEFORE = """
exchanges:
  - {name: old, type: fanout}
queues:
  - {name: q1, message_ttl: 1h}
"""
AFTER = f"""
limits: {{heartbeat: 30s}}
users:
  - {{name: guest, password: guest, loopback_only: true, tags: [administrator]}}
  - {{name: bob, password_hash: "{HASH}"}}
permissions:
  - {{user: guest, configure: ".*", write: ".*", read: ".*"}}
  - {{user: bob, configure: "", write: "^x2$", read: "^q2$"}}
policies:
  - {{name: small, pattern: "^q2$", apply_to: queues, definition: {{max-length: 2}}}}
exchanges:
  - {{name: x2, type: direct}}
queues:
  - {{name: q1, message_ttl: 2h}}
  - {{name: q2}}
bindings:
  - {{source: x2, destination: q2, routing_key: k}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Broker:
    """A ``warrenmq serve --config`` subprocess and its JSON log."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.config = tmp_path / "broker.yaml"
        self.data = tmp_path / "data"
        self.log = tmp_path / "broker.log"
        self.proc: asyncio.subprocess.Process | None = None

    def write(self, body: str) -> None:
        self.config.write_text(
            f"listeners: [{{port: {self.port}}}]\nstorage: {{data_dir: {self.data}}}\n"
            f"management: {{enabled: false}}\nlogging: {{format: json}}\n{body}")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("event") == name:
                    found.append(entry)
        return found

    async def wait_event(self, name: str, count: int = 1) -> dict[str, Any]:
        for _ in range(200):  # bounded: 10 s
            found = await asyncio.to_thread(self.events, name)
            if len(found) >= count:
                return found[count - 1]
            assert self.proc is not None and self.proc.returncode is None, self.text()
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {name} #{count} in the log:\n{self.text()}")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "warrenmq", "serve", "--config", str(self.config),
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        await self.wait_event("broker_started")

    def hangup(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGHUP)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            assert await asyncio.wait_for(self.proc.wait(), 10) == 0, self.text()
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await asyncio.wait_for(self.proc.wait(), 5)


async def message_count(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return int(declared.declaration_result.message_count or 0)


@pytest.mark.timeout(120)
async def test_sighup_applies_what_it_can_and_loses_nothing(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    broker.write(BEFORE)
    await broker.start()
    try:
        publisher = await aio_pika.connect(broker.url)
        channel = await publisher.channel(publisher_confirms=True)
        for i in range(5):
            await channel.default_exchange.publish(
                aio_pika.Message(f"m{i}".encode(), delivery_mode=2), routing_key="q1")
        consumer = await aio_pika.connect(broker.url)
        held_channel = await consumer.channel()
        held = await (await held_channel.declare_queue("q1", passive=True)).get(
            timeout=TIMEOUT)  # m0 delivered, not acked across the reload
        assert held.body == b"m0"

        broker.write(AFTER)
        broker.hangup()
        reloaded = await broker.wait_event("config_reloaded")
        assert set(reloaded["added"]) >= {
            'user "bob"', 'permission of user "bob" in vhost "/"', 'policy "small" in vhost "/"',
            'exchange "x2" in vhost "/"', 'queue "q2" in vhost "/"',
            'binding of queue "q2" to exchange "x2" with routing key "k" in vhost "/"'}
        incomplete = await broker.wait_event("config_reload_incomplete")
        assert any(f"{broker.config}:" in line and 'queue "q1" in vhost "/" exists with'
                   " other settings: argument x-message-ttl 7200000 here, 3600000 in the"
                   " existing one" in line for line in incomplete["not_applied"])
        assert incomplete["not_deleted"] == ['exchange "old" in vhost "/"']
        assert "limits.heartbeat: 60 -> 30" in reloaded["changed"]  # live since issue 17

        # messages: 4 ready + 1 unacked, and the held one can be acked
        assert await message_count(channel, "q1") == 4
        await held.ack()
        await channel.get_exchange("old")  # not deleted
        x2 = await channel.get_exchange("x2")
        for body in (b"a", b"b", b"c"):
            await x2.publish(aio_pika.Message(body), routing_key="k")
        assert await message_count(channel, "q2") == 2  # the new policy's max-length

        bob = await aiormq.connect(f"amqp://bob:pw@127.0.0.1:{broker.port}/")
        bob_channel = await bob.channel()
        got = await bob_channel.basic_get("q2", no_ack=True)
        assert got.body == b"b"
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):  # configure: nothing
            await bob_channel.queue_declare("bobs")

        saved = json.loads((broker.data / "definitions.json").read_text())
        assert {q["name"] for q in saved["queues"]} == {"q1", "q2"}

        # an invalid file changes nothing
        broker.write(AFTER.replace("  - {name: q2}\n", "  - {name: q2}\n"
                                   "  - {name: q3, max_length: ten}\n"
                                   "  - {name: q4, vhost: nope}\n"))
        broker.hangup()
        failed = await broker.wait_event("config_reload_failed")
        assert [p.split(": ", 1)[1] for p in failed["problems"]] == [
            'queues[2].max_length: expected an integer >= 0, got "ten"',
            'queues[3].vhost: no vhost named "nope" (vhosts: "/")']
        assert failed["level"] == "error"
        with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
            probe = await aiormq.connect(broker.url)
            try:
                await (await probe.channel()).queue_declare("q3", passive=True)
            finally:
                await probe.close()

        # bob and the policy removed from the file: his connection goes, he can no longer
        # log in, and q2 has no max-length any more
        broker.write(AFTER.replace(f'  - {{name: bob, password_hash: "{HASH}"}}\n', "")
                     .replace('  - {user: bob, configure: "", write: "^x2$", read: "^q2$"}\n',
                              "")
                     .replace("policies:\n", "").replace(
                         '  - {name: small, pattern: "^q2$", apply_to: queues,'
                         " definition: {max-length: 2}}\n", ""))
        broker.hangup()
        second = await broker.wait_event("config_reloaded", 2)
        assert second["removed"] == ['user "bob"', 'policy "small" in vhost "/"']
        with pytest.raises(aiormq.exceptions.ConnectionClosed) as closed:
            await asyncio.wait_for(bob.closing, TIMEOUT)
        assert closed.value.args == (320, "CONNECTION_FORCED - user 'bob' is deleted")
        with pytest.raises(aiormq.exceptions.ProbableAuthenticationError):
            await aiormq.connect(f"amqp://bob:pw@127.0.0.1:{broker.port}/")
        assert await message_count(channel, "q1") == 4
        for body in (b"d", b"e", b"f"):
            await x2.publish(aio_pika.Message(body), routing_key="k")
        assert await message_count(channel, "q2") == 4  # c, d, e, f: no policy now
        await consumer.close()
        await publisher.close()
    finally:
        await broker.stop()
