"""Protocol behaviours clients depend on (issue 12, item 5), compared with RabbitMQ 3.10.8:
unbinding what does not exist, channel_max as a count of open channels, delete-ok before
the consumer's basic.cancel, and frames after connection.close."""

from __future__ import annotations

from pamqp import commands

from tests.differential.conftest import Diff
from tests.differential.harness import Target, Transcript


async def unbind_missing(t: Target, seen: Transcript) -> None:
    client = await t.raw()
    q, x = t.n("uq"), t.n("ux")
    client.send_method(1, commands.Queue.Declare(queue=q))
    client.send_method(1, commands.Exchange.Declare(exchange=x, exchange_type="direct"))
    await seen.frames("declares", client, count=2)
    qu, xu = commands.Queue.Unbind, commands.Exchange.Unbind
    cases = [
        ("queue.unbind missing binding", qu(queue=q, exchange=x, routing_key="k")),
        ("queue.unbind missing queue", qu(queue=t.n("noq"), exchange=x, routing_key="k")),
        ("queue.unbind missing exchange", qu(queue=q, exchange=t.n("nox"), routing_key="k")),
        ("queue.unbind both missing",
         qu(queue=t.n("noq"), exchange=t.n("nox"), routing_key="k")),
        ("exchange.unbind missing binding",
         xu(destination=x, source="amq.direct", routing_key="k")),
        ("exchange.unbind missing destination",
         xu(destination=t.n("nox"), source="amq.direct", routing_key="k")),
        ("exchange.unbind missing source",
         xu(destination=x, source=t.n("nox"), routing_key="k")),
    ]
    for label, method in cases:
        client.send_method(1, method)
        got = await seen.frames(label, client, count=1)
        if isinstance(got[0][-1], commands.Channel.Close):
            client.send_method(1, commands.Channel.CloseOk())
            await client.open_channel(1)
    client.send_method(1, commands.Queue.Unbind(queue=q, exchange="", routing_key="k"))
    await seen.frames("queue.unbind from the default exchange", client, count=1)
    client.close()


async def test_unbind_of_missing_things_is_ok(diff: Diff) -> None:
    await diff(unbind_missing)


async def channel_max(t: Target, seen: Transcript) -> None:
    client = await t.raw(channel_max=2, open_channel=None)
    steps = [("open 65535", 65535, commands.Channel.Open()),
             ("open 7", 7, commands.Channel.Open()),
             ("close 65535", 65535, commands.Channel.Close(200, "bye", 0, 0)),
             ("open 3 after a close", 3, commands.Channel.Open()),
             ("open a third", 9, commands.Channel.Open())]
    for label, number, method in steps:
        if client.writer.is_closing():
            seen.see(label, "socket already closed")
            continue
        client.send_method(number, method)
        await seen.frames(label, client, count=1)
    if not client.writer.is_closing():
        client.send_method(0, commands.Connection.CloseOk())
    seen.see("socket closed", await client.closed())
    client.close()


async def test_channel_max_counts_open_channels(diff: Diff) -> None:
    await diff(channel_max)


async def delete_with_own_consumer(t: Target, seen: Transcript) -> None:
    client = await t.raw()
    q = t.n("dq")
    client.send_method(1, commands.Queue.Declare(queue=q))
    client.send_method(1, commands.Basic.Consume(queue=q, consumer_tag="c1"))
    await seen.frames("declare, consume", client, count=2)
    client.send_method(1, commands.Queue.Delete(queue=q))
    await seen.frames("delete", client, quiet=0.5)
    client.close()


async def test_queue_delete_ok_before_cancel(diff: Diff) -> None:
    await diff(delete_with_own_consumer)


async def double_close(t: Target, seen: Transcript) -> None:
    client = await t.raw()
    client.send_method(0, commands.Connection.Close(200, "bye", 0, 0))
    client.send_method(0, commands.Connection.Close(200, "bye again", 0, 0))
    client.send_method(1, commands.Basic.Qos(prefetch_count=1))
    client.send_method(0, commands.Connection.CloseOk())
    await seen.frames("after two closes", client, quiet=0.7)
    # The broker has not closed the socket: the client closes it, and nothing was reset.
    client.writer.write_eof()
    seen.see("then EOF", await client.closed())
    client.close()


async def test_frames_after_client_close_are_ignored(diff: Diff) -> None:
    await diff(double_close)


async def crossing_close(t: Target, seen: Transcript) -> None:
    client = await t.raw()
    client.send_method(5, commands.Basic.Qos(prefetch_count=1))  # unopened channel: 504
    await seen.frames("error", client, count=1)
    client.send_method(0, commands.Connection.Close(200, "crossing", 0, 0))
    await seen.frames("crossing close", client, quiet=0.7)
    client.close()


async def test_close_crossing_a_server_close(diff: Diff) -> None:
    await diff(crossing_close)



