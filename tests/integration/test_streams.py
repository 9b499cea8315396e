"""Stream queues over the wire (aio-pika, aiormq, pika): declare rules with RabbitMQ's
words, offsets first/last/next/numeric/timestamp/interval, the x-stream-offset header,
acks as credit only, 540 for get/nack/reject/no_ack/purge, many consumers, filtering."""

from __future__ import annotations

import asyncio
import datetime

import aio_pika
import aiormq
import pika
import pytest
from aiormq.abc import DeliveredMessage

STREAM = {"x-queue-type": "stream"}


async def _channel(url: str) -> tuple[aiormq.Connection, aiormq.Channel]:
    conn = await aiormq.connect(url)
    return conn, await conn.channel()


async def _publish(url: str, queue: str, bodies: list[bytes],
                   headers: list[dict[str, object] | None] | None = None) -> None:
    conn, ch = await _channel(url)
    await ch.confirm_delivery()
    for i, body in enumerate(bodies):
        props = aiormq.spec.Basic.Properties(headers=headers[i] if headers else None)
        await ch.basic_publish(body, routing_key=queue, properties=props)
    await conn.close()


async def _consume(url: str, queue: str, args: dict[str, object], count: int,
                   prefetch: int = 10, timeout: float = 5.0) -> list[tuple[bytes, int]]:
    conn, ch = await _channel(url)
    await ch.basic_qos(prefetch_count=prefetch)
    got: list[tuple[bytes, int]] = []
    done = asyncio.get_running_loop().create_future()

    async def on_message(msg: DeliveredMessage) -> None:
        headers = msg.header.properties.headers or {}
        got.append((msg.body, int(headers["x-stream-offset"])))
        await ch.basic_ack(msg.delivery.delivery_tag)
        if len(got) >= count and not done.done():
            done.set_result(None)

    await ch.basic_consume(queue, on_message, arguments=args)
    if count:
        await asyncio.wait_for(done, timeout)
    else:
        await asyncio.sleep(0.3)
    await conn.close()
    return got


async def _declare(url: str, name: str, **args: object) -> None:
    conn, ch = await _channel(url)
    await ch.queue_declare(name, durable=True, arguments={**STREAM, **args})
    await conn.close()


async def _error(url: str, coro_fn) -> Exception:  # type: ignore[no-untyped-def]
    """The error the broker closed the channel or connection with while running
    ``coro_fn`` (a later call on the dead channel would only say "closed")."""
    conn, ch = await _channel(url)
    error: Exception | None = None
    try:
        await coro_fn(ch)
        await asyncio.sleep(0.3)
        await ch.basic_qos(prefetch_count=1)  # a round trip: any close has arrived
    except aiormq.exceptions.ChannelInvalidStateError:
        pass
    except Exception as exc:
        error = exc
    if error is None and conn.is_closed:
        try:
            await asyncio.wait_for(asyncio.shield(conn.closing), 2)
        except Exception as exc:
            error = exc
    if not conn.is_closed:
        await conn.close()
    assert error is not None, "the broker accepted it"
    return error


@pytest.mark.parametrize(("kwargs", "text"), [
    ({"durable": False}, "invalid property 'non-durable' for queue 's' in vhost '/'"),
    ({"durable": True, "exclusive": True},
     "invalid property 'exclusive-owner' for queue 's' in vhost '/'"),
    ({"durable": True, "auto_delete": True},
     "invalid property 'auto-delete' for queue 's' in vhost '/'"),
])
async def test_declare_properties_refused(broker, kwargs, text) -> None:  # type: ignore[no-untyped-def]
    exc = await _error(broker.url, lambda ch: ch.queue_declare("s", arguments=STREAM, **kwargs))
    assert isinstance(exc, aiormq.exceptions.ChannelPreconditionFailed)
    assert text in str(exc)


