"""Topic permissions (RabbitMQ's topic authorisation) compared with RabbitMQ 3.10.8: the
records in definitions.py, checked on publish (write, routing key) and on bind/unbind
(read, binding key), with {username}/{vhost} expanded (issue 12, item 5)."""

from __future__ import annotations

from pamqp import commands

from tests.differential.conftest import Diff
from tests.differential.harness import Target, Transcript
from tests.rawamqp import RawClient

P = commands.Basic.Properties


async def _step(seen: Transcript, client: RawClient, label: str, method: object,
                content: bytes | None = None, reply: bool = True) -> None:
    """Send one method (and content); record the reply, or the close and reopen."""
    client.send_method(1, method)  # type: ignore[arg-type]
    if content is not None:
        client.send_content(1, content)
    got = await seen.frames(label, client, count=1, quiet=0.3) if reply else \
        await seen.frames(label, client, quiet=0.3)
    if got and isinstance(got[0][-1], commands.Channel.Close):
        client.send_method(1, commands.Channel.CloseOk())
        await client.open_channel(1)


def publish(exchange: str, key: str) -> commands.Basic.Publish:
    return commands.Basic.Publish(exchange=exchange, routing_key=key)


async def topic_root(t: Target, seen: Transcript) -> None:
    client = await t.raw(user="topics", password="topics")
    q = t.n("tq")
    await _step(seen, client, "declare", commands.Queue.Declare(queue=q))
    await _step(seen, client, "publish topics.a", publish("amq.topic", "topics.a"), b"1",
                reply=False)
    await _step(seen, client, "publish other.a", publish("amq.topic", "other.a"), b"2")
    await _step(seen, client, "publish to amq.direct", publish("amq.direct", "other"), b"3",
                reply=False)
    for key in ("pub.#", "/.x", "priv.#"):
        await _step(seen, client, f"bind {key}",
                    commands.Queue.Bind(queue=q, exchange="amq.topic", routing_key=key))
    await _step(seen, client, "unbind priv.#",
                commands.Queue.Unbind(queue=q, exchange="amq.topic", routing_key="priv.#"))
    await _step(seen, client, "unbind pub.#",
                commands.Queue.Unbind(queue=q, exchange="amq.topic", routing_key="pub.#"))
    x = t.n("tx")
    await _step(seen, client, "declare exchange",
                commands.Exchange.Declare(exchange=x, exchange_type="fanout"))
    for key in ("pub.a", "priv.a"):
        await _step(seen, client, f"exchange.bind {key}", commands.Exchange.Bind(
            destination=x, source="amq.topic", routing_key=key))
    await _step(seen, client, "tx.select", commands.Tx.Select())
    await _step(seen, client, "publish refused inside a transaction",
                publish("amq.topic", "other.b"), b"4")
    await _step(seen, client, "delete", commands.Queue.Delete(queue=q))
    client.close()


async def test_topic_permissions_root_vhost(diff: Diff) -> None:
    await diff(topic_root)


async def topic_tv(t: Target, seen: Transcript) -> None:
    client = await t.raw(user="topics", password="topics", vhost="tv")
    q = t.n("tq")
    await _step(seen, client, "declare", commands.Queue.Declare(queue=q, auto_delete=True))
    await _step(seen, client, "publish tv.a", publish("amq.topic", "tv.a"), b"1", reply=False)
    await _step(seen, client, "publish a", publish("amq.topic", "a"), b"2")
    await _step(seen, client, "publish to empty.topic", publish("empty.topic", "any"), b"3",
                reply=False)
    await _step(seen, client, "publish to empty.topic with the empty key",
                publish("empty.topic", ""), b"3", reply=False)
    await _step(seen, client, "bind to empty.topic",
                commands.Queue.Bind(queue=q, exchange="empty.topic", routing_key="k.#"))
    await _step(seen, client, "publish to amq.direct", publish("amq.direct", "k"), b"4",
                reply=False)
    client.close()
    guest = await t.raw(vhost="tv")  # guest has no topic permissions: nothing checked
    await _step(seen, guest, "guest publishes", publish("amq.topic", "x"), b"5", reply=False)
    guest.close()


async def test_topic_permissions_expansion_and_empty(diff: Diff) -> None:
    await diff(topic_tv)
