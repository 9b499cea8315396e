"""kombu (Celery's transport, over py-amqp) works unmodified: declare, publish with
headers and JSON, consume with prefetch and ack, get."""

from __future__ import annotations

import asyncio

from kombu import Connection, Consumer, Exchange, Producer, Queue

from tests.conftest import BrokerHandle


async def test_kombu_publish_consume(broker: BrokerHandle) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{broker.port}//"

    def run() -> tuple[list[int], list[int]]:
        exchange = Exchange("tasks", type="direct", durable=True)
        queue = Queue("celery-like", exchange, routing_key="task", durable=True)
        got: list[int] = []
        ids: list[int] = []
        with Connection(url) as conn:
            with conn.channel() as channel:
                producer = Producer(channel)
                for i in range(20):
                    producer.publish({"n": i}, exchange=exchange, routing_key="task",
                                     declare=[queue], serializer="json", headers={"id": i})

            def on_message(body, message) -> None:  # type: ignore[no-untyped-def]
                got.append(body["n"])
                ids.append(message.headers["id"])
                message.ack()

            with Consumer(conn, [queue], callbacks=[on_message], prefetch_count=5):
                for _ in range(100):
                    if len(got) == 20:
                        break
                    conn.drain_events(timeout=5)
            with conn.channel() as channel:
                assert queue(channel).get() is None
        return got, ids

    got, ids = await asyncio.wait_for(asyncio.to_thread(run), 30)
    assert got == list(range(20))
    assert ids == list(range(20))
    assert broker.vhost().queues["celery-like"].message_count == 0
