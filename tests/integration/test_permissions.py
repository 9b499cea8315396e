"""Access control over real AMQP, as RabbitMQ's access-control table has it.

A user added to the running broker (``Broker.set_user`` / ``set_permission``) connects
with aio-pika, aiormq, pika or raw frames:

- no permission entry for the vhost: connection.open answers 530 NOT_ALLOWED "access to
  vhost '/' refused for user 'alice'" (raw and pika);
- configure on exchange.declare/delete and queue.declare/delete (passive declares need
  nothing), write+read for a new queue with a dead-letter exchange and a new exchange
  with an alternate exchange, write on the destination and read on the source for
  queue.bind/unbind and exchange.bind, write on basic.publish (the default exchange is
  checked as amq.default), read on basic.get, basic.consume and queue.purge; each
  refusal is channel.close 403 ACCESS_REFUSED with RabbitMQ's text;
- permission changes apply to open connections (the publish cache is invalidated),
  clearing the permission refuses everything, deleting the user closes its connections
  with 320 CONNECTION_FORCED "user 'alice' is deleted";
- the default guest keeps full access.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import aiormq
import pika
import pika.exceptions
import pytest
from aiormq.exceptions import ChannelAccessRefused
from pamqp import commands

from tests.conftest import BrokerHandle
from tests.helpers import TIMEOUT, channel_error, in_pika, wait_until
from tests.rawamqp import PROTOCOL_HEADER, RawClient
from warrenmq.broker.broker import User
from warrenmq.broker.permissions import FULL_ACCESS, Permission

PASSWORD = "s3cret"
#: alice may configure, write and read only names starting with "a." (and amq.gen-).
ALICE = Permission("^(a\\.|amq\\.gen)", "^(a\\.|amq\\.default$)", "^(a\\.|amq\\.gen)")


def add_alice(broker: BrokerHandle, permission: Permission | None = ALICE,
              vhost: str = "/") -> None:
    core = broker.server.broker
    core.set_user(User("alice", password=PASSWORD))
    if permission is not None:
        core.set_permission("alice", vhost, permission)


def alice_url(broker: BrokerHandle) -> str:
    return f"amqp://alice:{PASSWORD}@127.0.0.1:{broker.port}/"


@pytest.fixture
async def alice(broker: BrokerHandle) -> AsyncIterator[aiormq.Connection]:
    add_alice(broker)
    conn = await asyncio.wait_for(aiormq.connect(alice_url(broker)), TIMEOUT)
    try:
        yield conn
    finally:
        if not conn.is_closed:
            await asyncio.wait_for(conn.close(), TIMEOUT)


def refused(kind: str, name: str) -> str:
    return f"ACCESS_REFUSED - access to {kind} '{name}' in vhost '/' refused for user 'alice'"


async def refusal(aw: object) -> str:
    return await channel_error(aw, ChannelAccessRefused)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- vhost access
async def test_no_permission_entry_means_530_on_open_raw(broker: BrokerHandle) -> None:
    add_alice(broker, permission=None)
    client = await RawClient.connect(broker.port)
    try:
        client.send(PROTOCOL_HEADER)
        await client.expect(commands.Connection.Start)
        client.send_method(0, commands.Connection.StartOk(
            client_properties={"product": "raw"}, mechanism="PLAIN",
            response=f"\0alice\0{PASSWORD}", locale="en_US"))
        tune = await client.expect(commands.Connection.Tune)
        client.send_method(0, commands.Connection.TuneOk(
            channel_max=tune.channel_max, frame_max=tune.frame_max, heartbeat=0))
        client.send_method(0, commands.Connection.Open(virtual_host="/"))
        close = await client.expect_connection_close((530, 10, 40))
    finally:
        client.close()
    assert close.reply_text == "NOT_ALLOWED - access to vhost '/' refused for user 'alice'"


async def test_no_permission_entry_refuses_pika_too(broker: BrokerHandle) -> None:
    add_alice(broker, permission=None)
    params = pika.URLParameters(alice_url(broker) + "?connection_attempts=1")

    def connect() -> BaseException:
        try:
            pika.BlockingConnection(params).close()
        except pika.exceptions.AMQPError as exc:
            return exc
        raise AssertionError("the connection was accepted")

    exc = await asyncio.wait_for(asyncio.to_thread(connect), 15)
    assert "access to vhost '/' refused for user 'alice'" in str(exc), repr(exc)


async def test_permission_in_another_vhost_does_not_open_this_one(broker: BrokerHandle) -> None:
    broker.server.broker.add_vhost("other")
    add_alice(broker, permission=FULL_ACCESS, vhost="other")
    conn = await asyncio.wait_for(aio_pika.connect(alice_url(broker) + "other"), TIMEOUT)
    await conn.close()
    # aiormq reports the 530 close that answers its connection.open this way
    with pytest.raises(aiormq.exceptions.InvalidFrameError, match=r"Connection\.Close"):
        await asyncio.wait_for(aio_pika.connect(alice_url(broker)), TIMEOUT)


# --------------------------------------------------------------------------- configure
async def test_queue_declare_and_delete_need_configure(alice: aiormq.Connection,
                                                       broker: BrokerHandle) -> None:
    ch = await alice.channel()
    await ch.queue_declare("a.q")
    text = await refusal(ch.queue_declare("b.q"))
    assert text == refused("queue", "b.q")
    assert "b.q" not in broker.vhost().queues
    ch = await alice.channel()
    server_named = await ch.queue_declare("")  # amq.gen-... is allowed by ALICE
    assert server_named.queue.startswith("amq.gen-")
    text = await refusal(ch.queue_delete("b.other"))  # checked before existence
    assert text == refused("queue", "b.other")
    ch = await alice.channel()
    await ch.queue_delete("a.q")
    assert "a.q" not in broker.vhost().queues


async def test_passive_declares_need_no_permission(alice: aiormq.Connection,
                                                   broker: BrokerHandle) -> None:
    broker.vhost().declare_queue("b.existing", owner=None)
    broker.vhost().declare_exchange("b.x", "direct")
    ch = await alice.channel()
    ok = await ch.queue_declare("b.existing", passive=True)
    assert ok.queue == "b.existing"
    await ch.exchange_declare("b.x", passive=True)


async def test_exchange_declare_and_delete_need_configure(alice: aiormq.Connection,
                                                          broker: BrokerHandle) -> None:
    ch = await alice.channel()
    await ch.exchange_declare("a.x", exchange_type="fanout")
    text = await refusal(ch.exchange_declare("b.x", exchange_type="fanout"))
    assert text == refused("exchange", "b.x")
    broker.vhost().declare_exchange("b.y", "fanout")
    ch = await alice.channel()
    text = await refusal(ch.exchange_delete("b.y"))
    assert text == refused("exchange", "b.y")
    assert "b.y" in broker.vhost().exchanges
    ch = await alice.channel()
    await ch.exchange_delete("a.x")


async def test_dead_letter_exchange_needs_write_on_it(alice: aiormq.Connection,
                                                      broker: BrokerHandle) -> None:
    broker.vhost().declare_exchange("b.dlx", "fanout")
    ch = await alice.channel()
    text = await refusal(ch.queue_declare(
        "a.dl", arguments={"x-dead-letter-exchange": "b.dlx"}))
    assert text == refused("exchange", "b.dlx")
    assert "a.dl" not in broker.vhost().queues
    ch = await alice.channel()
    await ch.exchange_declare("a.dlx", exchange_type="fanout")
    await ch.queue_declare("a.dl", arguments={"x-dead-letter-exchange": "a.dlx"})


async def test_alternate_exchange_needs_write_on_it(alice: aiormq.Connection,
                                                    broker: BrokerHandle) -> None:
    broker.vhost().declare_exchange("b.ae", "fanout")
    ch = await alice.channel()
    text = await refusal(ch.exchange_declare(
        "a.withae", exchange_type="direct", arguments={"alternate-exchange": "b.ae"}))
    assert text == refused("exchange", "b.ae")
    assert "a.withae" not in broker.vhost().exchanges


# --------------------------------------------------------------------------- write / read
async def test_publish_needs_write_on_the_exchange(broker: BrokerHandle) -> None:
    add_alice(broker, Permission(".*", "^a\\.", ".*"))
    async with await aio_pika.connect(alice_url(broker)) as conn:
        channel = await conn.channel()
        exchange = await channel.declare_exchange("a.out", aio_pika.ExchangeType.FANOUT)
        queue = await channel.declare_queue("a.in")
        await queue.bind(exchange)
        await exchange.publish(aio_pika.Message(b"ok"), routing_key="")
        got = await queue.get(timeout=TIMEOUT)
        assert got.body == b"ok"
        await got.ack()
        # The default exchange is checked as amq.default: not writable by "^a\.".
        with pytest.raises(ChannelAccessRefused) as info:
            await asyncio.wait_for(channel.default_exchange.publish(
                aio_pika.Message(b"no"), routing_key="a.in"), TIMEOUT)
        assert info.value.args[0] == refused("exchange", "amq.default")
    assert broker.vhost().queues["a.in"].message_count == 0


async def test_get_consume_and_purge_need_read(broker: BrokerHandle) -> None:
    add_alice(broker, Permission(".*", ".*", "^a\\."))
    async with aiormq_conn(broker) as conn:
        ch = await conn.channel()
        await ch.queue_declare("b.secret")
        await ch.basic_publish(b"hidden", routing_key="b.secret")
        text = await refusal(ch.basic_get("b.secret"))
        assert text == refused("queue", "b.secret")
        ch = await conn.channel()
        text = await refusal(ch.basic_consume("b.secret", lambda message: None))
        assert text == refused("queue", "b.secret")
        ch = await conn.channel()
        text = await refusal(ch.queue_purge("b.secret"))
        assert text == refused("queue", "b.secret")
    assert broker.vhost().queues["b.secret"].message_count == 1


async def test_queue_bind_needs_write_on_queue_and_read_on_exchange(
        alice: aiormq.Connection, broker: BrokerHandle) -> None:
    vhost = broker.vhost()
    vhost.declare_exchange("b.src", "fanout")
    vhost.declare_queue("b.dst", owner=None)
    ch = await alice.channel()
    await ch.exchange_declare("a.src", exchange_type="fanout")
    await ch.queue_declare("a.dst")
    await ch.queue_bind("a.dst", "a.src")
    text = await refusal(ch.queue_bind("b.dst", "a.src"))
    assert text == refused("queue", "b.dst")
    ch = await alice.channel()
    text = await refusal(ch.queue_bind("a.dst", "b.src"))
    assert text == refused("exchange", "b.src")
    ch = await alice.channel()
    text = await refusal(ch.queue_unbind("a.dst", "b.src"))
    assert text == refused("exchange", "b.src")
    ch = await alice.channel()
    await ch.queue_unbind("a.dst", "a.src")


async def test_exchange_bind_needs_write_on_destination_read_on_source(
        alice: aiormq.Connection, broker: BrokerHandle) -> None:
    broker.vhost().declare_exchange("b.x", "fanout")
    ch = await alice.channel()
    await ch.exchange_declare("a.x1", exchange_type="fanout")
    await ch.exchange_declare("a.x2", exchange_type="fanout")
    await ch.exchange_bind("a.x2", "a.x1")
    text = await refusal(ch.exchange_bind("b.x", "a.x1"))
    assert text == refused("exchange", "b.x")
    ch = await alice.channel()
    text = await refusal(ch.exchange_bind("a.x2", "b.x"))
    assert text == refused("exchange", "b.x")


# --------------------------------------------------------------------------- changes
async def test_permission_changes_apply_to_open_connections(broker: BrokerHandle) -> None:
    add_alice(broker, FULL_ACCESS)
    core = broker.server.broker
    async with aiormq_conn(broker) as conn:
        ch = await conn.channel(publisher_confirms=True)
        await ch.queue_declare("a.live")
        await ch.basic_publish(b"1", routing_key="a.live")
        grant = core.grant("alice", "/")
        assert "" in grant.writable  # decided once, then a set lookup per publish
        core.set_permission("alice", "/", Permission(".*", "^$", ".*"))
        assert grant.writable == set()
        text = await refusal(ch.basic_publish(b"2", routing_key="a.live"))
        assert text == refused("exchange", "amq.default")
        core.set_permission("alice", "/", FULL_ACCESS)
        ch = await conn.channel(publisher_confirms=True)
        await ch.basic_publish(b"3", routing_key="a.live")
        core.clear_permission("alice", "/")
        text = await refusal(ch.queue_declare("a.other"))
        assert text == refused("queue", "a.other")
    assert broker.vhost().queues["a.live"].message_count == 2


async def test_deleting_the_user_closes_its_connections(broker: BrokerHandle) -> None:
    add_alice(broker, FULL_ACCESS)
    conn = await asyncio.wait_for(aio_pika.connect(alice_url(broker)), TIMEOUT)
    guest = await asyncio.wait_for(aio_pika.connect(broker.url), TIMEOUT)
    closed: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
    conn.close_callbacks.add(lambda _, exc=None: closed.done() or closed.set_result(exc))
    assert broker.server.broker.delete_user("alice")
    reason = await asyncio.wait_for(closed, TIMEOUT)
    assert isinstance(reason, aiormq.exceptions.ConnectionClosed), repr(reason)
    assert reason.args == (320, "CONNECTION_FORCED - user 'alice' is deleted")
    assert not guest.is_closed  # other users' connections stay
    await guest.close()
    await wait_until(lambda: all(c.user is None or c.user.name != "alice"
                                 for c in broker.server.connections))


async def test_guest_keeps_full_access(broker: BrokerHandle) -> None:
    def work(conn: pika.BlockingConnection) -> int:
        ch = conn.channel()
        ch.exchange_declare("anything", "fanout")
        ch.queue_declare("anything.q")
        ch.queue_bind("anything.q", "anything")
        ch.basic_publish("anything", "", b"x")
        ch.queue_purge("anything.q")
        ch.queue_delete("anything.q")
        ch.exchange_delete("anything")
        return 1

    assert await in_pika(broker, work) == 1


# --------------------------------------------------------------------------- helpers
class aiormq_conn:  # noqa: N801 - used like a function: ``async with aiormq_conn(b)``
    """An aiormq connection as alice, closed (best effort) afterwards."""

    def __init__(self, broker: BrokerHandle) -> None:
        self.url = alice_url(broker)
        self.conn: aiormq.Connection | None = None

    async def __aenter__(self) -> aiormq.Connection:
        self.conn = await asyncio.wait_for(aiormq.connect(self.url), TIMEOUT)
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        if self.conn is not None and not self.conn.is_closed:
            await asyncio.wait_for(self.conn.close(), TIMEOUT)
