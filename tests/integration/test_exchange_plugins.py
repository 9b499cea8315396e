"""Exchange types as plugins: interpreted subclasses of the (compiled) Exchange, over the wire.

Covers: a type registered through ``warrenmq.exchange.registry.register`` (the mechanism
the built-in types and entry-point plugins use) is declarable, bindable and routes; the
``route_message`` hook (a type routing on the body) and the hold hook (a type that keeps
a message and releases it on the broker's timer); containment: a type whose
``route``/``validate_binding``/``validate_arguments``/``hold`` raises closes only the
channel that used it, with 541 INTERNAL_ERROR naming the exchange and its type, while the
same connection's other channels, other clients and the broker go on. The management
overview lists the registered types. Runs under the compiled build too (``make test``):
the classes here are interpreted subclasses of the compiled ``Exchange``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import aiormq
import pytest
import structlog

from tests.conftest import BrokerHandle
from tests.helpers import TIMEOUT, rmq
from tests.mgmthttp import Http
from warrenmq.config import ManagementConfig
from warrenmq.errors import PreconditionFailed
from warrenmq.exchange import Binding, Destination, Exchange, HeadersGetter
from warrenmq.exchange.registry import EXCHANGE_TYPES, register, unregister
from warrenmq.message import Message


class ParityExchange(Exchange):
    """Routes a numeric routing key to the destinations bound with "even" or "odd"."""

    type_name: ClassVar[str] = "x-test-parity"

    def _init_index(self) -> None:
        self.by_parity: dict[str, set[Destination]] = {"even": set(), "odd": set()}

    @classmethod
    def validate_arguments(cls, arguments: Mapping[str, Any]) -> None:
        if "x-refuse" in arguments:
            raise PreconditionFailed("x-test-parity refuses x-refuse")

    def validate_binding(self, binding_key: str, arguments: Mapping[str, Any]) -> None:
        if binding_key not in self.by_parity:
            raise PreconditionFailed(f"binding key must be even or odd, not '{binding_key}'")

    def route(self, routing_key: str, headers: HeadersGetter) -> set[Destination]:
        parity = "even" if int(routing_key) % 2 == 0 else "odd"  # ValueError: contained
        return set(self.by_parity[parity])

    def _attach(self, binding: Binding) -> None:
        self.by_parity[binding.binding_key].add(binding.destination)

    def _detach(self, binding: Binding) -> None:
        self.by_parity[binding.binding_key].discard(binding.destination)


class BodyPrefixExchange(ParityExchange):
    """Routes on the body's first byte being an even or odd digit (the route_message hook)."""

    type_name: ClassVar[str] = "x-test-body"
    ROUTES_MESSAGE: ClassVar[bool] = True

    def route_message(self, message: Message) -> set[Destination]:
        return self.route(message.body[:1].decode(), message.headers)


class BrokenExchange(ParityExchange):
    """Raises from validate_binding for key "odd" and from hold for routing key "0"."""

    type_name: ClassVar[str] = "x-test-broken"
    HOLDS_MESSAGES: ClassVar[bool] = True

    def validate_binding(self, binding_key: str, arguments: Mapping[str, Any]) -> None:
        if binding_key == "odd":
            raise KeyError("plugin bug in validate_binding")

    def hold(self, message: Message, now: float) -> int | None:
        if message.routing_key == "0":
            raise RuntimeError("plugin bug in hold")
        return None


class LaterExchange(ParityExchange):
    """Holds every message whose routing key is even for 0.2 s (the hold hook)."""

    type_name: ClassVar[str] = "x-test-later"
    HOLDS_MESSAGES: ClassVar[bool] = True

    def _init_index(self) -> None:
        super()._init_index()
        self.held: list[tuple[float, Message]] = []

    def hold(self, message: Message, now: float) -> int | None:
        if int(message.routing_key) % 2:
            return None
        self.held.append((now + 0.2, message))
        return 0

    def next_release(self) -> float | None:
        return min((due for due, _ in self.held), default=None)

    def release(self, now: float) -> list[Message]:
        due = [m for when, m in self.held if when <= now]
        self.held = [(when, m) for when, m in self.held if when > now]
        return due


TYPES = (ParityExchange, BodyPrefixExchange, BrokenExchange, LaterExchange)


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    for cls in TYPES:
        register(cls, origin="tests/integration/test_exchange_plugins.py")
    yield
    for cls in TYPES:
        unregister(cls.type_name)


