"""``warrenmq migrate`` as a process, between two real WarrenMQ brokers on loopback.

WarrenMQ serves the two halves of RabbitMQ's management API the tool uses (GET and POST
/api/definitions) and AMQP, so every path that does not need RabbitMQ itself runs here
in a second: --dry-run changes nothing; a conflicting entity on the target is named
and nothing moves; messages arrive with their property bytes unchanged (typed headers
and a real x-death) and not redelivered; an interrupted run (SIGINT) loses nothing and
a second run moves the rest; a target that refuses messages (reject-publish) stops the
queue with exit status 1 and the refused messages stay on the source; bad input exits
2 with one line. The real RabbitMQ cluster run is test_migrate_cluster.py.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest

from tests.conftest import BrokerHandle, make_config
from tests.mgmthttp import MANAGEMENT
from warrenmq.app import start
from warrenmq.tools.migrate_move import DELIVERY_COUNT
from warrenmq.tools.wire import Client, Content, Url

ROOT = Path(__file__).resolve().parents[2]


class Pair:
    def __init__(self, source: BrokerHandle, target: BrokerHandle) -> None:
        self.source, self.target = source, target

    def args(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "warrenmq", "migrate",
                "--from", self.source.url, "--to", self.target.url,
                "--from-api", f"http://127.0.0.1:{self.source.server.management_port}",
                "--to-api", f"http://127.0.0.1:{self.target.server.management_port}", *extra]

    async def run(self, *extra: str, timeout: float = 60) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *self.args(*extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    servers = [await start(make_config(tmp_path / side, top=MANAGEMENT))
               for side in ("source", "target")]
    yield Pair(*(BrokerHandle(s, "127.0.0.1", s.ports[0]) for s in servers))
    for server in servers:
        await server.close(grace=2.0)


async def fill(url: str, queue: str, count: int, arguments: dict[str, object] | None = None,
               ) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True, arguments=arguments)
        for i in range(count):
            await channel.default_exchange.publish(
                aio_pika.Message(f"m{i}".encode(), message_id=str(i),
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                 headers={"i": i, "big": 2**40, "flag": True}),
                routing_key=queue)


async def depth(url: str, queue: str) -> int:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)


async def raw_messages(url: str, queue: str, count: int) -> list[Content]:
    """The queue's first ``count`` messages as delivered (property bytes and all);
    nothing is acked, closing gives them back."""
    client = await Client.connect(Url.parse(url), 10)
    got: list[Content] = []
    done = asyncio.Event()

    def take(content: Content) -> None:
        got.append(content)
        if len(got) >= count:
            done.set()
    client.on_delivery = take
    from warrenmq.protocol.methods import method_class
    await client.call(method_class("BasicConsume")(0, queue, "snap", False, False, False,
                                                    False, {}))
    await asyncio.wait_for(done.wait(), 10)
    await client.close()
    return got[:count]


async def test_moves_messages_with_their_property_bytes(pair: Pair) -> None:
    await fill(pair.source.url, "jobs", 300, {"x-delivery-limit": 3})
    connection = await aio_pika.connect(pair.source.url)
    async with connection:  # a real dead letter: x-death written by the broker
        channel = await connection.channel()
        await channel.declare_queue("jobs.dlq", durable=True)
        work = await channel.declare_queue("work", durable=True, arguments={
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "jobs.dlq"})
        await channel.default_exchange.publish(
            aio_pika.Message(b"poison", headers={"n": 7}), routing_key="work")
        message = await work.get(timeout=5)
        assert message is not None
        await message.reject(requeue=False)
        await channel.declare_queue("scratch", durable=False)  # not in the definitions
        for _ in range(2):
            await channel.default_exchange.publish(aio_pika.Message(b"s"), "scratch")
    before = {q: await raw_messages(pair.source.url, q, n)
              for q, n in (("jobs", 300), ("jobs.dlq", 1))}
    assert b"x-death" in before["jobs.dlq"][0].properties

    code, out, err = await pair.run()
    assert code == 0, out + err
    assert "topology:" in out and "moved 301 message(s)" in out
    assert "moved 300 message(s) from queue 'jobs'" in err
    assert ("not moved: queue 'scratch' in vhost '/': 2 message(s) (not durable; its"
            " declarer recreates it)") in err
    # The delivery limit made "jobs" a quorum queue (the default --queue-type auto).
    assert 'queue "jobs" in vhost "/": becomes a quorum queue' in err
    table = {line.split()[1]: line.split()[2:] for line in out.splitlines()
             if line.startswith("/ ")}
    assert table["jobs"] == ["300", "0", "300"] and table["jobs.dlq"] == ["1", "0", "1"]
    assert pair.target.vhost().queues["jobs"].arguments["x-queue-type"] == "quorum"
    # Our snapshot gave them back once, so migrate's delivery was the second: the source
    # added x-delivery-count (its count, not part of the message); migrate drops it and
    # keeps every other byte.
    for queue, messages in before.items():
        after = await raw_messages(pair.target.url, queue, len(messages))
        assert [(m.properties, m.body) for m in after] == [
            (m.properties, m.body) for m in messages]
        assert all(DELIVERY_COUNT not in m.properties for m in after)
        assert not any(m.redelivered for m in after)  # redelivered there, not here
    assert before["jobs.dlq"][0].properties == after[0].properties  # x-death, byte for byte
    assert await depth(pair.source.url, "jobs") == 0


async def test_dry_run_changes_nothing(pair: Pair) -> None:
    await fill(pair.source.url, "jobs", 20, {"x-retry-delays": [1000]})
    code, out, err = await pair.run("--dry-run", "--queue-type", "classic")
    assert code == 0, err
    assert "queue 'jobs' in vhost '/' (classic): 20 message(s) would move" in out
    assert "nothing was changed" in out
    assert "x-retry-delays is WarrenMQ's own" in err  # definitions export's loss note
    assert "jobs" not in pair.target.vhost().queues
    assert await depth(pair.source.url, "jobs") == 20


async def test_conflict_is_refused_and_named(pair: Pair) -> None:
    await fill(pair.source.url, "jobs", 5, {"x-max-length": 100})
    await fill(pair.target.url, "jobs", 0, {"x-max-length": 7})
    code, _, err = await pair.run()
    assert code == 2
    assert 'conflict: queue "jobs" in vhost "/"' in err and "x-max-length" in err
    assert "refusing: 1 entity on the target differ" in err
    assert await depth(pair.source.url, "jobs") == 5
    assert await depth(pair.target.url, "jobs") == 0


async def test_interrupted_run_resumes_and_loses_nothing(pair: Pair) -> None:
    await fill(pair.source.url, "jobs", 400)
    proc = await asyncio.create_subprocess_exec(
        *pair.args("--rate", "250", "--window", "20"), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, cwd=ROOT)
    moved = 0
    for _ in range(200):  # until some, not all, moved
        await asyncio.sleep(0.05)
        moved = pair.target.vhost().queues["jobs"].message_count if (
            "jobs" in pair.target.vhost().queues) else 0
        if moved >= 100:
            break
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130, out.decode() + err.decode()
    assert "interrupted; nothing unconfirmed was acked: run it again" in err.decode()
    # progress on stderr (not a tty: a line every 2 s): the queue's and the overall count
    assert re.search(r"^progress: jobs \d+/400, all \d+/400, [\d,]+ msg/s$", err.decode(),
                     re.MULTILINE), err.decode()
    left = await depth(pair.source.url, "jobs")
    first = await depth(pair.target.url, "jobs")
    assert 0 < left < 400 and first + left >= 400

    code, out2, err2 = await pair.run("--rate", "400")
    assert code == 0, out2 + err2
    assert await depth(pair.source.url, "jobs") == 0
    # --rate holds: the rest (left >= 100 messages) took at least left / 400 s
    moved = re.search(r"moved (\d+) message\(s\) from queue 'jobs' in vhost '/' in ([\d.]+) s",
                      err2)
    assert moved is not None, err2
    assert int(moved[1]) >= left and float(moved[2]) >= 0.8 * (left - 1) / 400
    ids: list[str] = []
    connection = await aio_pika.connect(pair.target.url)
    async with connection:
        queue = await (await connection.channel()).get_queue("jobs")
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            ids.append(str(message.message_id))
    assert set(ids) == {str(i) for i in range(400)}  # lost = 0
    assert len(ids) - 400 <= 20  # duplicates: at most one window


async def test_refused_messages_stay_on_the_source(pair: Pair) -> None:
    arguments = {"x-max-length": 50, "x-overflow": "reject-publish"}
    await fill(pair.source.url, "capped", 30, arguments)
    await fill(pair.target.url, "capped", 40, arguments)  # room for 10 more
    code, out, err = await pair.run()
    assert code == 1, out + err
    assert "the target refused (nacked) a message for queue 'capped'" in out
    assert "NOT complete" in out
    assert await depth(pair.target.url, "capped") == 50
    assert await depth(pair.source.url, "capped") == 20  # 10 moved, none lost


async def test_bad_input_is_one_line(pair: Pair, tmp_path: Path) -> None:
    code, _, err = await Pair(pair.source, pair.target).run("--rate", "0")
    assert code == 2 and err.strip() == (
        "warrenmq migrate: --rate and --window must be greater than 0")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "warrenmq", "migrate", "--from", pair.source.url,
        "--to", "amqp://guest:guest@127.0.0.1:1/", "--to-api", "http://127.0.0.1:1",
        "--from-api", f"http://127.0.0.1:{pair.source.server.management_port}",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    _, raw = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert raw.decode().startswith("warrenmq migrate: cannot reach http://127.0.0.1:1")
    assert "Traceback" not in raw.decode()