@pytest.mark.parametrize(("arg", "value", "text"), [
    ("x-max-length", 10, "invalid arg 'x-max-length' for queue 's' in vhost '/' of queue"
                         " type rabbit_stream_queue"),
    ("x-message-ttl", 5, "invalid arg 'x-message-ttl'"),
    ("x-dead-letter-exchange", "dlx", "invalid arg 'x-dead-letter-exchange'"),
    ("x-overflow", "reject-publish", "invalid arg 'x-overflow'"),
    ("x-max-priority", 3, "invalid arg 'x-max-priority'"),
    ("x-single-active-consumer", True, "invalid arg 'x-single-active-consumer'"),
    ("x-delivery-limit", 3, "invalid arg 'x-delivery-limit'"),
    ("x-max-age", "0D", "invalid arg 'x-max-age' for queue 's' in vhost '/': invalid_max_age"),
    ("x-max-age", "1X", "invalid_max_age"),
    ("x-max-age", 5, "invalid_max_age"),
    ("x-stream-max-segment-size-bytes", 3_000_000_001,
     "Exceeded max value for x-stream-max-segment-size-bytes"),
    ("x-max-length-bytes", -1, "invalid arg 'x-max-length-bytes'"),
])
async def test_declare_arguments_refused(broker, arg, value, text) -> None:  # type: ignore[no-untyped-def]
    exc = await _error(broker.url, lambda ch: ch.queue_declare(
        "s", durable=True, arguments={**STREAM, arg: value}))
    assert isinstance(exc, aiormq.exceptions.ChannelPreconditionFailed)
    assert text in str(exc)


async def test_declare_accepts_retention_and_cluster_arguments(broker) -> None:  # type: ignore[no-untyped-def]
    conn, ch = await _channel(broker.url)
    ok = await ch.queue_declare("s", durable=True, arguments={
        **STREAM, "x-max-age": "7D", "x-max-length-bytes": 10_000_000,
        "x-stream-max-segment-size-bytes": 1000, "x-initial-cluster-size": 3,
        "x-queue-leader-locator": "balanced"})
    assert ok.message_count == 0  # RabbitMQ's declare-ok counts nothing for a stream
    await conn.close()


async def test_offsets_first_last_next_numeric_interval_timestamp(broker) -> None:  # type: ignore[no-untyped-def]
    url = broker.url
    await _declare(url, "s")
    await _publish(url, "s", [b"m%d" % i for i in range(5)])
    first = await _consume(url, "s", {"x-stream-offset": "first"}, 5)
    assert first == [(b"m%d" % i, i) for i in range(5)]
    # confirms one at a time: each message is its own chunk, so `last` is the last one
    assert await _consume(url, "s", {"x-stream-offset": "last"}, 1) == [(b"m4", 4)]
    assert await _consume(url, "s", {"x-stream-offset": 2}, 3) == first[2:]
    assert await _consume(url, "s", {"x-stream-offset": -7}, 5) == first  # clamped
    assert await _consume(url, "s", {"x-stream-offset": 99}, 0) == []
    assert await _consume(url, "s", {}, 0) == []  # next
    assert await _consume(url, "s", {"x-stream-offset": "1h"}, 5) == first
    hour_ago = datetime.datetime.now(tz=datetime.UTC) - datetime.timedelta(hours=1)
    assert await _consume(url, "s", {"x-stream-offset": hour_ago}, 5) == first
    future = datetime.datetime.now(tz=datetime.UTC) + datetime.timedelta(hours=1)
    assert await _consume(url, "s", {"x-stream-offset": future}, 0) == []


async def test_next_receives_new_messages(broker) -> None:  # type: ignore[no-untyped-def]
    url = broker.url
    await _declare(url, "s")
    await _publish(url, "s", [b"old"])
    task = asyncio.create_task(_consume(url, "s", {"x-stream-offset": "next"}, 2))
    await asyncio.sleep(0.3)
    await _publish(url, "s", [b"new1", b"new2"])
    assert await task == [(b"new1", 1), (b"new2", 2)]


@pytest.mark.parametrize("value", ["bogus", "0s", 1.5, True])
async def test_bad_offset_is_406(broker, value) -> None:  # type: ignore[no-untyped-def]
    await _declare(broker.url, "s")

    async def consume(ch: aiormq.Channel) -> None:
        await ch.basic_qos(prefetch_count=5)
        await ch.basic_consume("s", lambda m: None, arguments={"x-stream-offset": value})

    exc = await _error(broker.url, consume)
    assert isinstance(exc, aiormq.exceptions.ChannelPreconditionFailed)
    assert "invalid arg 'x-stream-offset' for queue 's' in vhost '/'" in str(exc)


