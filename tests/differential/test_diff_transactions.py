"""Transactions (tx.*) compared with RabbitMQ 3.10.8, frame by frame (issue 12, item 1)."""

from __future__ import annotations

from pamqp import commands

from tests.differential.conftest import Diff
from tests.differential.harness import Target, Transcript
from tests.rawamqp import RawClient

P = commands.Basic.Properties


async def _reopen(client: RawClient, channel: int = 1) -> None:
    client.send_method(channel, commands.Channel.CloseOk())
    await client.open_channel(channel)


async def tx_modes(t: Target, seen: Transcript) -> None:
    client = await t.raw()
    for label, method in (("commit without select", commands.Tx.Commit()),
                          ("rollback without select", commands.Tx.Rollback())):
        client.send_method(1, method)
        await seen.frames(label, client, count=1)
        await _reopen(client)
    client.send_method(1, commands.Tx.Select())
    client.send_method(1, commands.Tx.Select())
    await seen.frames("select twice", client, count=2)
    client.send_method(1, commands.Confirm.Select())
    await seen.frames("confirm.select on a tx channel", client, count=1)
    await client.open_channel(2)
    client.send_method(2, commands.Confirm.Select())
    client.send_method(2, commands.Tx.Select())
    await seen.frames("tx.select on a confirm channel", client, count=2)
    client.send_method(3, commands.Channel.Open())
    client.send_method(3, commands.Tx.Select())
    client.send_method(3, commands.Tx.Commit())
    client.send_method(3, commands.Tx.Rollback())
    client.send_method(3, commands.Tx.Commit())
    await seen.frames("empty commit and rollback", client, count=5)
    client.close()


async def test_tx_modes_and_errors(diff: Diff) -> None:
    await diff(tx_modes)


async def _depth(client: RawClient, queue: str) -> tuple[int, int]:
    client.send_method(9, commands.Queue.Declare(queue=queue, passive=True))
    ok = await client.expect(commands.Queue.DeclareOk)
    return int(ok.message_count), int(ok.consumer_count)


async def tx_publishes(t: Target, seen: Transcript) -> None:
    client = await t.raw()
    await client.open_channel(9)
    q = t.n("txq")
    client.send_method(9, commands.Queue.Declare(queue=q, durable=True))
    await client.expect(commands.Queue.DeclareOk)
    client.send_method(1, commands.Tx.Select())
    await client.expect(commands.Tx.SelectOk)
    client.send_method(1, commands.Basic.Publish(routing_key=q))
    client.send_content(1, b"one", P(delivery_mode=2, headers={"n": 1}))
    client.send_method(1, commands.Basic.Publish(routing_key="nowhere." + q, mandatory=True))
    client.send_content(1, b"lost", P(content_type="text/plain"))
    client.send_method(1, commands.Basic.Publish(routing_key=q))
    client.send_content(1, b"two")
    seen.see("depth before commit", await _depth(client, q))
    client.send_method(1, commands.Tx.Commit())
    await seen.frames("commit", client, until=commands.Tx.CommitOk)
    seen.see("depth after commit", await _depth(client, q))
    client.send_method(1, commands.Basic.Publish(routing_key=q))
    client.send_content(1, b"three")
    client.send_method(1, commands.Tx.Rollback())
    await seen.frames("rollback", client, until=commands.Tx.RollbackOk)
    client.send_method(1, commands.Tx.Commit())
    await seen.frames("commit after rollback", client, until=commands.Tx.CommitOk)
    seen.see("depth after rollback", await _depth(client, q))
    client.send_method(1, commands.Basic.Publish(exchange=t.n("missing"), routing_key=q))
    client.send_content(1, b"four")
    await seen.frames("publish to a missing exchange", client, count=1)
    await _reopen(client)
    client.send_method(1, commands.Tx.Select())
    await client.expect(commands.Tx.SelectOk)
    client.send_method(1, commands.Basic.Publish(routing_key=q))
    client.send_content(1, b"five")
    client.send_method(1, commands.Channel.Close(200, "bye", 0, 0))
    await client.expect(commands.Channel.CloseOk)
    seen.see("depth after closing uncommitted", await _depth(client, q))
    for label in ("first", "second"):
        client.send_method(9, commands.Basic.Get(queue=q, no_ack=True))
        await seen.frames(f"get {label}", client, count=3)
    client.send_method(9, commands.Queue.Delete(queue=q))
    await client.expect(commands.Queue.DeleteOk)
    client.close()


async def test_tx_publishes_route_at_commit(diff: Diff) -> None:
    await diff(tx_publishes)


async def tx_acks(t: Target, seen: Transcript) -> None:
    client = await t.raw()
    await client.open_channel(9)
    q = t.n("txa")
    client.send_method(9, commands.Queue.Declare(queue=q))
    await client.expect(commands.Queue.DeclareOk)
    for n in range(4):
        client.send_method(9, commands.Basic.Publish(routing_key=q))
        client.send_content(9, f"m{n}".encode())
    client.send_method(1, commands.Tx.Select())
    client.send_method(1, commands.Basic.Qos(prefetch_count=2))
    client.send_method(1, commands.Basic.Consume(queue=q, consumer_tag="c"))
    await seen.frames("consume", client, count=9)  # select-ok, qos-ok, consume-ok, 2 x 3
    client.send_method(1, commands.Basic.Ack(delivery_tag=1))
    await seen.frames("ack held: prefetch still full", client, quiet=0.5)
    seen.see("depth", await _depth(client, q))
    client.send_method(1, commands.Tx.Rollback())
    await seen.frames("rollback", client, until=commands.Tx.RollbackOk)
    client.send_method(1, commands.Basic.Ack(delivery_tag=1))  # unacked again after rollback
    client.send_method(1, commands.Basic.Nack(delivery_tag=2, requeue=True))
    client.send_method(1, commands.Tx.Commit())
    # commit-ok, and the deliveries the freed prefetch and the requeue allow: RabbitMQ's
    # queue process sends those, so their order against commit-ok is a race there
    await seen.frames("commit", client, quiet=0.7, unordered=True)
    client.send_method(1, commands.Basic.Ack(delivery_tag=3))
    client.send_method(1, commands.Basic.Ack(delivery_tag=3))
    await seen.frames("double ack in a tx", client, count=1)
    await _reopen(client)
    seen.see("depth after the channel closed", await _depth(client, q))
    client.close()


async def test_tx_acks_held_until_commit(diff: Diff) -> None:
    await diff(tx_acks)
