"""Message deduplication over the wire (docs/deduplication.md): queues and exchanges,
header and message_id keys, FIFO eviction, TTLs (the entity's and a message's own),
publisher confirms and mandatory for duplicates, and the 406s of bad arguments.

Real broker on 127.0.0.1:0, real clients (aiormq for confirms and returns, aio-pika,
pika in a thread); the clock is the broker's own, so the TTL tests sleep briefly.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import aiormq
import pika
import pytest
from pamqp import commands

from tests.conftest import BrokerHandle
from tests.helpers import TIMEOUT

pytestmark = pytest.mark.asyncio

DEDUP = {"x-message-deduplication": True}


def props(key: Any = None, *, message_id: str | None = None, ttl: Any = None,
          header: str = "x-deduplication-header") -> commands.Basic.Properties:
    headers: dict[str, Any] = {}
    if key is not None:
        headers[header] = key
    if ttl is not None:
        headers["x-cache-ttl"] = ttl
    return commands.Basic.Properties(headers=headers or None, message_id=message_id)


async def count(channel: aiormq.abc.AbstractChannel, queue: str) -> int:
    ok = await channel.queue_declare(queue, passive=True)
    return int(ok.message_count)


async def drain(channel: aiormq.abc.AbstractChannel, queue: str) -> list[bytes]:
    """Every ready message's body, in order (basic.get until get-empty)."""
    bodies = []
    for _ in range(10_000):
        got = await channel.basic_get(queue, no_ack=True)
        if isinstance(got.delivery, commands.Basic.GetEmpty):
            return bodies
        bodies.append(got.body)
    raise AssertionError("queue never emptied")


async def publish(ch: Any, body: bytes, properties: commands.Basic.Properties,
                  exchange: str = "", routing_key: str = "", mandatory: bool = False) -> Any:
    """A confirmed publish; returns the confirm frame (Basic.Ack / Basic.Nack)."""
    return await asyncio.wait_for(
        ch.basic_publish(body, exchange=exchange, routing_key=routing_key,
                         properties=properties, mandatory=mandatory), TIMEOUT)


async def confirm_channel(broker: BrokerHandle) -> tuple[aiormq.Connection, Any]:
    conn = await aiormq.connect(broker.url)
    channel = await conn.channel(publisher_confirms=True)
    return conn, channel


async def test_queue_drops_a_repeated_header_key_and_still_confirms(broker: BrokerHandle) -> None:
    conn, ch = await confirm_channel(broker)
    try:
        await ch.queue_declare("dq", arguments=DEDUP)
        for body, key in ((b"1", "a"), (b"2", "a"), (b"3", "b"), (b"4", "a"), (b"5", None)):
            confirm = await publish(ch, body, props(key), routing_key="dq")
            assert isinstance(confirm, commands.Basic.Ack), (body, confirm)
        assert await drain(ch, "dq") == [b"1", b"3", b"5"]  # 5 has no key: never a duplicate
        assert broker.vhost().queues["dq"].dedup.duplicates == 2
    finally:
        await conn.close()


async def test_exchange_drops_before_routing_and_counts(broker: BrokerHandle) -> None:
    conn, ch = await confirm_channel(broker)
    try:
        await ch.exchange_declare("dx", exchange_type="fanout", arguments=DEDUP)
        for name in ("q1", "q2"):
            await ch.queue_declare(name)
            await ch.queue_bind(name, "dx")
        for body, key in ((b"1", "k"), (b"2", "k"), (b"3", "other")):
            assert isinstance(await publish(ch, body, props(key), exchange="dx"),
                              commands.Basic.Ack)
        assert await drain(ch, "q1") == [b"1", b"3"]
        assert await drain(ch, "q2") == [b"1", b"3"]
        cache = broker.vhost().dedup.exchange_cache(broker.vhost().exchanges["dx"])
        assert cache is not None and cache.duplicates == 1
    finally:
        await conn.close()


