"""basic.* semantics over the wire (RabbitMQ behaviour where it differs from the spec).

Covers: basic.consume tags (server-generated "amq.ctag-...", client-chosen, reuse on one
channel → 530 connection close), exclusive consumers (403), consuming a missing queue (404);
basic.cancel stops deliveries while the unacked messages stay ackable; basic.get / get-ok
message_count / get-empty; basic.ack of an unknown or already acked tag (406 channel close
naming basic.ack), ack multiple; nack/reject with requeue restore a message's original
position with redelivered=true, without requeue they drop it; closing a channel or a
connection returns its unacked messages in order to another consumer; basic.recover and
basic.recover-async (requeue=false is RabbitMQ's 540); basic.qos prefetch_size != 0
(RabbitMQ: 540 connection close); channel.flow pauses and resumes deliveries to a channel.

Note: RabbitMQ itself answers channel.flow(active=false) with 540 NOT_IMPLEMENTED;
WarrenMQ implements the spec's pause, and that is what is tested here.
"""

from __future__ import annotations

import asyncio

import aio_pika
import aiormq
import pika
import pytest
from pamqp import commands

from tests.conftest import BrokerHandle
from tests.helpers import bodies, consume, declare, publish, raw_client, sync
from tests.rawamqp import RawClient


# --------------------------------------------------------------------------- raw helpers
async def raw_get(client: RawClient, queue: str, channel: int = 1,
                  no_ack: bool = False) -> tuple[commands.Basic.GetOk, bytes] | None:
    client.send_method(channel, commands.Basic.Get(queue=queue, no_ack=no_ack))
    _, value = await client.read_frame()
    if isinstance(value, commands.Basic.GetEmpty):
        return None
    assert isinstance(value, commands.Basic.GetOk), value
    return value, await client.read_body()


# --------------------------------------------------------------------------- consume
async def test_consume_with_server_generated_tags(broker: BrokerHandle) -> None:
    client = await raw_client(broker, (1, 2))
    await declare(client, "gen")
    tags = []
    for _ in range(2):
        client.send_method(1, commands.Basic.Consume(queue="gen", consumer_tag=""))
        ok = await client.expect(commands.Basic.ConsumeOk)
        tags.append(ok.consumer_tag)
    assert all(tag.startswith("amq.ctag-") and len(tag) > len("amq.ctag-") for tag in tags)
    assert tags[0] != tags[1]
    publish(client, 2, "gen", [b"one"])
    got, _ = await sync(client, "gen")
    assert [(d.body, d.method.consumer_tag in tags) for d in got] == [(b"one", True)]
    client.close()


async def test_consume_with_client_tag(broker: BrokerHandle) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("tagged")
        got: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        tag = await queue.consume(got.put, consumer_tag="my-tag", no_ack=True)
        assert tag == "my-tag"
        await channel.default_exchange.publish(aio_pika.Message(b"hi"), routing_key="tagged")
        message = await asyncio.wait_for(got.get(), 5)
        assert (message.consumer_tag, message.body) == ("my-tag", b"hi")


async def test_duplicate_consumer_tag_on_a_channel_closes_connection(
        broker: BrokerHandle) -> None:
    client = await raw_client(broker, (1, 2))
    await declare(client, "dup")
    await consume(client, "dup", "dup")
    # the same tag on another channel is fine
    await consume(client, "dup", "dup", channel=2)
    client.send_method(1, commands.Basic.Consume(queue="dup", consumer_tag="dup"))
    close = await client.expect_connection_close()
    assert close.reply_code == 530
    assert close.reply_text.startswith("NOT_ALLOWED - ")
    assert "attempt to reuse consumer tag 'dup'" in close.reply_text
    assert (close.class_id, close.method_id) == (60, 20)
    assert broker.vhost().queues["dup"].consumer_count == 0


async def test_exclusive_consume_refused_when_a_consumer_exists(broker: BrokerHandle) -> None:
    client = await raw_client(broker, (1, 2))
    await declare(client, "excl")
    await consume(client, "excl", "plain")
    client.send_method(2, commands.Basic.Consume(queue="excl", consumer_tag="x",
                                                 exclusive=True))
    close = await client.expect_channel_close(2)
    assert close.reply_code == 403
    assert close.reply_text == "ACCESS_REFUSED - queue 'excl' in vhost '/' in exclusive use"
    assert (close.class_id, close.method_id) == (60, 20)
    # channel 1 and its consumer are untouched
    assert broker.vhost().queues["excl"].consumer_count == 1
    _, ready = await sync(client, "excl")
    assert ready == 0
    client.close()


