"""Direct exchange routing, the binding bookkeeping shared by all exchanges, and the registry."""

from __future__ import annotations

import pytest

from tests.helpers import Q1, Q2, X2, no_headers
from warrenmq.errors import CommandInvalid, ReplyCode
from warrenmq.exchange import (
    EXCHANGE_TYPES,
    DirectExchange,
    Exchange,
    FanoutExchange,
    HeadersExchange,
    TopicExchange,
    create_exchange,
)


def test_exact_key_routes_to_bound_destination() -> None:
    ex = DirectExchange("amq.direct")
    assert ex.bind(Q1, "orders")
    assert ex.route("orders", no_headers) == {Q1}
    assert ex.route("order", no_headers) == set()
    assert ex.route("orders.eu", no_headers) == set()
    assert ex.route("", no_headers) == set()


def test_same_key_reaches_every_bound_destination() -> None:
    ex = DirectExchange("d")
    ex.bind(Q1, "k")
    ex.bind(Q2, "k")
    ex.bind(X2, "k")
    ex.bind(Q2, "other")
    assert ex.route("k", no_headers) == {Q1, Q2, X2}
    assert ex.route("other", no_headers) == {Q2}


def test_empty_binding_key_matches_empty_routing_key() -> None:
    ex = DirectExchange("d")
    ex.bind(Q1, "")
    assert ex.route("", no_headers) == {Q1}


def test_bind_is_idempotent() -> None:
    ex = DirectExchange("d")
    assert ex.bind(Q1, "k") is True
    assert ex.bind(Q1, "k") is False
    assert ex.bind(Q1, "k", {}) is False
    assert list(ex.bindings()) == [(Q1, "k", {})]


def test_unbind() -> None:
    ex = DirectExchange("d")
    ex.bind(Q1, "k")
    ex.bind(Q2, "k")
    assert ex.unbind(Q1, "k") is True
    assert ex.unbind(Q1, "k") is False
    assert ex.unbind(Q2, "nope") is False
    assert ex.route("k", no_headers) == {Q2}
    assert ex.unbind(Q2, "k") is True
    assert ex.route("k", no_headers) == set()
    assert not ex.has_bindings()


def test_arguments_are_part_of_binding_identity() -> None:
    ex = DirectExchange("d")
    assert ex.bind(Q1, "k", {"a": 1})
    assert ex.bind(Q1, "k", {"a": 2})
    assert ex.bind(Q1, "k")
    assert ex.route("k", no_headers) == {Q1}
    assert ex.unbind(Q1, "k", {"a": 1})
    assert ex.route("k", no_headers) == {Q1}
    assert ex.unbind(Q1, "k")
    assert ex.route("k", no_headers) == {Q1}
    assert ex.unbind(Q1, "k", {"a": 2})
    assert ex.route("k", no_headers) == set()


def test_arguments_compare_by_value() -> None:
    ex = DirectExchange("d")
    args = {"b": [1, {"n": None}], "a": "x", "c": {"deep": b"v"}}
    assert ex.bind(Q1, "k", args)
    reordered = {"c": {"deep": "v"}, "a": b"x", "b": [1, {"n": None}]}
    assert ex.bind(Q1, "k", reordered) is False
    assert ex.has_binding(Q1, "k", reordered)
    assert ex.unbind(Q1, "k", dict(reordered))
    assert not ex.has_bindings()


def test_arguments_keep_amqp_types_apart() -> None:
    ex = DirectExchange("d")
    assert ex.bind(Q1, "k", {"v": 1})
    assert ex.bind(Q1, "k", {"v": True})
    assert ex.bind(Q1, "k", {"v": 1.0})
    assert ex.bind(Q1, "k", {"v": "1"})
    assert ex.bind(Q1, "k", {"v": [1]})
    assert ex.bind(Q1, "k", {"v": b"\xff"})
    assert ex.bind(Q1, "k", {"v": b"\xff"}) is False
    assert len(list(ex.bindings())) == 6


def test_unbind_destination_removes_all_its_bindings() -> None:
    ex = DirectExchange("d")
    ex.bind(Q1, "a")
    ex.bind(Q1, "b")
    ex.bind(Q1, "b", {"x": 1})
    ex.bind(Q2, "a")
    assert ex.unbind_destination(Q1) == 3
    assert ex.unbind_destination(Q1) == 0
    assert ex.route("a", no_headers) == {Q2}
    assert ex.route("b", no_headers) == set()
    assert list(ex.bindings()) == [(Q2, "a", {})]


def test_has_bindings_and_has_binding() -> None:
    ex = DirectExchange("d")
    assert not ex.has_bindings()
    ex.bind(Q1, "k", {"x": 1})
    assert ex.has_bindings()
    assert ex.has_binding(Q1, "k", {"x": 1})
    assert not ex.has_binding(Q1, "k")
    assert not ex.has_binding(Q2, "k", {"x": 1})


def test_bindings_returns_copies() -> None:
    ex = DirectExchange("d")
    args = {"x": 1}
    ex.bind(Q1, "k", args)
    args["x"] = 2
    ((_, _, listed),) = ex.bindings()
    assert listed == {"x": 1}
    listed["x"] = 3
    assert ex.has_binding(Q1, "k", {"x": 1})


def test_route_result_is_caller_owned() -> None:
    ex = DirectExchange("d")
    ex.bind(Q1, "k")
    ex.route("k", no_headers).add(Q2)
    assert ex.route("k", no_headers) == {Q1}


def test_attributes() -> None:
    ex = DirectExchange(
        "d", durable=True, auto_delete=True, internal=True, arguments={"alternate-exchange": "ae"}
    )
    assert (ex.name, ex.durable, ex.auto_delete, ex.internal) == ("d", True, True, True)
    assert ex.arguments == {"alternate-exchange": "ae"}
    assert ex.type_name == "direct"
    plain = DirectExchange("p")
    assert (plain.durable, plain.auto_delete, plain.internal, plain.arguments) == (
        False,
        False,
        False,
        {},
    )


@pytest.mark.parametrize(
    ("type_name", "cls"),
    [
        ("direct", DirectExchange),
        ("fanout", FanoutExchange),
        ("topic", TopicExchange),
        ("headers", HeadersExchange),
    ],
)
def test_registry_creates_each_type(type_name: str, cls: type[Exchange]) -> None:
    assert EXCHANGE_TYPES[type_name] is cls
    ex = create_exchange(
        type_name, "x", durable=True, auto_delete=False, internal=True, arguments={"a": 1}
    )
    assert type(ex) is cls
    assert ex.type_name == type_name
    assert (ex.name, ex.durable, ex.auto_delete, ex.internal, ex.arguments) == (
        "x",
        True,
        False,
        True,
        {"a": 1},
    )


def test_registry_rejects_unknown_type() -> None:
    with pytest.raises(CommandInvalid) as info:
        create_exchange(
            "x-random",
            "x",
            durable=False,
            auto_delete=False,
            internal=False,
            arguments=None,
        )
    assert info.value.reply_code is ReplyCode.COMMAND_INVALID
    assert int(info.value.reply_code) == 503
    assert info.value.text == "unknown exchange type 'x-random'"
    assert not info.value.is_channel_error