async def test_alternate_exchange_never_sees_a_duplicate(broker: BrokerHandle) -> None:
    conn, ch = await confirm_channel(broker)
    try:
        await ch.exchange_declare("ae", exchange_type="fanout")
        await ch.queue_declare("unrouted")
        await ch.queue_bind("unrouted", "ae")
        await ch.exchange_declare("dx2", exchange_type="direct",
                                  arguments={**DEDUP, "alternate-exchange": "ae"})
        await publish(ch, b"1", props("k"), exchange="dx2", routing_key="nowhere")
        await publish(ch, b"2", props("k"), exchange="dx2", routing_key="nowhere")
        assert await drain(ch, "unrouted") == [b"1"]
    finally:
        await conn.close()


async def test_queue_dedup_drops_at_that_queue_only(broker: BrokerHandle) -> None:
    conn, ch = await confirm_channel(broker)
    try:
        await ch.exchange_declare("plain", exchange_type="fanout")
        await ch.queue_declare("deduped", arguments=DEDUP)
        await ch.queue_declare("everything")
        for name in ("deduped", "everything"):
            await ch.queue_bind(name, "plain")
        for body in (b"1", b"2", b"3"):
            assert isinstance(await publish(ch, body, props("same"), exchange="plain"),
                              commands.Basic.Ack)
        assert await drain(ch, "deduped") == [b"1"]
        assert await drain(ch, "everything") == [b"1", b"2", b"3"]
        assert broker.vhost().queues["deduped"].dedup.duplicates == 2
    finally:
        await conn.close()


async def test_mandatory_duplicate_is_acked_not_returned(broker: BrokerHandle) -> None:
    """The first publish was accepted, so a duplicate is not 'unroutable': no
    basic.return, one basic.ack (queue-level and exchange-level alike)."""
    conn, ch = await confirm_channel(broker)
    try:
        await ch.queue_declare("mq", arguments=DEDUP)
        await ch.exchange_declare("mx", exchange_type="fanout", arguments=DEDUP)
        await ch.queue_declare("mxq")
        await ch.queue_bind("mxq", "mx")
        for _ in range(2):
            assert isinstance(await publish(ch, b"m", props("k"), routing_key="mq",
                                            mandatory=True), commands.Basic.Ack)
            assert isinstance(await publish(ch, b"x", props("k"), exchange="mx",
                                            mandatory=True), commands.Basic.Ack)
        # (aiormq raises PublishError for a basic.return: none came for the duplicates)
        with pytest.raises(aiormq.exceptions.PublishError) as info:  # unroutable: returned
            await publish(ch, b"u", props("u"), routing_key="no-such-queue", mandatory=True)
        assert info.value.message.body == b"u"
        assert await count(ch, "mq") == 1 and await count(ch, "mxq") == 1
    finally:
        await conn.close()


async def test_message_id_key_and_custom_header(broker: BrokerHandle) -> None:
    conn, ch = await confirm_channel(broker)
    try:
        await ch.queue_declare("byid", arguments={**DEDUP, "x-deduplication-key": "message_id",
                                                  "x-deduplication-header": "order-id"})
        await ch.queue_declare("noid", arguments=DEDUP)
        sends = [
            (b"1", props(message_id="m1")),
            (b"2", props(message_id="m1")),  # same message_id: dropped
            (b"3", props("o1", message_id="m1", header="order-id")),  # header wins: new key
            (b"4", props("o1", message_id="m9", header="order-id")),  # same header: dropped
            (b"5", props("m1", header="order-id")),  # header "m1" == message_id "m1"
            (b"6", props("zz", message_id="m2")),  # x-deduplication-header is not its header
        ]
        for body, p in sends:
            await publish(ch, body, p, routing_key="byid")
            await publish(ch, body, p, routing_key="noid")
        assert await drain(ch, "byid") == [b"1", b"3", b"6"]
        # without x-deduplication-key the message_id means nothing, and order-id neither
        assert await drain(ch, "noid") == [b"1", b"2", b"3", b"4", b"5", b"6"]
    finally:
        await conn.close()


