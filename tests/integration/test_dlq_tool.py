"""``warrenmq dlq inspect|replay`` (warrenmq.tools.dlq) against the in-process broker.

Topology of every test: direct exchange ``orders`` → queue ``work`` (key
``order.created``, dead-letter exchange ``dlx``); fanout ``dlx`` → ``work.dlq``. Messages
die by basic.nack(requeue=False) (reason ``rejected``) or at ``x-delivery-limit``.

The CLI runs as a real subprocess (``python -m warrenmq dlq ...``), except where a test
needs a fake terminal for the progress bar (in-process, in a thread: the broker lives on
the test's loop). Covered: inspect shows reason/exchange/routing keys/queue/count/body
preview and removes nothing (table and --json, --limit, escaping of binary bodies);
replay back to the origin (bodies, message ids and headers intact; the DLQ empty), to
another exchange/routing key, skipping messages without x-death, failures (missing
exchange, unroutable) leaving messages in the DLQ with exit status 1, --limit, --rate,
a killed replay losing nothing, the tty progress bar, and exit status 2 for usage,
connection and missing-queue errors.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
import sys
from datetime import datetime
from typing import Any

import aiormq
import pytest
from aiormq.abc import DeliveredMessage
from pamqp import commands as spec

from tests.conftest import BrokerHandle
from tests.helpers import TIMEOUT, rmq, wait_until
from warrenmq.cli import _parser
from warrenmq.tools import dlq

WORK_ARGS: dict[str, Any] = {"x-dead-letter-exchange": "dlx"}


# --------------------------------------------------------------------------- helpers
async def cli(broker: BrokerHandle, *args: str) -> tuple[int, str, str]:
    """Run ``warrenmq dlq ARGS --url <broker>`` as a subprocess: (status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "warrenmq", "dlq", *args, "--url", broker.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def topology(channel: aiormq.abc.AbstractChannel, **work_args: Any) -> None:
    await channel.exchange_declare("orders", exchange_type="direct")
    await channel.exchange_declare("dlx", exchange_type="fanout")
    await channel.queue_declare("work", arguments={**WORK_ARGS, **work_args})
    await channel.queue_bind("work", "orders", routing_key="order.created")
    await channel.queue_declare("work.dlq")
    await channel.queue_bind("work.dlq", "dlx", routing_key="")


async def count(channel: aiormq.abc.AbstractChannel, queue: str) -> int:
    ok = await channel.queue_declare(queue, passive=True)
    return int(ok.message_count or 0)


async def wait_count(channel: aiormq.abc.AbstractChannel, queue: str, expected: int) -> None:
    try:
        async with asyncio.timeout(TIMEOUT):
            while await count(channel, queue) != expected:
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(
            f"{queue} holds {await count(channel, queue)}, expected {expected}") from None


async def publish_orders(channel: aiormq.abc.AbstractChannel, n: int,
                         body: bytes | None = None) -> None:
    for i in range(n):
        await channel.basic_publish(
            body if body is not None else f"order-{i}".encode(),
            exchange="orders", routing_key="order.created",
            properties=spec.Basic.Properties(message_id=f"m{i}", headers={"n": i},
                                             content_type="text/plain"),
        )


async def kill_all(channel: aiormq.abc.AbstractChannel, n: int, in_dlq: int | None = None
                   ) -> None:
    """A broken consumer: rejects (requeue=False) ``n`` messages of ``work``; then waits
    until the DLQ holds ``in_dlq`` (default ``n``)."""
    for _ in range(n):
        got = await channel.basic_get("work", no_ack=False)
        assert isinstance(got.delivery, spec.Basic.GetOk)
        await channel.basic_nack(got.delivery.delivery_tag, requeue=False)
    await wait_count(channel, "work.dlq", n if in_dlq is None else in_dlq)


async def dead_orders(channel: aiormq.abc.AbstractChannel, n: int,
                      body: bytes | None = None) -> None:
    await topology(channel)
    await publish_orders(channel, n, body)
    await kill_all(channel, n)


async def drain(channel: aiormq.abc.AbstractChannel, queue: str) -> list[DeliveredMessage]:
    """The fixed consumer: gets and acks everything ``queue`` holds."""
    got: list[DeliveredMessage] = []
    for _ in range(100):
        message = await channel.basic_get(queue, no_ack=False)
        if not isinstance(message.delivery, spec.Basic.GetOk):
            return got
        await channel.basic_ack(message.delivery.delivery_tag)
        got.append(message)
    raise AssertionError(f"{queue} did not run dry")


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


# --------------------------------------------------------------------------- inspect
async def test_inspect_table_lists_without_removing(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        channel = await conn.channel()
        await dead_orders(channel, 3)
        status, out, err = await cli(broker, "inspect", "work.dlq")
        assert status == 0, err
        lines = out.splitlines()
        assert lines[0].split() == ["MESSAGE-ID", "REASON", "EXCHANGE", "ROUTING-KEYS", "QUEUE",
                                    "DEATHS", "TIME", "BODY"]
        assert len(lines) == 4
        for i, line in enumerate(lines[1:]):
            cells = line.split()
            assert cells[:6] == [f"m{i}", "rejected", "orders", "order.created", "work", "1"]
            assert cells[-1] == f"order-{i}"
        assert "3 message(s) shown; work.dlq held 3" in err
        assert await count(channel, "work.dlq") == 3
        assert await count(channel, "work") == 0


async def test_inspect_json_limit_and_binary_preview(broker: BrokerHandle) -> None:
    body = b"\x00\x01caf\xc3\xa9\n\\" + b"x" * 100
    async with rmq(broker) as conn:
        channel = await conn.channel()
        await dead_orders(channel, 3, body)
        status, out, err = await cli(broker, "inspect", "work.dlq", "--json", "--limit", "2")
        assert status == 0, err
        records = json_lines(out)
        assert [r["message_id"] for r in records] == ["m0", "m1"]
        first = records[0]
        assert (first["reason"], first["exchange"], first["routing_keys"], first["queue"],
                first["count"], first["body_size"]) == (
                    "rejected", "orders", ["order.created"], "work", 1, len(body))
        assert first["body_preview"] == "\\x00\\x01caf\\xc3\\xa9\\n\\\\" + "x" * 51 + "..."
        assert datetime.fromisoformat(first["time"]).year >= 2024
        assert [(d["queue"], d["reason"], d["count"]) for d in first["x_death"]] == [
            ("work", "rejected", 1)]
        assert await count(channel, "work.dlq") == 3


async def test_inspect_reports_delivery_limit_deaths(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        channel = await conn.channel()
        await topology(channel, **{"x-delivery-limit": 2})
        await publish_orders(channel, 1)
        for _ in range(10):  # a consumer that keeps failing and requeueing
            got = await channel.basic_get("work", no_ack=False)
            if not isinstance(got.delivery, spec.Basic.GetOk):
                break
            await channel.basic_nack(got.delivery.delivery_tag, requeue=True)
        await wait_count(channel, "work.dlq", 1)
        status, out, err = await cli(broker, "inspect", "work.dlq", "--json")
        assert status == 0, err
        [record] = json_lines(out)
        assert (record["message_id"], record["reason"], record["exchange"], record["queue"],
                record["routing_keys"]) == (
                    "m0", "delivery_limit", "orders", "work", ["order.created"])


# --------------------------------------------------------------------------- replay
async def test_replay_to_original_reaches_fixed_consumer(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        channel = await conn.channel()
        await dead_orders(channel, 3)
        status, out, err = await cli(broker, "replay", "work.dlq")
        assert status == 0, err
        assert out.strip() == "replayed=3 skipped=0 failed=0"
        assert await count(channel, "work.dlq") == 0
        got = await drain(channel, "work")
        assert [(m.body, m.header.properties.message_id) for m in got] == [
            (f"order-{i}".encode(), f"m{i}") for i in range(3)]
        for i, message in enumerate(got):
            properties = message.header.properties
            assert properties.content_type == "text/plain"
            assert properties.headers["n"] == i
            assert properties.headers["x-first-death-queue"] == "work"  # history kept
            assert "x-delivery-count" not in properties.headers
            assert properties.headers["x-replay-count"] == 1
            assert properties.headers["x-replayed-from"] == "work.dlq"
            # back to the queue it died in, through the default exchange
            assert message.delivery.exchange == ""
            assert message.delivery.routing_key == "work"


async def test_replay_to_another_exchange_and_key(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        channel = await conn.channel()
        await dead_orders(channel, 2)
        await channel.exchange_declare("repair", exchange_type="direct")
        await channel.queue_declare("repaired")
        await channel.queue_bind("repaired", "repair", routing_key="fix")
        status, out, err = await cli(broker, "replay", "work.dlq", "--exchange", "repair",
                                     "--routing-key", "fix")
        assert status == 0, err
        assert out.strip() == "replayed=2 skipped=0 failed=0"
        got = await drain(channel, "repaired")
        assert [(m.body, m.delivery.routing_key) for m in got] == [
            (b"order-0", "fix"), (b"order-1", "fix")]
        assert await count(channel, "work") == 0
        assert await count(channel, "work.dlq") == 0


async def test_message_without_x_death_is_skipped_and_stays(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        channel = await conn.channel()
        await topology(channel)
        # First in the DLQ: were it given back at once, it would be fetched again.
        await channel.basic_publish(b"stray", routing_key="work.dlq",
                                    properties=spec.Basic.Properties(message_id="stray"))
        await publish_orders(channel, 2)
        await kill_all(channel, 2, in_dlq=3)
        status, out, err = await cli(broker, "replay", "work.dlq", "--to-original")
        assert status == 0, err
        assert out.strip() == "replayed=2 skipped=1 failed=0"  # fetched once, not twice
        left = await drain(channel, "work.dlq")
        assert [(m.body, m.header.properties.message_id) for m in left] == [(b"stray", "stray")]
        assert [m.body for m in await drain(channel, "work")] == [b"order-0", b"order-1"]


@pytest.mark.parametrize(("args", "problem"), [
    (("--exchange", "orders", "--routing-key", "nowhere"), "returned 312 NO_ROUTE"),
    (("--via-exchange",), "returned 312 NO_ROUTE"),  # to the origin, after its unbinding
])
async def test_failed_replays_stay_in_dlq(broker: BrokerHandle, args: tuple[str, ...],
                                          problem: str) -> None:
    async with rmq(broker) as conn:
        channel = await conn.channel()
        await dead_orders(channel, 2)
        await channel.queue_unbind("work", "orders", routing_key="order.created")
        status, out, err = await cli(broker, "replay", "work.dlq", *args)
        assert status == 1
        assert out.strip() == "replayed=0 skipped=0 failed=2"
        assert err.count(problem) == 2, err
        assert "failed: message m0" in err
        left = await drain(channel, "work.dlq")
        assert [m.header.properties.message_id for m in left] == ["m0", "m1"]
        assert await count(channel, "work") == 0


async def test_replay_limit(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        channel = await conn.channel()
        await dead_orders(channel, 5)
        status, out, err = await cli(broker, "replay", "work.dlq", "--limit", "2")
        assert status == 0, err
        assert out.strip() == "replayed=2 skipped=0 failed=0"
        assert [m.body for m in await drain(channel, "work")] == [b"order-0", b"order-1"]
        assert await count(channel, "work.dlq") == 3


async def test_replay_rate_spaces_the_publishes(broker: BrokerHandle) -> None:
    loop = asyncio.get_running_loop()
    arrivals: list[float] = []
    async with rmq(broker) as conn:
        channel = await conn.channel()
        await dead_orders(channel, 5)

        async def on_message(message: DeliveredMessage) -> None:
            arrivals.append(loop.time())

        await channel.basic_consume("work", on_message, no_ack=True)
        status, out, err = await cli(broker, "replay", "work.dlq", "--rate", "20")
        assert status == 0, err
        assert out.strip() == "replayed=5 skipped=0 failed=0"
        await wait_until(lambda: len(arrivals) == 5)
        # 5 messages at 20/s: 4 gaps of 50 ms; loose bound, never an upper one.
        assert arrivals[-1] - arrivals[0] >= 0.15


async def test_killed_replay_loses_nothing(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        channel = await conn.channel()
        await dead_orders(channel, 6)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "warrenmq", "dlq", "replay", "work.dlq", "--rate", "5",
            "--url", broker.url,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            async with asyncio.timeout(15):
                while await count(channel, "work") < 1:
                    await asyncio.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGKILL)
            await asyncio.wait_for(proc.wait(), TIMEOUT)
        await wait_until(lambda: not broker.vhost().queues["work.dlq"].unacked)
        in_work = await count(channel, "work")
        in_dlq = await count(channel, "work.dlq")
        assert 1 <= in_work < 6
        assert in_work + in_dlq >= 6  # at worst a duplicate, never a loss
        ids = {m.header.properties.message_id
               for m in [*await drain(channel, "work"), *await drain(channel, "work.dlq")]}
        assert ids == {f"m{i}" for i in range(6)}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_progress_bar_on_a_terminal_plain_otherwise(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        channel = await conn.channel()
        await dead_orders(channel, 4)
        args = _parser().parse_args(["dlq", "replay", "work.dlq", "--limit", "2",
                                     "--url", broker.url])
        out, err = io.StringIO(), _Terminal()
        status = await asyncio.wait_for(asyncio.to_thread(dlq.run, args, out, err), 30)
        assert status == 0
        assert out.getvalue() == "replayed=2 skipped=0 failed=0\n"
        assert err.getvalue().endswith(
            "\rwork.dlq [" + "#" * 30 + "] 2/2 replayed=2 skipped=0 failed=0\n"
            "TARGET      MESSAGES\nqueue work  2\n")
        out, plain = io.StringIO(), io.StringIO()
        status = await asyncio.wait_for(asyncio.to_thread(dlq.run, args, out, plain), 30)
        assert (status, out.getvalue()) == (0, "replayed=2 skipped=0 failed=0\n")
        assert "\r" not in plain.getvalue()
        assert await count(channel, "work") == 4


# --------------------------------------------------------------------------- errors
async def test_usage_and_connection_errors_exit_2(broker: BrokerHandle) -> None:
    status, _out, err = await cli(broker, "replay", "missing.dlq")
    assert (status, err.strip()) == (2, "warrenmq dlq replay: queue 'missing.dlq' not found")
    status, _out, err = await cli(broker, "inspect", "missing.dlq")
    assert (status, err.strip()) == (2, "warrenmq dlq inspect: queue 'missing.dlq' not found")
    status, _out, err = await cli(broker, "replay", "work.dlq", "--routing-key", "k")
    assert (status, err.strip()) == (2, "warrenmq dlq replay: --routing-key needs --exchange")
    status, _out, err = await cli(broker, "replay", "q", "--rate", "0")
    assert status == 2 and "--rate: must be greater than 0" in err
    status, _out, err = await cli(broker, "replay", "q", "--limit", "many")
    assert status == 2 and "argument --limit: not a whole number: 'many'" in err
    assert "_positive" not in err and "invalid" not in err
    status, _out, err = await cli(broker, "replay", "q", "--older-than", "5")
    assert status == 2 and "argument --older-than:" in err and '"30m"' in err
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "warrenmq", "dlq", "inspect", "q",
        "--url", f"amqp://guest:secret@127.0.0.1:{port}/",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err_bytes = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2 and out == b""
    message = err_bytes.decode()
    assert message.startswith(
        f"warrenmq dlq inspect: cannot connect to amqp://guest:***@127.0.0.1:{port}/: ")
    assert "secret" not in message and message.count("\n") == 1


async def test_missing_exchange_is_checked_once(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        channel = await conn.channel()
        await dead_orders(channel, 3)
        status, out, err = await cli(broker, "replay", "work.dlq", "--exchange", "nope")
        assert status == 2 and out == ""
        assert err.strip() == ("warrenmq dlq replay: exchange 'nope' not found: nothing was"
                               " replayed")
        assert await count(channel, "work.dlq") == 3


async def fanout_deaths(channel: aiormq.abc.AbstractChannel, n: int) -> None:
    """events (fanout) -> billing (DLX dlx) and audit; dlx -> billing.dlq. ``n`` messages
    die in billing, audit keeps its ``n`` copies."""
    await channel.exchange_declare("events", exchange_type="fanout")
    await channel.exchange_declare("dlx", exchange_type="fanout")
    await channel.queue_declare("billing", arguments=WORK_ARGS)
    await channel.queue_declare("audit")
    await channel.queue_declare("billing.dlq")
    await channel.queue_bind("billing", "events")
    await channel.queue_bind("audit", "events")
    await channel.queue_bind("billing.dlq", "dlx")
    for i in range(n):
        await channel.basic_publish(f"e{i}".encode(), exchange="events",
                                    properties=spec.Basic.Properties(message_id=f"m{i}"))
    await wait_count(channel, "billing", n)
    for _ in range(n):
        got = await channel.basic_get("billing", no_ack=False)
        assert isinstance(got.delivery, spec.Basic.GetOk)
        await channel.basic_nack(got.delivery.delivery_tag, requeue=False)
    await wait_count(channel, "billing.dlq", n)


async def test_fanout_replay_duplicates_nothing(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        channel = await conn.channel()
        await fanout_deaths(channel, 5)
        status, out, err = await cli(broker, "replay", "billing.dlq", "--dry-run")
        assert status == 0, err
        assert out.splitlines() == [
            "TARGET         MESSAGES", "queue billing  5",
            "dry run: would replay 5, would leave 0; nothing was published or removed"]
        assert await count(channel, "billing.dlq") == 5
        status, out, err = await cli(broker, "replay", "billing.dlq", "--via-exchange",
                                     "--dry-run")
        assert status == 0 and "exchange events (key '')  5" in out
        status, out, err = await cli(broker, "replay", "billing.dlq")
        assert (status, out.strip()) == (0, "replayed=5 skipped=0 failed=0"), err
        assert "warning" not in err
        assert (await count(channel, "billing"), await count(channel, "audit"),
                await count(channel, "billing.dlq")) == (5, 5, 0)  # audit: 5, not 10


async def test_via_exchange_warns_about_the_fanout(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        channel = await conn.channel()
        await fanout_deaths(channel, 2)
        status, out, err = await cli(broker, "replay", "billing.dlq", "--via-exchange")
        assert (status, out.strip()) == (0, "replayed=2 skipped=0 failed=0"), err
        assert err.startswith("warning: --via-exchange re-routes through the exchange")
        assert "fanout" in err
        assert await count(channel, "audit") == 4  # what the warning said


async def test_replay_filters(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        channel = await conn.channel()
        await fanout_deaths(channel, 4)
        status, out, _err = await cli(broker, "replay", "billing.dlq", "--message-id", "m1")
        assert (status, out.strip()) == (0, "replayed=1 skipped=3 failed=0")
        for args in (("--from-queue", "audit"), ("--reason", "expired"),
                     ("--older-than", "1h")):
            status, out, _err = await cli(broker, "replay", "billing.dlq", *args)
            assert (status, out.strip()) == (0, "replayed=0 skipped=3 failed=0"), args
        status, out, _err = await cli(broker, "replay", "billing.dlq", "--from-queue",
                                      "billing", "--reason", "rejected", "--older-than", "0s")
        assert (status, out.strip()) == (0, "replayed=3 skipped=0 failed=0")
        got = await drain(channel, "billing")
        assert sorted(m.header.properties.message_id for m in got) == ["m0", "m1", "m2", "m3"]


async def test_connection_errors_show_the_brokers_reason(broker: BrokerHandle) -> None:
    base = f"amqp://guest:guest@127.0.0.1:{broker.port}"
    cases = [
        (f"{base}/novhost", "the broker refused: 530 NOT_ALLOWED - vhost novhost not found"),
        (f"amqp://guest:wrong@127.0.0.1:{broker.port}/", "access refused: ACCESS_REFUSED"),
        (f"http://guest:guest@127.0.0.1:{broker.port}/", "is not an AMQP URL"),
    ]
    for url, expected in cases:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "warrenmq", "dlq", "inspect", "q", "--url", url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 2 and out == b""
        text = err.decode()
        assert expected in text and text.count("\n") == 1, text
        assert "object at 0x" not in text and "Traceback" not in text