@pytest.mark.parametrize("global_", [False, True])
async def test_consumer_prefetch_required(broker, global_) -> None:  # type: ignore[no-untyped-def]
    await _declare(broker.url, "s")

    async def consume(ch: aiormq.Channel) -> None:
        if global_:
            await ch.basic_qos(prefetch_count=5, global_=True)
        await ch.basic_consume("s", lambda m: None)

    exc = await _error(broker.url, consume)
    assert isinstance(exc, aiormq.exceptions.ChannelPreconditionFailed)
    assert "consumer prefetch count is not set for 'queue 's' in vhost '/''" in str(exc)


@pytest.mark.parametrize(("what", "text"), [
    ("get", "basic.get not supported by stream queues queue 's' in vhost '/'"),
    ("no_ack", "automatic acknowledgement not supported by stream queues"),
    ("purge", "queue.purge not supported by stream queues queue 's' in vhost '/'"),
    ("nack", "basic.nack and basic.reject not supported by stream queues queue 's'"),
    ("reject", "basic.nack and basic.reject not supported by stream queues"),
])
async def test_not_implemented_is_540(broker, what, text) -> None:  # type: ignore[no-untyped-def]
    await _declare(broker.url, "s")
    await _publish(broker.url, "s", [b"x"])

    async def act(ch: aiormq.Channel) -> None:
        if what == "get":
            await ch.basic_get("s")
        elif what == "purge":
            await ch.queue_purge("s")
        elif what == "no_ack":
            await ch.basic_qos(prefetch_count=5)
            await ch.basic_consume("s", lambda m: None, no_ack=True)
        else:
            await ch.basic_qos(prefetch_count=5)
            tags: asyncio.Queue[int] = asyncio.Queue()

            async def on_message(m: DeliveredMessage) -> None:
                await tags.put(m.delivery.delivery_tag)

            await ch.basic_consume("s", on_message, arguments={"x-stream-offset": "first"})
            tag = await asyncio.wait_for(tags.get(), 5)
            if what == "nack":
                await ch.basic_nack(tag, requeue=False)
            else:
                await ch.basic_reject(tag, requeue=True)

    exc = await _error(broker.url, act)
    assert isinstance(exc, aiormq.exceptions.ConnectionNotImplemented), exc
    assert text in str(exc)


async def test_many_consumers_each_read_everything_at_their_own_pace(broker) -> None:  # type: ignore[no-untyped-def]
    url = broker.url
    await _declare(url, "s")
    await _publish(url, "s", [b"%d" % i for i in range(300)])
    results = await asyncio.gather(
        _consume(url, "s", {"x-stream-offset": "first"}, 300, prefetch=1),
        _consume(url, "s", {"x-stream-offset": "first"}, 300, prefetch=50),
        _consume(url, "s", {"x-stream-offset": 100}, 200, prefetch=7))
    assert [o for _, o in results[0]] == list(range(300))
    assert results[1] == results[0]
    assert results[2] == results[0][100:]


async def test_shared_reads_stay_exact_across_cache_regions(broker) -> None:  # type: ignore[no-untyped-def]
    """20 MiB of bodies is more than the recent-records cache keeps (8 MiB), so readers
    hit every case: a reader extending it, one inside it, one behind its oldest record
    (read from disk, not kept), one past its end (starts it again). Each gets exactly
    its range, in order, with the right bodies."""
    url = broker.url
    await _declare(url, "big")
    bodies = [bytes([i % 251]) * 65_536 for i in range(320)]
    await _publish(url, "big", bodies)
    expected = list(zip(bodies, range(320), strict=True))
    leader = await _consume(url, "big", {"x-stream-offset": "first"}, 320, prefetch=40)
    assert leader == expected
    inside, behind, ahead = await asyncio.gather(
        _consume(url, "big", {"x-stream-offset": 300}, 20, prefetch=3),
        _consume(url, "big", {"x-stream-offset": "first"}, 320, prefetch=25),
        _consume(url, "big", {"x-stream-offset": 150}, 170, prefetch=9))
    assert inside == expected[300:]
    assert behind == expected
    assert ahead == expected[150:]


async def test_acks_only_return_credit(broker) -> None:  # type: ignore[no-untyped-def]
    """With prefetch 2 and no acks, exactly 2 arrive; each ack lets one more through."""
    url = broker.url
    await _declare(url, "s")
    await _publish(url, "s", [b"%d" % i for i in range(5)])
    conn, ch = await _channel(url)
    await ch.basic_qos(prefetch_count=2)
    got: list[DeliveredMessage] = []
    await ch.basic_consume("s", got.append, arguments={"x-stream-offset": "first"})  # type: ignore[arg-type]
    await asyncio.sleep(0.5)
    assert len(got) == 2
    await ch.basic_ack(got[0].delivery.delivery_tag)
    await asyncio.sleep(0.3)
    assert len(got) == 3
    await conn.close()
    # consuming removed nothing
    assert len(await _consume(url, "s", {"x-stream-offset": "first"}, 5)) == 5