async def test_key_types_differ(broker: BrokerHandle) -> None:
    conn, ch = await confirm_channel(broker)
    try:
        await ch.queue_declare("typed", arguments=DEDUP)
        for body, key in ((b"s", "1"), (b"i", 1), (b"i2", 1), (b"s2", "1"), (b"b", True)):
            await publish(ch, body, props(key), routing_key="typed")
        assert await drain(ch, "typed") == [b"s", b"i", b"b"]
    finally:
        await conn.close()


async def test_cache_size_evicts_the_oldest_first_seen_key(broker: BrokerHandle) -> None:
    """FIFO, not LRU: a duplicate does not make its key younger."""
    conn, ch = await confirm_channel(broker)
    try:
        await ch.queue_declare("small", arguments={**DEDUP, "x-cache-size": 2})
        for body, key in ((b"a", "a"), (b"b", "b"), (b"a-dup", "a"), (b"c", "c"),
                          (b"a-again", "a"), (b"c-dup", "c")):
            await publish(ch, body, props(key), routing_key="small")
        assert await drain(ch, "small") == [b"a", b"b", b"c", b"a-again"]
    finally:
        await conn.close()


async def test_cache_ttl_and_a_message_own_ttl(broker: BrokerHandle) -> None:
    conn, ch = await confirm_channel(broker)
    try:
        await ch.queue_declare("ttl", arguments={**DEDUP, "x-cache-ttl": 300})
        await ch.queue_declare("forever", arguments=DEDUP)
        await publish(ch, b"1", props("k"), routing_key="ttl")
        await publish(ch, b"2", props("k"), routing_key="ttl")  # within 300 ms: dropped
        await publish(ch, b"long", props("long", ttl=60_000), routing_key="ttl")
        await publish(ch, b"f1", props("k", ttl=200), routing_key="forever")
        await publish(ch, b"f2", props("k"), routing_key="forever")  # within 200 ms
        await asyncio.sleep(0.45)
        await publish(ch, b"3", props("k"), routing_key="ttl")  # expired: accepted
        await publish(ch, b"long2", props("long"), routing_key="ttl")  # its own 60 s TTL
        await publish(ch, b"f3", props("k"), routing_key="forever")  # its own 200 ms TTL
        assert await drain(ch, "ttl") == [b"1", b"long", b"3"]
        assert await drain(ch, "forever") == [b"f1", b"f3"]
    finally:
        await conn.close()


@pytest.mark.parametrize(("arguments", "text"), [
    ({"x-message-deduplication": "yes"},
     "invalid arg 'x-message-deduplication' for queue 'bad' in vhost '/': expected a boolean"),
    ({**DEDUP, "x-cache-size": 0},
     "invalid arg 'x-cache-size' for queue 'bad' in vhost '/': value must be between 1 and"),
    ({**DEDUP, "x-cache-size": "10"},
     "invalid arg 'x-cache-size' for queue 'bad' in vhost '/': expected an integer"),
    ({**DEDUP, "x-cache-ttl": -1},
     "invalid arg 'x-cache-ttl' for queue 'bad' in vhost '/': value must be between 0 and"),
    ({**DEDUP, "x-deduplication-key": "body"},
     "invalid arg 'x-deduplication-key' for queue 'bad' in vhost '/': 'body' is not a key"),
    ({**DEDUP, "x-deduplication-header": ""},
     "invalid arg 'x-deduplication-header' for queue 'bad' in vhost '/': expected a non-empty"),
])
async def test_bad_arguments_are_406(broker: BrokerHandle, arguments: dict[str, Any],
                                     text: str) -> None:
    conn = await aiormq.connect(broker.url)
    try:
        ch = await conn.channel()
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed) as info:
            await ch.queue_declare("bad", arguments=arguments)
        assert text in str(info.value)
        ch = await conn.channel()
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed) as info:
            await ch.exchange_declare("bad", exchange_type="topic", arguments=arguments)
        assert text.replace("queue 'bad'", "exchange 'bad'") in str(info.value)
        assert "bad" not in broker.vhost().queues and "bad" not in broker.vhost().exchanges
    finally:
        await conn.close()