async def setup(ch: aiormq.abc.AbstractChannel, xtype: str, **args: Any) -> None:
    await ch.exchange_declare("px", exchange_type=xtype, arguments=args or None)
    for parity in ("even", "odd"):
        await ch.queue_declare(f"q.{parity}")
        await ch.queue_bind(f"q.{parity}", "px", routing_key=parity)


async def drain(ch: aiormq.abc.AbstractChannel, queue: str) -> list[bytes]:
    bodies = []
    while True:
        got = await asyncio.wait_for(ch.basic_get(queue, no_ack=True), TIMEOUT)
        if isinstance(got.delivery, aiormq.spec.Basic.GetEmpty):
            return bodies
        bodies.append(got.body)


async def test_a_plugin_type_declares_binds_and_routes(broker: BrokerHandle) -> None:
    assert type(broker.vhost()).__module__  # the broker is up
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await setup(ch, "x-test-parity")
        await ch.confirm_delivery()
        for n in range(6):
            await ch.basic_publish(str(n).encode(), exchange="px", routing_key=str(n))
        assert await drain(ch, "q.even") == [b"0", b"2", b"4"]
        assert await drain(ch, "q.odd") == [b"1", b"3", b"5"]
        exchange = broker.vhost().exchanges["px"]
        assert type(exchange) is ParityExchange and not exchange.routes_message


