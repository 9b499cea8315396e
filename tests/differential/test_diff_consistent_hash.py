"""x-consistent-hash compared with RabbitMQ 3.10.8's rabbitmq_consistent_hash_exchange.

Compared: the replies to bad weights (406 and the plugin's words) and to bad exchange
arguments (both hash-header and hash-property, an unknown property); that every message
reaches exactly one queue, the same key always the same queue, a message lacking the
hashed header still one queue; weights share keys in proportion; a queue's second
binding does not add to its weight (3.10.8 measured: only the first binding counts).
Declared differences: weights above 10,000 (3.10 accepts them; WarrenMQ refuses them as
newer releases do, as issue 13 asks); which queue a key maps to (both use jump
consistent hash, over different key hashes: Erlang's phash2 vs BLAKE2b-64, the
documented stable one). Skipped, with the reason, when the plugin is not installed.
"""

from __future__ import annotations

import aiormq
import pytest

from tests.differential.conftest import CONSISTENT_HASH_PLUGIN, Diff
from tests.differential.harness import Target, Transcript, reply_of
from tests.differential.node import plugin_available

pytestmark = pytest.mark.skipif(
    not plugin_available(CONSISTENT_HASH_PLUGIN),
    reason=f"RabbitMQ's {CONSISTENT_HASH_PLUGIN} plugin is not installed here")

NEWER = "3.10 accepts weights above 10000; WarrenMQ refuses them as newer RabbitMQ does"


async def counts(ch: aiormq.abc.AbstractChannel, queues: list[str]) -> dict[str, list[str]]:
    got: dict[str, list[str]] = {}
    for queue in queues:
        bodies: list[str] = []
        while True:
            reply = await ch.basic_get(queue, no_ack=True)
            if isinstance(reply.delivery, aiormq.spec.Basic.GetEmpty):
                break
            bodies.append(reply.body.decode())
        got[queue] = bodies
    return got


async def errors(t: Target, seen: Transcript) -> None:
    conn = await aiormq.connect(t.url())
    try:
        ch = await conn.channel()
        await ch.exchange_declare(t.n("chx"), exchange_type="x-consistent-hash")
        await ch.queue_declare(t.n("q"), auto_delete=True)
        for key in ("abc", "1.5", "0", "-1", "10001", "10000", "1"):
            reply = await reply_of(ch.queue_bind(t.n("q"), t.n("chx"), routing_key=key))
            closed = isinstance(reply, tuple)
            seen.see(f"weight {key!r}", reply if closed else "bind-ok",
                     differs=NEWER if key == "10001" else None)
            if closed:
                ch = await conn.channel()
        for label, arguments in (
            ("both", {"hash-header": "h", "hash-property": "message_id"}),
            ("unknown property", {"hash-property": "user_id"}),
            ("property", {"hash-property": "correlation_id"}),
        ):
            reply = await reply_of(ch.exchange_declare(t.n(f"chx.{label}"),
                                                       exchange_type="x-consistent-hash",
                                                       arguments=arguments))
            seen.see(label, reply if isinstance(reply, tuple) else "declare-ok")
            if isinstance(reply, tuple):
                ch = await conn.channel()
        await ch.exchange_delete(t.n("chx"))
        await ch.exchange_delete(t.n("chx.property"))
    finally:
        await conn.close()


async def routing(t: Target, seen: Transcript) -> None:
    conn = await aiormq.connect(t.url())
    try:
        ch = await conn.channel()
        queues = [t.n(f"q{i}") for i in range(4)]
        await ch.exchange_declare(t.n("chx"), exchange_type="x-consistent-hash")
        await ch.exchange_declare(t.n("chh"), exchange_type="x-consistent-hash",
                                  arguments={"hash-header": "customer"})
        for i, queue in enumerate(queues):
            await ch.queue_declare(queue, auto_delete=True)
            await ch.queue_bind(queue, t.n("chx"), routing_key="3" if i == 0 else "1")
            await ch.queue_bind(queue, t.n("chh"), routing_key="1")
        await ch.confirm_delivery()
        keys = [f"customer-{n}" for n in range(600)]
        for key in keys + keys:  # every key twice
            await ch.basic_publish(key.encode(), exchange=t.n("chx"), routing_key=key)
        got = await counts(ch, queues)
        seen.see("each message in one queue", sum(map(len, got.values())))
        seen.see("same key, same queue",
                 all(len(set(bodies)) * 2 == len(bodies) for bodies in got.values()))
        share = len(got[queues[0]]) / 1200  # weight 3 of 6
        seen.see("weight 3 of 6 gets about half", 0.4 < share < 0.6)
        for n in range(40):
            headers = {"customer": f"c{n % 8}"} if n % 2 else None
            await ch.basic_publish(b"h", exchange=t.n("chh"), routing_key=str(n),
                                   properties=aiormq.spec.Basic.Properties(headers=headers))
        got = await counts(ch, queues)
        seen.see("hash-header: each message in one queue", sum(map(len, got.values())))
        # a queue's second binding
        await ch.queue_bind(queues[1], t.n("chx"), routing_key="20")
        for key in keys:
            await ch.basic_publish(key.encode(), exchange=t.n("chx"), routing_key=key)
        got = await counts(ch, queues)
        seen.see("second binding: one queue each", sum(map(len, got.values())))
        share = len(got[queues[1]]) / 600
        seen.see("second binding's weight counted", share > 0.5)
        for queue in queues:
            await ch.queue_delete(queue)
        await ch.exchange_delete(t.n("chx"))
        await ch.exchange_delete(t.n("chh"))
    finally:
        await conn.close()


async def test_consistent_hash_errors(diff: Diff) -> None:
    rabbit, warren = await diff(errors)
    assert {o.label: o.value for o in rabbit.seen}["weight '10001'"] == "bind-ok"  # 3.10
    refused = {o.label: o.value for o in warren.seen}["weight '10001'"]
    assert refused == ("ChannelPreconditionFailed", "PRECONDITION_FAILED - The binding key"
                       " must be less than or equal to 10000")


async def test_consistent_hash_routing(diff: Diff) -> None:
    rabbit, _ = await diff(routing)
    assert {o.label: o.value for o in rabbit.seen}["each message in one queue"] == 1200