async def test_redeclare_with_other_dedup_arguments_is_406(broker: BrokerHandle) -> None:
    conn = await aiormq.connect(broker.url)
    try:
        ch = await conn.channel()
        await ch.queue_declare("eq", arguments={**DEDUP, "x-cache-size": 5})
        await ch.queue_declare("eq", arguments={**DEDUP, "x-cache-size": 5})
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed) as info:
            await ch.queue_declare("eq", arguments={**DEDUP, "x-cache-size": 6})
        assert "inequivalent arg 'x-cache-size' for queue 'eq'" in str(info.value)
        ch = await conn.channel()
        await ch.exchange_declare("ex", exchange_type="direct", arguments=DEDUP)
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed) as info:
            await ch.exchange_declare("ex", exchange_type="direct")
        assert "inequivalent arg 'x-message-deduplication' for exchange 'ex'" in str(info.value)
    finally:
        await conn.close()


async def test_a_refused_message_keeps_no_key(broker: BrokerHandle) -> None:
    """x-overflow reject-publish nacks the message: its retry must not be a duplicate."""
    conn, ch = await confirm_channel(broker)
    try:
        await ch.queue_declare("full", arguments={**DEDUP, "x-max-length": 1,
                                                  "x-overflow": "reject-publish"})
        assert isinstance(await publish(ch, b"a", props("a"), routing_key="full"),
                          commands.Basic.Ack)
        with pytest.raises(aiormq.exceptions.DeliveryError) as info:  # basic.nack
            await publish(ch, b"b", props("b"), routing_key="full")
        assert isinstance(info.value.frame, commands.Basic.Nack)
        assert await drain(ch, "full") == [b"a"]
        assert isinstance(await publish(ch, b"b", props("b"), routing_key="full"),
                          commands.Basic.Ack)
        assert await drain(ch, "full") == [b"b"]
    finally:
        await conn.close()


async def test_pika_blocking_duplicates(broker: BrokerHandle) -> None:
    def work() -> int:
        with pika.BlockingConnection(pika.URLParameters(broker.url)) as conn:
            ch = conn.channel()
            ch.confirm_delivery()
            ch.queue_declare("pk", arguments=DEDUP)
            p = pika.BasicProperties(headers={"x-deduplication-header": "k"})
            for _ in range(3):  # raises UnroutableError / NackError otherwise
                ch.basic_publish("", "pk", b"x", p, mandatory=True)
            return int(ch.queue_declare("pk", passive=True).method.message_count)
    assert await asyncio.to_thread(work) == 1


async def test_aio_pika_exchange_dedup(broker: BrokerHandle) -> None:
    conn = await aio_pika.connect(broker.url)
    try:
        ch = await conn.channel(publisher_confirms=True)
        x = await ch.declare_exchange("apx", aio_pika.ExchangeType.TOPIC, arguments=DEDUP)
        q = await ch.declare_queue("apq")
        await q.bind(x, "#")
        for i in range(4):
            await x.publish(aio_pika.Message(b"%d" % i,
                                             headers={"x-deduplication-header": i % 2}),
                            routing_key="a.b")
        got = []
        for _ in range(2):
            message = await q.get(timeout=TIMEOUT)
            got.append(message.body)
            await message.ack()
        assert got == [b"0", b"1"]
        assert await q.get(fail=False) is None
    finally:
        await conn.close()


async def test_duplicates_in_a_transaction_are_not_returned(broker: BrokerHandle) -> None:
    """tx.commit routes the held publishes: a mandatory duplicate gets no basic.return
    there either, and the commit succeeds."""
    conn = await aiormq.connect(broker.url)
    try:
        ch = await conn.channel(publisher_confirms=False)
        await ch.queue_declare("txq", arguments=DEDUP)
        returned: list[Any] = []
        ch.on_return_callbacks.add(returned.append)
        await ch.tx_select()
        for body in (b"1", b"2", b"3"):
            await ch.basic_publish(body, routing_key="txq", properties=props("same"),
                                   mandatory=True)
        await asyncio.wait_for(ch.tx_commit(), TIMEOUT)
        await asyncio.sleep(0.1)
        assert returned == []
        assert await drain(ch, "txq") == [b"1"]
    finally:
        await conn.close()
