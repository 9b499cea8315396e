"""x-delayed-message across restarts and in the operator's tools: ``warrenmq serve``
processes on private data directories, real clients (aio-pika), the management API over
HTTP and the ``warrenmq`` CLI as a subprocess.

Covered: persistent messages held by a durable delayed exchange, confirmed, survive a
kill -9; a broker started again after they are all overdue releases them at once, in
due order (publish order differed), and a transient one is gone; a delay that crosses a
restart (SIGTERM) is released at its absolute due time, not restarted from zero; the
management API's exchange object counts the waiting messages and gives the next due
time, ``/delayed`` lists them in due order, ``/metrics`` has the count and bytes;
``warrenmq list delayed`` shows the same (table and --json); definitions exported from
one broker and imported into another bring the delayed exchange with its x-delayed-type,
and it delays there.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel

from tests.helpers import TIMEOUT
from tests.mgmthttp import Http
from tests.process import BrokerProcess, arun_cli, events

DELAYED = "x-delayed-message"
PERSISTENT = aio_pika.DeliveryMode.PERSISTENT


async def topology(ch: AbstractChannel) -> aio_pika.abc.AbstractExchange:
    x = await ch.declare_exchange("later", DELAYED, durable=True,
                                  arguments={"x-delayed-type": "direct"})
    queue = await ch.declare_queue("due", durable=True)
    await queue.bind(x, "k")
    return x


async def publish(x: aio_pika.abc.AbstractExchange, body: bytes, delay: int,
                  persistent: bool = True) -> None:
    mode = PERSISTENT if persistent else aio_pika.DeliveryMode.NOT_PERSISTENT
    confirm = await asyncio.wait_for(x.publish(
        aio_pika.Message(body, delivery_mode=mode, headers={"x-delay": delay}), "k"), TIMEOUT)
    assert isinstance(confirm, aiormq.spec.Basic.Ack)


async def drain(url: str, count: int, timeout: float) -> list[tuple[bytes, float]]:
    """(body, arrival) of ``count`` messages from queue ``due``, then checks no more."""
    got: list[tuple[bytes, float]] = []
    conn = await asyncio.wait_for(aio_pika.connect(url), TIMEOUT)
    async with conn:
        ch = await conn.channel()
        queue = await ch.declare_queue("due", durable=True)
        async with queue.iterator() as messages, asyncio.timeout(timeout):
            async for message in messages:
                got.append((message.body, time.time()))
                await message.ack()
                if len(got) == count:
                    break
        await asyncio.sleep(0.3)
        assert await queue.get(fail=False) is None
    return got


async def test_overdue_messages_come_back_at_once_in_due_order(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = await BrokerProcess(data, management=False).start()
    try:
        conn = await asyncio.wait_for(aio_pika.connect(first.amqp_url), TIMEOUT)
        async with conn:
            ch = await conn.channel(publisher_confirms=True)
            x = await topology(ch)
            published = time.time()
            for delay in (900, 300, 600, 750):
                await publish(x, str(delay).encode(), delay)
            await publish(x, b"transient", 400, persistent=False)
        first.send(signal.SIGKILL)  # no shutdown: only what was confirmed is on disk
        assert first.proc is not None
        await asyncio.wait_for(first.proc.wait(), TIMEOUT)
    finally:
        await first.__aexit__(None, None, None)
    await asyncio.sleep(max(0.0, published + 1.0 - time.time()))  # all overdue now
    async with BrokerProcess(data, management=False) as second:
        started = time.time()
        got = await drain(second.amqp_url, 4, timeout=10)
        assert [body for body, _ in got] == [b"300", b"600", b"750", b"900"]
        assert got[-1][1] - started < 3.0  # at once, not after another full delay
        recovered = [e for e in events(second.log) if e.get("event") == "messages_recovered"]
        assert recovered[0]["delayed"] == 4
        assert await second.stop() == 0


async def test_a_delay_crossing_a_restart_keeps_its_due_time(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with BrokerProcess(data, management=False) as first:
        conn = await asyncio.wait_for(aio_pika.connect(first.amqp_url), TIMEOUT)
        async with conn:
            ch = await conn.channel(publisher_confirms=True)
            x = await topology(ch)
            due = time.time() + 4.0
            await publish(x, b"crossing", 4000)
        assert await first.stop() == 0
    async with BrokerProcess(data, management=False) as second:
        assert time.time() < due - 0.5, "the restart took too long for this test"
        got = await drain(second.amqp_url, 1, timeout=10)
        assert got[0][0] == b"crossing"
        assert due - 0.002 <= got[0][1] <= due + 1.5, got[0][1] - due
        assert await second.stop() == 0


async def test_management_api_and_cli_show_what_waits(tmp_path: Path) -> None:
    async with BrokerProcess(tmp_path / "data") as broker:
        conn = await asyncio.wait_for(aio_pika.connect(broker.amqp_url), TIMEOUT)
        async with conn:
            ch = await conn.channel(publisher_confirms=True)
            x = await topology(ch)
            before = time.time() * 1000
            for delay in (90_000, 30_000, 60_000):
                await publish(x, b"%d" % delay, delay)
            after = time.time() * 1000
        http = Http(broker.management_port)
        exchange = await http.json("/api/exchanges/%2F/later")
        assert exchange["messages_delayed"] == 3
        assert exchange["messages_delayed_bytes"] == 15
        assert exchange["delayed_type"] == "direct"
        assert before + 30_000 <= exchange["next_delayed_due_ms"] <= after + 30_000
        assert exchange["next_delayed_due"].endswith("+00:00")
        listed = await http.json("/api/exchanges/%2F/later/delayed?count=2")
        assert [m["payload_bytes"] for m in listed] == [5, 5]
        assert [m["due_ms"] for m in listed] == sorted(m["due_ms"] for m in listed)
        assert listed[0]["due_ms"] == exchange["next_delayed_due_ms"]
        assert listed[0]["properties"]["headers"]["x-delay"] == -30_000
        metrics = (await http.get("/metrics")).text
        assert 'rabbitmq_exchange_messages_delayed{exchange="later",vhost="/"} 3.0' in metrics
        assert ('rabbitmq_exchange_messages_delayed_bytes{exchange="later",vhost="/"} 15.0'
                in metrics)
        direct = await http.json("/api/exchanges/%2F/amq.direct")
        assert "messages_delayed" not in direct
        assert (await http.get("/api/exchanges/%2F/amq.direct/delayed")).status == 404

        env = {"WARRENMQ_URL": broker.http_url}
        result = await arun_cli("list", "delayed", env=env)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        lines = result.stdout.strip().splitlines()
        assert lines[0].split() == ["vhost", "name", "delayed_type", "messages_delayed",
                                    "messages_delayed_bytes", "next_delayed_due"]
        assert lines[1].split() == ["/", "later", "direct", "3", "15",
                                    exchange["next_delayed_due"]]
        assert len(lines) == 2  # only delayed exchanges are listed
        result = await arun_cli("list", "delayed", "--vhost", "/", "--json", env=env)
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout)
        assert [(r["name"], r["messages_delayed"]) for r in rows] == [("later", 3)]
        assert await broker.stop() == 0


async def test_definitions_carry_the_delayed_exchange(tmp_path: Path) -> None:
    async with BrokerProcess(tmp_path / "one") as one:
        conn = await asyncio.wait_for(aio_pika.connect(one.amqp_url), TIMEOUT)
        async with conn:
            await topology(await conn.channel())
        document = await Http(one.management_port).json("/api/definitions")
        assert await one.stop() == 0
    exported = [x for x in document["exchanges"] if x["name"] == "later"]
    assert exported == [{"name": "later", "vhost": "/", "type": DELAYED, "durable": True,
                         "auto_delete": False, "internal": False,
                         "arguments": {"x-delayed-type": "direct"}}]
    async with BrokerProcess(tmp_path / "two") as two:
        reply = await Http(two.management_port).request("POST", "/api/definitions",
                                                        body=document)
        assert reply.status in (200, 201, 204), reply.text
        conn = await asyncio.wait_for(aio_pika.connect(two.amqp_url), TIMEOUT)
        async with conn:
            ch = await conn.channel(publisher_confirms=True)
            x = await ch.get_exchange("later")
            sent = time.time()
            await publish(x, b"imported", 300)
        got = await drain(two.amqp_url, 1, timeout=10)
        assert got[0][0] == b"imported" and got[0][1] >= sent + 0.3 - 0.002
        assert await two.stop() == 0


async def test_check_config_names_a_bad_delayed_exchange(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("exchanges:\n  - {name: later, type: x-delayed-message,"
                    " delayed_type: topic}\n")
    result = await arun_cli("check-config", str(good))
    assert (result.returncode, result.stdout.strip()) == (0, f"{good}: ok"), result.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("exchanges:\n  - name: later\n    type: x-delayed-message\n"
                   "    delayed_type: nope\n")
    result = await arun_cli("check-config", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"{bad}:2:5: exchanges[0].arguments: the x-delayed-message exchange type refuses it:"
        " Invalid argument, 'x-delayed-type' must be an existing exchange type (got 'nope')")