async def test_consume_refused_while_an_exclusive_consumer_exists(broker: BrokerHandle) -> None:
    connection = await aiormq.connect(broker.url)
    first = await connection.channel()
    await first.queue_declare("excl2")

    async def ignore(message: aiormq.abc.DeliveredMessage) -> None:
        pass

    await first.basic_consume("excl2", ignore, exclusive=True)
    second = await connection.channel()
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused) as info:
        await second.basic_consume("excl2", ignore)
    assert "in exclusive use" in str(info.value)
    assert broker.vhost().queues["excl2"].consumer_count == 1
    await connection.close()


async def test_consume_on_missing_queue_is_404(broker: BrokerHandle) -> None:
    def run() -> tuple[int, str]:
        conn = pika.BlockingConnection(pika.URLParameters(broker.url))
        try:
            ch = conn.channel()
            try:
                ch.basic_consume("no-such-queue", lambda *args: None)
            except pika.exceptions.ChannelClosedByBroker as exc:
                return exc.reply_code, exc.reply_text
            return 0, "no error"
        finally:
            conn.close()

    code, text = await asyncio.wait_for(asyncio.to_thread(run), 10)
    assert (code, text) == (404, "NOT_FOUND - no queue 'no-such-queue' in vhost '/'")


async def test_cancel_stops_deliveries_and_unacked_stay_ackable(broker: BrokerHandle) -> None:
    client = await raw_client(broker, (1, 2))
    await declare(client, "cancel")
    await consume(client, "cancel", "c")
    publish(client, 2, "cancel", bodies("m", 3))
    got, _ = await sync(client, "cancel")
    assert [d.body for d in got] == bodies("m", 3)

    client.send_method(1, commands.Basic.Cancel(consumer_tag="c"))
    _, ok = await client.collect_until(commands.Basic.CancelOk)
    assert ok.consumer_tag == "c"
    publish(client, 2, "cancel", bodies("m", 2, start=3))
    more, ready = await sync(client, "cancel")
    assert (more, ready) == ([], 2)

    queue = broker.vhost().queues["cancel"]
    assert queue.unacked == 3
    client.send_method(1, commands.Basic.Ack(delivery_tag=1))
    client.send_method(1, commands.Basic.Ack(delivery_tag=3, multiple=True))
    more, ready = await sync(client, "cancel")  # a 406 would arrive instead of declare-ok
    assert (more, ready) == ([], 2)
    assert (queue.unacked, queue.acked) == (0, 3)
    # cancelling an unknown tag is not an error (spec: ignore)
    client.send_method(1, commands.Basic.Cancel(consumer_tag="never"))
    _, ok = await client.collect_until(commands.Basic.CancelOk)
    assert ok.consumer_tag == "never"
    client.close()


# --------------------------------------------------------------------------- get
async def test_get_ok_message_count_and_get_empty(broker: BrokerHandle) -> None:
    connection = await aiormq.connect(broker.url)
    channel = await connection.channel()
    await channel.queue_declare("get")
    for body in bodies("g", 3):
        await channel.basic_publish(body, routing_key="get")
    seen = []
    for _ in range(3):
        result = await channel.basic_get("get")
        assert isinstance(result.delivery, aiormq.spec.Basic.GetOk)
        seen.append((result.body, result.delivery.message_count, result.redelivered))
        await channel.basic_ack(result.delivery.delivery_tag)
    assert seen == [(b"g0", 2, False), (b"g1", 1, False), (b"g2", 0, False)]
    empty = await channel.basic_get("get")
    assert isinstance(empty.delivery, aiormq.spec.Basic.GetEmpty)
    queue = broker.vhost().queues["get"]
    assert (queue.message_count, queue.unacked, queue.acked) == (0, 0, 3)
    await connection.close()


# --------------------------------------------------------------------------- ack errors
async def test_ack_of_unknown_tag_is_406_naming_basic_ack(broker: BrokerHandle) -> None:
    client = await raw_client(broker)
    client.send_method(1, commands.Basic.Ack(delivery_tag=99))
    close = await client.expect_channel_close()
    assert close.reply_code == 406
    assert close.reply_text == "PRECONDITION_FAILED - unknown delivery tag 99"
    assert (close.class_id, close.method_id) == (60, 80)
    await client.open_channel(1)  # the connection survives a channel error
    await declare(client, "alive")
    client.close()