async def test_route_message_hook_routes_on_the_body(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await setup(ch, "x-test-body")
        for body in (b"7 odd", b"8 even", b"1 odd"):
            await ch.basic_publish(body, exchange="px", routing_key="ignored")
        assert await drain(ch, "q.odd") == [b"7 odd", b"1 odd"]
        assert await drain(ch, "q.even") == [b"8 even"]


async def test_hold_hook_keeps_a_message_and_the_timer_releases_it(
    broker: BrokerHandle,
) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await setup(ch, "x-test-later")
        await ch.confirm_delivery()
        for n in (2, 3):  # 2 is held (and confirmed: taken, not unroutable), 3 routes now
            await ch.basic_publish(str(n).encode(), exchange="px", routing_key=str(n),
                                   mandatory=True)
        assert await drain(ch, "q.odd") == [b"3"]
        assert await drain(ch, "q.even") == []
        assert broker.vhost().exchanges["px"] in broker.vhost().holding
        for _ in range(50):
            await asyncio.sleep(0.05)
            bodies = await drain(ch, "q.even")
            if bodies:
                break
        assert bodies == [b"2"]
        assert not broker.vhost().holding


async def test_unknown_declare_arguments_get_the_types_406(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed) as info:
            await ch.exchange_declare("px", exchange_type="x-test-parity",
                                      arguments={"x-refuse": 1})
        assert "x-test-parity refuses x-refuse" in str(info.value)
        assert "px" not in broker.vhost().exchanges


async def expect_541(aw: Any) -> str:
    with pytest.raises(aiormq.exceptions.AMQPError) as info:
        await asyncio.wait_for(aw, TIMEOUT)
    text = str(info.value)
    assert "INTERNAL_ERROR" in text, text
    return text


async def test_a_raising_plugin_closes_only_the_publishing_channel(
    broker: BrokerHandle,
) -> None:
    async with rmq(broker) as conn, rmq(broker) as other:
        ch = await conn.channel()
        await setup(ch, "x-test-parity")
        await ch.confirm_delivery()
        bystander = await conn.channel()  # same connection, another channel
        text = await expect_541(ch.basic_publish(b"x", exchange="px", routing_key="not-a-number"))
        assert "exchange 'px' of type 'x-test-parity' failed to route" in text
        assert "ValueError" in text
        assert ch.is_closed and not conn.is_closed
        await bystander.basic_publish(b"4", exchange="px", routing_key="4")
        assert await drain(bystander, "q.even") == [b"4"]
        och = await other.channel()
        await och.basic_publish(b"5", exchange="px", routing_key="5")
        assert await drain(och, "q.odd") == [b"5"]


async def test_raising_validate_binding_and_hold_are_contained(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await ch.exchange_declare("bx", exchange_type="x-test-broken")
        await ch.queue_declare("q.b")
        text = await expect_541(ch.queue_bind("q.b", "bx", routing_key="odd"))
        assert "exchange 'bx' of type 'x-test-broken' failed to validate a binding" in text
        assert "KeyError" in text
        ch = await conn.channel()
        await ch.queue_bind("q.b", "bx", routing_key="even")
        text = await expect_541(_publish_confirmed(ch, "bx", "0"))
        assert "failed to hold a message" in text and "RuntimeError" in text
        ch = await conn.channel()
        await ch.basic_publish(b"2", exchange="bx", routing_key="2")
        assert await drain(ch, "q.b") == [b"2"]
        assert not conn.is_closed


async def test_a_raising_dead_letter_exchange_drops_the_dead_letter_only(
    broker: BrokerHandle,
) -> None:
    with structlog.testing.capture_logs() as logged:
        async with rmq(broker) as conn:
            ch = await conn.channel()
            await ch.exchange_declare("dlx", exchange_type="x-test-parity")
            await ch.queue_declare("work", arguments={"x-dead-letter-exchange": "dlx",
                                                      "x-dead-letter-routing-key": "nan"})
            await ch.basic_publish(b"doomed", exchange="", routing_key="work")
            got = await asyncio.wait_for(ch.basic_get("work"), TIMEOUT)
            await ch.basic_reject(got.delivery.delivery_tag, requeue=False)
            await ch.basic_publish(b"next", exchange="", routing_key="work")
            assert await drain(ch, "work") == [b"next"]  # the channel and queue go on
            assert not ch.is_closed
        # counted, then logged once by the server's tick (which empties the counter)
        key = ("dead_letter_route_failed", "work", "rejected", "dlx")
        for _ in range(60):
            written = [e for e in logged if e["event"] == "dead_letter_route_failed"]
            if written or broker.vhost().dead_letter_log[key]:
                break
            await asyncio.sleep(0.1)
    assert written or broker.vhost().dead_letter_log[key] == 1
    if written:
        assert written[0]["count"] == 1 and written[0]["exchange"] == "dlx"
    assert [e["action"] for e in logged if e["event"] == "exchange_type_failed"] == [
        "route a message (routing key 'nan')"]


async def test_a_held_message_whose_routing_raises_is_dropped_and_others_released(
    broker: BrokerHandle,
) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await setup(ch, "x-test-later")
        await ch.exchange_declare("px2", exchange_type="x-test-later")
        await ch.queue_bind("q.even", "px2", routing_key="even")
        later = broker.vhost().exchanges["px"]
        assert isinstance(later, LaterExchange)
        await ch.basic_publish(b"fine", exchange="px2", routing_key="2")
        # held now, but routed on release with a key its route cannot read
        bad = Message("px", "nan", b"nan", b"\x00\x00", b"bad")
        later.held.append((0.0, bad))
        broker.vhost().holding.add(later)
        for _ in range(50):
            await asyncio.sleep(0.05)
            if not broker.vhost().holding:
                break
        assert await drain(ch, "q.even") == [b"fine"]
        assert later.held == [] and not broker.vhost().holding


async def _publish_confirmed(ch: aiormq.abc.AbstractChannel, exchange: str, key: str) -> None:
    await ch.confirm_delivery()
    await ch.basic_publish(key.encode(), exchange=exchange, routing_key=key)


async def test_management_overview_lists_every_registered_type(broker_factory: Any) -> None:
    handle = await broker_factory(top={"management": ManagementConfig(port=0)})
    overview = await Http(handle.server.management_port).json("/api/overview")
    names = [t["name"] for t in overview["exchange_types"]]
    assert names == list(EXCHANGE_TYPES)
    assert {"direct", "x-consistent-hash", "x-test-parity"} <= set(names)


def test_plugin_classes_are_interpreted_subclasses_of_the_build_in_use() -> None:
    """Under ``make test`` the Exchange base is the mypyc extension and these classes
    subclass it from interpreted Python (allow_interpreted_subclasses); pure, both are
    interpreted. Either way the tests above drove them through the broker."""
    import warrenmq
    import warrenmq.exchange.base as base

    compiled = not base.__file__.endswith(".py")
    assert compiled == (warrenmq.HOT_PATH == "compiled")
    assert ParityExchange.__module__ == __name__ and issubclass(ParityExchange, Exchange)
