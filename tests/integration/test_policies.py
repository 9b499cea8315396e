"""Policies end to end over AMQP (aio-pika), set and cleared on the running broker.

- a policy with max-length 2 and dead-letter-exchange on ``^pol\\.`` makes a queue
  declared without arguments drop its oldest messages into the dead-letter queue (with
  x-death reason maxlen); a queue outside the pattern is untouched;
- setting the policy on a queue that already holds messages trims it at once; clearing
  the policy restores the unlimited queue;
- a declared x-dead-letter-exchange wins over the policy's; for max-length the lower of
  the two applies (RabbitMQ's classic queue rule);
- with two matching policies the higher priority applies;
- redeclaring a queue compares declared arguments only, never the policy's;
- alternate-exchange from a policy catches what an exchange cannot route;
- a message-ttl policy expires messages published after it, not those already queued.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aiormq.exceptions import ChannelPreconditionFailed

from tests.conftest import BrokerHandle
from tests.helpers import TIMEOUT, channel_error, wait_until
from warrenmq.broker.policies import Policy


def policy(name: str, pattern: str, priority: int = 0, apply_to: str = "queues",
           **definition: object) -> Policy:
    return Policy(name, "/", pattern, apply_to, priority,
                  {key.replace("_", "-"): value for key, value in definition.items()})


@pytest.fixture
async def channel(broker: BrokerHandle) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    conn = await asyncio.wait_for(aio_pika.connect(broker.url), TIMEOUT)
    async with conn:
        yield await conn.channel()


async def dlx(channel: aio_pika.abc.AbstractChannel, name: str = "pdlx"
              ) -> aio_pika.abc.AbstractQueue:
    exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.FANOUT)
    queue = await channel.declare_queue(name + ".q")
    await queue.bind(exchange)
    return queue


async def publish(channel: aio_pika.abc.AbstractChannel, queue: str, bodies: list[bytes]
                  ) -> None:
    for body in bodies:
        await channel.default_exchange.publish(aio_pika.Message(body), routing_key=queue)


async def drain(queue: aio_pika.abc.AbstractQueue) -> list[aio_pika.abc.AbstractIncomingMessage]:
    got = []
    while (message := await queue.get(fail=False, timeout=TIMEOUT)) is not None:
        await message.ack()
        got.append(message)
    return got


async def count(channel: aio_pika.abc.AbstractChannel, name: str) -> int:
    declared = await channel.declare_queue(name, passive=True)
    return int(declared.declaration_result.message_count)


async def test_policy_drops_and_dead_letters_matching_queues_only(
        broker: BrokerHandle, channel: aio_pika.abc.AbstractChannel) -> None:
    dead = await dlx(channel)
    broker.server.broker.set_policy(
        policy("cap", "^pol\\.", max_length=2, dead_letter_exchange="pdlx"))
    capped = await channel.declare_queue("pol.a")
    free = await channel.declare_queue("other.a")
    bodies = [f"m{i}".encode() for i in range(5)]
    await publish(channel, "pol.a", bodies)
    await publish(channel, "other.a", bodies)
    assert [m.body for m in await drain(capped)] == [b"m3", b"m4"]
    assert await count(channel, "other.a") == 5
    died = await drain(dead)
    assert [m.body for m in died] == [b"m0", b"m1", b"m2"]
    x_death = died[0].headers["x-death"]
    assert x_death[0]["reason"] == "maxlen" and x_death[0]["queue"] == "pol.a"
    assert free.name == "other.a"
    assert broker.vhost().queues["pol.a"].policy == "cap"
    assert broker.vhost().queues["other.a"].policy is None


async def test_set_on_a_full_queue_trims_it_and_clearing_restores(
        broker: BrokerHandle, channel: aio_pika.abc.AbstractChannel) -> None:
    dead = await dlx(channel)
    queue = await channel.declare_queue("pol.live")
    await publish(channel, "pol.live", [f"m{i}".encode() for i in range(6)])
    assert await count(channel, "pol.live") == 6
    core = broker.server.broker
    core.set_policy(policy("cap", "^pol\\.", max_length=2, dead_letter_exchange="pdlx"))
    assert await count(channel, "pol.live") == 2  # at once, oldest first
    assert len(await drain(dead)) == 4
    assert core.clear_policy("/", "cap")
    await publish(channel, "pol.live", [f"n{i}".encode() for i in range(5)])
    assert await count(channel, "pol.live") == 7
    assert await count(channel, "pdlx.q") == 0
    assert [m.body for m in await drain(queue)][:2] == [b"m4", b"m5"]


async def test_declared_dead_letter_exchange_wins_and_lower_length_applies(
        broker: BrokerHandle, channel: aio_pika.abc.AbstractChannel) -> None:
    policy_dead = await dlx(channel, "pdlx")
    own_dead = await dlx(channel, "owndlx")
    broker.server.broker.set_policy(
        policy("cap", "^pol\\.", max_length=2, dead_letter_exchange="pdlx"))
    await channel.declare_queue("pol.own", arguments={
        "x-dead-letter-exchange": "owndlx", "x-max-length": 10})
    await publish(channel, "pol.own", [b"1", b"2", b"3"])
    assert await count(channel, "pol.own") == 2  # min(10, 2)
    assert [m.body for m in await drain(own_dead)] == [b"1"]
    assert await drain(policy_dead) == []
    await channel.declare_queue("pol.lower", arguments={"x-max-length": 1})
    await publish(channel, "pol.lower", [b"1", b"2", b"3"])
    assert await count(channel, "pol.lower") == 1  # min(1, 2)
    queue = broker.vhost().queues["pol.own"]
    assert queue.effective_arguments == {
        "x-dead-letter-exchange": "owndlx", "x-max-length": 2}


async def test_higher_priority_policy_applies(
        broker: BrokerHandle, channel: aio_pika.abc.AbstractChannel) -> None:
    core = broker.server.broker
    core.set_policy(policy("low", "^pol\\.", priority=1, max_length=1))
    core.set_policy(policy("high", "^pol\\.prio", priority=10, max_length=3))
    await channel.declare_queue("pol.prio")
    await channel.declare_queue("pol.plain")
    await publish(channel, "pol.prio", [b"1", b"2", b"3", b"4"])
    await publish(channel, "pol.plain", [b"1", b"2", b"3", b"4"])
    assert await count(channel, "pol.prio") == 3
    assert await count(channel, "pol.plain") == 1
    assert broker.vhost().queues["pol.prio"].policy == "high"
    core.clear_policy("/", "high")
    assert broker.vhost().queues["pol.prio"].policy == "low"
    assert await count(channel, "pol.prio") == 1


async def test_redeclare_compares_declared_arguments_only(
        broker: BrokerHandle, channel: aio_pika.abc.AbstractChannel) -> None:
    broker.server.broker.set_policy(policy("cap", "^pol\\.", max_length=2))
    await channel.declare_queue("pol.eq")
    await channel.declare_queue("pol.eq")  # no arguments both times: equivalent
    text = await channel_error(
        channel.declare_queue("pol.eq", arguments={"x-max-length": 2}),
        ChannelPreconditionFailed)
    assert "inequivalent arg 'x-max-length'" in text


async def test_alternate_exchange_from_a_policy(
        broker: BrokerHandle, channel: aio_pika.abc.AbstractChannel) -> None:
    ae = await channel.declare_exchange("pae", aio_pika.ExchangeType.FANOUT)
    unrouted = await channel.declare_queue("pae.q")
    await unrouted.bind(ae)
    source = await channel.declare_exchange("pol.src", aio_pika.ExchangeType.DIRECT)
    broker.server.broker.set_policy(
        policy("ae", "^pol\\.", apply_to="exchanges", alternate_exchange="pae"))
    await source.publish(aio_pika.Message(b"lost?"), routing_key="nobody")
    assert [m.body for m in await drain(unrouted)] == [b"lost?"]
    assert broker.vhost().exchanges["pol.src"].policy == "ae"
    broker.server.broker.clear_policy("/", "ae")
    await source.publish(aio_pika.Message(b"gone"), routing_key="nobody")
    assert await count(channel, "pae.q") == 0


async def test_message_ttl_policy_applies_to_new_messages(
        broker: BrokerHandle, channel: aio_pika.abc.AbstractChannel) -> None:
    dead = await dlx(channel)
    await channel.declare_queue("pol.ttl")
    await publish(channel, "pol.ttl", [b"before"])
    broker.server.broker.set_policy(
        policy("ttl", "^pol\\.", message_ttl=50, dead_letter_exchange="pdlx"))
    await publish(channel, "pol.ttl", [b"after"])
    queue = broker.vhost().queues["pol.ttl"]
    await wait_until(lambda: queue.message_count == 1)
    died = await drain(dead)
    assert [m.body for m in died] == [b"after"]
    assert died[0].headers["x-death"][0]["reason"] == "expired"
    assert await count(channel, "pol.ttl") == 1  # "before" kept its (absent) expiry