async def test_double_ack_is_406(broker: BrokerHandle) -> None:
    client = await raw_client(broker)
    await declare(client, "twice")
    publish(client, 1, "twice", [b"once"])
    got = await raw_get(client, "twice")
    assert got is not None and got[1] == b"once"
    client.send_method(1, commands.Basic.Ack(delivery_tag=got[0].delivery_tag))
    client.send_method(1, commands.Basic.Ack(delivery_tag=got[0].delivery_tag))
    close = await client.expect_channel_close()
    assert (close.reply_code, close.class_id, close.method_id) == (406, 60, 80)
    assert close.reply_text == f"PRECONDITION_FAILED - unknown delivery tag {got[0].delivery_tag}"
    queue = broker.vhost().queues["twice"]
    assert (queue.message_count, queue.unacked, queue.acked) == (0, 0, 1)
    client.close()


async def test_nack_and_reject_of_unknown_tags_are_406(broker: BrokerHandle) -> None:
    client = await raw_client(broker)
    client.send_method(1, commands.Basic.Nack(delivery_tag=5, multiple=True))
    close = await client.expect_channel_close()
    assert (close.reply_code, close.class_id, close.method_id) == (406, 60, 120)
    await client.open_channel(1)
    client.send_method(1, commands.Basic.Reject(delivery_tag=7))
    close = await client.expect_channel_close()
    assert (close.reply_code, close.class_id, close.method_id) == (406, 60, 90)
    assert "unknown delivery tag 7" in close.reply_text
    client.close()


async def test_ack_multiple(broker: BrokerHandle) -> None:
    client = await raw_client(broker)
    await declare(client, "am")
    publish(client, 1, "am", bodies("m", 6))
    tags = []
    for _ in range(6):
        got = await raw_get(client, "am")
        assert got is not None
        tags.append(got[0].delivery_tag)
    assert tags == [1, 2, 3, 4, 5, 6]
    queue = broker.vhost().queues["am"]
    client.send_method(1, commands.Basic.Ack(delivery_tag=3, multiple=True))
    await sync(client, "am")
    assert (queue.unacked, queue.acked) == (3, 3)
    client.send_method(1, commands.Basic.Ack(delivery_tag=5))
    await sync(client, "am")
    assert (queue.unacked, queue.acked) == (2, 4)
    # multiple=true with tag 0 acknowledges everything outstanding
    client.send_method(1, commands.Basic.Ack(delivery_tag=0, multiple=True))
    await sync(client, "am")
    assert (queue.unacked, queue.acked, queue.message_count) == (0, 6, 0)
    client.close()


# --------------------------------------------------------------------------- requeue
async def test_nack_requeue_restores_original_position(broker: BrokerHandle) -> None:
    connection = await aiormq.connect(broker.url)
    channel = await connection.channel()
    await channel.queue_declare("pos")
    for body in bodies("m", 5, start=1):
        await channel.basic_publish(body, routing_key="pos")
    tags = {}
    for expected in bodies("m", 5, start=1):
        result = await channel.basic_get("pos")
        assert (result.body, result.redelivered) == (expected, False)
        tags[result.body] = result.delivery.delivery_tag
    await channel.basic_nack(tags[b"m3"], requeue=True)
    await channel.basic_nack(tags[b"m2"], requeue=True)
    again = []
    for _ in range(2):
        result = await channel.basic_get("pos")
        again.append((result.body, result.redelivered, result.delivery.message_count))
    assert again == [(b"m2", True, 1), (b"m3", True, 0)]
    empty = await channel.basic_get("pos")
    assert isinstance(empty.delivery, aiormq.spec.Basic.GetEmpty)
    await connection.close()


async def test_reject_requeue_restores_original_position(broker: BrokerHandle) -> None:
    def run() -> list[tuple[bytes, bool]]:
        conn = pika.BlockingConnection(pika.URLParameters(broker.url))
        try:
            ch = conn.channel()
            ch.queue_declare("pos2")
            ch.confirm_delivery()
            for i in range(1, 6):
                ch.basic_publish("", "pos2", f"m{i}".encode())
            tags = {}
            for _ in range(5):
                method, _props, body = ch.basic_get("pos2")
                tags[body] = method.delivery_tag
            ch.basic_reject(tags[b"m4"], requeue=True)
            ch.basic_reject(tags[b"m2"], requeue=True)
            out = []
            for _ in range(3):
                method, _props, body = ch.basic_get("pos2", auto_ack=True)
                out.append((body, method.redelivered) if method else (b"", False))
            return out
        finally:
            conn.close()

    got = await asyncio.wait_for(asyncio.to_thread(run), 10)
    assert got == [(b"m2", True), (b"m4", True), (b"", False)]