async def test_filtering_is_exact_per_message(broker) -> None:  # type: ignore[no-untyped-def]
    url = broker.url
    await _declare(url, "s")
    values = ["a", "b", None, "a", "c"]
    await _publish(url, "s", [b"%d" % i for i in range(5)],
                   [{"x-stream-filter-value": v} if v else None for v in values])
    only_a = await _consume(url, "s", {"x-stream-offset": "first", "x-stream-filter": "a"}, 2)
    assert only_a == [(b"0", 0), (b"3", 3)]
    with_unfiltered = await _consume(url, "s", {
        "x-stream-offset": "first", "x-stream-filter": ["a", "c"],
        "x-stream-match-unfiltered": True}, 4)
    assert [o for _, o in with_unfiltered] == [0, 2, 3, 4]


async def test_aio_pika_consumer_and_header(broker) -> None:  # type: ignore[no-untyped-def]
    conn = await aio_pika.connect(broker.url)
    ch = await conn.channel()
    await ch.set_qos(prefetch_count=10)
    queue = await ch.declare_queue("s", durable=True, arguments=STREAM)
    for i in range(3):
        await ch.default_exchange.publish(aio_pika.Message(b"p%d" % i), routing_key="s")
    seen = []
    async with queue.iterator(arguments={"x-stream-offset": "first"}) as it:
        async for message in it:
            await message.ack()
            seen.append((message.body, message.headers["x-stream-offset"]))
            if len(seen) == 3:
                break
    assert seen == [(b"p0", 0), (b"p1", 1), (b"p2", 2)]
    await conn.close()


async def test_pika_blocking_consumer(broker) -> None:  # type: ignore[no-untyped-def]
    """pika's BlockingConnection in a thread (it must not run on the broker's loop)."""

    def run() -> list[tuple[bytes, int]]:
        result: list[tuple[bytes, int]] = []
        conn = pika.BlockingConnection(pika.URLParameters(broker.url))
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            ch.queue_declare("s", durable=True, arguments=STREAM)
            for i in range(4):
                ch.basic_publish("", "s", b"k%d" % i)
            ch.basic_qos(prefetch_count=4)
            for method, props, body in ch.consume("s", arguments={"x-stream-offset": 1},
                                                  inactivity_timeout=5):
                if method is None:
                    break
                result.append((body, props.headers["x-stream-offset"]))
                ch.basic_ack(method.delivery_tag)
                if len(result) == 3:
                    break
            # pika's BlockingChannel.cancel() rejects (nack, requeue) the messages it
            # buffered; on a stream that is a 540, so cancel only with nothing buffered
            ch.cancel()
        finally:
            conn.close()
        return result

    result = await asyncio.wait_for(asyncio.to_thread(run), 30)
    assert result == [(b"k1", 1), (b"k2", 2), (b"k3", 3)]


async def test_redeclare_compares_stream_arguments(broker) -> None:  # type: ignore[no-untyped-def]
    await _declare(broker.url, "s", **{"x-max-age": "7D"})
    exc = await _error(broker.url, lambda ch: ch.queue_declare(
        "s", durable=True, arguments={**STREAM, "x-max-age": "1D"}))
    assert "inequivalent arg 'x-max-age' for queue 's' in vhost '/': received '1D' but" \
        " current is '7D'" in str(exc)
    exc = await _error(broker.url, lambda ch: ch.queue_declare("s", durable=True))
    assert "inequivalent arg 'x-queue-type'" in str(exc)


async def test_stream_offset_on_a_classic_queue_is_406(broker) -> None:  # type: ignore[no-untyped-def]
    async def consume(ch: aiormq.Channel) -> None:
        await ch.queue_declare("c")
        await ch.basic_consume("c", lambda m: None, arguments={"x-stream-offset": "first"})

    exc = await _error(broker.url, consume)
    assert isinstance(exc, aiormq.exceptions.ChannelPreconditionFailed)
    assert ("invalid arg 'x-stream-offset' for queue 'c' in vhost '/' of queue type"
            " rabbit_classic_queue") in str(exc)