async def test_nack_multiple_with_requeue(broker: BrokerHandle) -> None:
    client = await raw_client(broker)
    await declare(client, "nm")
    publish(client, 1, "nm", bodies("m", 5, start=1))
    for _ in range(4):
        assert await raw_get(client, "nm") is not None
    client.send_method(1, commands.Basic.Nack(delivery_tag=3, multiple=True, requeue=True))
    out = []
    for _ in range(4):
        got = await raw_get(client, "nm", no_ack=True)
        assert got is not None
        out.append((got[1], got[0].redelivered))
    assert out == [(b"m1", True), (b"m2", True), (b"m3", True), (b"m5", False)]
    assert await raw_get(client, "nm") is None
    assert broker.vhost().queues["nm"].unacked == 1  # m4 is still held
    client.close()


@pytest.mark.parametrize("method", ["reject", "nack"])
async def test_reject_or_nack_without_requeue_drops(broker: BrokerHandle, method: str) -> None:
    client = await raw_client(broker)
    await declare(client, "drop")
    publish(client, 1, "drop", [b"d1", b"d2"])
    first = await raw_get(client, "drop")
    assert first is not None
    tag = first[0].delivery_tag
    if method == "reject":
        client.send_method(1, commands.Basic.Reject(delivery_tag=tag, requeue=False))
    else:
        client.send_method(1, commands.Basic.Nack(delivery_tag=tag, requeue=False))
    second = await raw_get(client, "drop", no_ack=True)
    assert second is not None and (second[1], second[0].redelivered) == (b"d2", False)
    assert await raw_get(client, "drop") is None
    queue = broker.vhost().queues["drop"]
    assert (queue.message_count, queue.unacked) == (0, 0)
    client.close()


# --------------------------------------------------------------------------- close requeues
async def _second_consumer(broker: BrokerHandle, queue: str, expected: int
                           ) -> tuple[aio_pika.abc.AbstractConnection, asyncio.Event,
                                      list[tuple[bytes, bool]]]:
    connection = await aio_pika.connect(broker.url)
    channel = await connection.channel()
    got: list[tuple[bytes, bool]] = []
    done = asyncio.Event()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        got.append((message.body, message.redelivered))
        await message.ack()
        if len(got) == expected:
            done.set()

    await (await channel.get_queue(queue)).consume(on_message)
    return connection, done, got


async def test_channel_close_requeues_unacked_in_order(broker: BrokerHandle) -> None:
    client = await raw_client(broker, (1, 2))
    await declare(client, "chclose")
    await consume(client, "chclose", "a")
    publish(client, 2, "chclose", bodies("m", 5, start=1))
    got, _ = await sync(client, "chclose")
    assert [d.body for d in got] == bodies("m", 5, start=1)
    client.send_method(1, commands.Basic.Ack(delivery_tag=2))  # m2 is done
    client.send_method(1, commands.Basic.Ack(delivery_tag=4))  # m4 is done

    connection, done, second = await _second_consumer(broker, "chclose", 3)
    async with connection:
        assert second == []  # everything is held by channel 1
        client.send_method(1, commands.Channel.Close(reply_code=200, reply_text="bye",
                                                         class_id=0, method_id=0))
        await client.expect(commands.Channel.CloseOk)
        await asyncio.wait_for(done.wait(), 5)
        assert second == [(b"m1", True), (b"m3", True), (b"m5", True)]
        # channel 2 of the same connection keeps working
        _, ready = await sync(client, "chclose", channel=2)
        assert ready == 0
    client.close()


@pytest.mark.parametrize("how", ["connection.close", "socket"])
async def test_connection_close_requeues_unacked_in_order(broker: BrokerHandle,
                                                          how: str) -> None:
    first = await aiormq.connect(broker.url)
    channel = await first.channel()
    await channel.queue_declare("connclose")
    received: list[bytes] = []

    async def hold(message: aiormq.abc.DeliveredMessage) -> None:
        received.append(message.body)  # never acked

    await channel.basic_consume("connclose", hold)
    for body in bodies("m", 4):
        await channel.basic_publish(body, routing_key="connclose")
    for _ in range(100):
        if len(received) == 4:
            break
        await asyncio.sleep(0.02)
    assert received == bodies("m", 4)
    assert broker.vhost().queues["connclose"].unacked == 4

    connection, done, second = await _second_consumer(broker, "connclose", 4)
    async with connection:
        if how == "socket":
            client = await raw_client(broker)  # a raw peer holding messages, then vanishing
            await consume(client, "connclose", "r")
            await first.close()
            # round-robin may hand some to the raw peer; its socket then just goes away
            await asyncio.sleep(0.1)
            client.writer.transport.abort()  # type: ignore[attr-defined]
        else:
            await first.close()
        await asyncio.wait_for(done.wait(), 5)
        assert sorted(second) == [(body, True) for body in bodies("m", 4)]
        if how == "connection.close":
            assert second == [(body, True) for body in bodies("m", 4)]
    queue = broker.vhost().queues["connclose"]
    for _ in range(100):
        if queue.unacked == 0:
            break
        await asyncio.sleep(0.02)
    assert (queue.message_count, queue.unacked) == (0, 0)


# --------------------------------------------------------------------------- recover
@pytest.mark.filterwarnings("ignore:This command is deprecated:DeprecationWarning")
@pytest.mark.parametrize("sync_recover", [True, False], ids=["recover", "recover-async"])
async def test_recover_requeues_unacked(broker: BrokerHandle, sync_recover: bool) -> None:
    client = await raw_client(broker, (1, 2))
    await declare(client, "rec")
    await consume(client, "rec", "c")
    publish(client, 2, "rec", bodies("m", 3))
    got, _ = await sync(client, "rec")
    assert [(d.tag, d.body, d.method.redelivered) for d in got] == [
        (1, b"m0", False), (2, b"m1", False), (3, b"m2", False)]
    client.send_method(1, commands.Basic.Ack(delivery_tag=2))
    if sync_recover:
        client.send_method(1, commands.Basic.Recover(requeue=True))
        again, _ = await client.collect_until(commands.Basic.RecoverOk)
    else:
        client.send_method(1, commands.Basic.RecoverAsync(requeue=True))
        again = []
    more, ready = await sync(client, "rec")
    again += more
    assert [(d.body, d.method.redelivered) for d in again] == [(b"m0", True), (b"m2", True)]
    assert all(d.tag > 3 for d in again)
    assert ready == 0
    client.send_method(1, commands.Basic.Ack(delivery_tag=0, multiple=True))
    await sync(client, "rec")
    queue = broker.vhost().queues["rec"]
    assert (queue.unacked, queue.acked) == (0, 3)
    client.close()


@pytest.mark.filterwarnings("ignore:This command is deprecated:DeprecationWarning")
@pytest.mark.parametrize(("method", "method_id"), [
    (commands.Basic.Recover, 110), (commands.Basic.RecoverAsync, 100)])
async def test_recover_without_requeue_is_not_implemented(broker: BrokerHandle, method: type,
                                                          method_id: int) -> None:
    # RabbitMQ (rabbit_channel): protocol_error(not_implemented, "requeue=false") for both
    client = await raw_client(broker, (1, 2))
    await declare(client, "rec-false")
    await consume(client, "rec-false", "c")
    publish(client, 2, "rec-false", [b"held"])
    got, _ = await sync(client, "rec-false")
    assert [d.body for d in got] == [b"held"]
    client.send_method(1, method(requeue=False))
    close = await client.expect_connection_close()
    assert close.reply_code == 540
    assert close.reply_text == "NOT_IMPLEMENTED - requeue=false"
    assert (close.class_id, close.method_id) == (60, method_id)
    queue = broker.vhost().queues["rec-false"]
    assert (queue.message_count, queue.unacked) == (1, 0)  # the connection's close requeued it


# --------------------------------------------------------------------------- qos / flow
async def test_qos_prefetch_size_is_not_implemented(broker: BrokerHandle) -> None:
    # RabbitMQ (rabbit_channel): protocol_error(not_implemented, "prefetch_size!=0 (~w)")
    client = await raw_client(broker)
    client.send_method(1, commands.Basic.Qos(prefetch_size=1, prefetch_count=10))
    close = await client.expect_connection_close()
    assert close.reply_code == 540
    assert close.reply_text == "NOT_IMPLEMENTED - prefetch_size!=0 (1)"
    assert (close.class_id, close.method_id) == (60, 10)


async def test_channel_flow_pauses_and_resumes_deliveries(broker: BrokerHandle) -> None:
    client = await raw_client(broker, (1, 2))
    await declare(client, "flow")
    await consume(client, "flow", "c")
    client.send_method(1, commands.Channel.Flow(active=False))
    ok = await client.expect(commands.Channel.FlowOk)
    assert ok.active is False
    publish(client, 2, "flow", bodies("f", 3))
    got, ready = await sync(client, "flow")
    assert (got, ready) == ([], 3)
    # basic.get is not affected by channel.flow
    fetched = await raw_get(client, "flow", channel=2, no_ack=True)
    assert fetched is not None and fetched[1] == b"f0"

    client.send_method(1, commands.Channel.Flow(active=True))
    resumed, ok = await client.collect_until(commands.Channel.FlowOk)
    assert ok.active is True
    more, ready = await sync(client, "flow")
    assert [d.body for d in resumed + more] == [b"f1", b"f2"]
    assert ready == 0
    client.close()
