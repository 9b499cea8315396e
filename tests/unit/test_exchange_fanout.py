"""Fanout exchange routing: every bound destination, whatever the routing key."""

from __future__ import annotations

from tests.helpers import Q1, Q2, X2, no_headers
from warrenmq.exchange import FanoutExchange


def test_routes_to_every_destination_ignoring_key() -> None:
    ex = FanoutExchange("amq.fanout")
    assert ex.route("anything", no_headers) == set()
    ex.bind(Q1, "")
    ex.bind(Q2, "ignored")
    ex.bind(X2, "also.ignored")
    for key in ("", "a", "a.b.c", "ignored"):
        assert ex.route(key, no_headers) == {Q1, Q2, X2}


def test_destination_bound_twice_appears_once_until_last_unbind() -> None:
    ex = FanoutExchange("f")
    assert ex.bind(Q1, "a")
    assert ex.bind(Q1, "b")
    assert ex.bind(Q1, "b") is False
    assert ex.route("", no_headers) == {Q1}
    assert ex.unbind(Q1, "a")
    assert ex.route("", no_headers) == {Q1}
    assert ex.unbind(Q1, "b")
    assert ex.unbind(Q1, "b") is False
    assert ex.route("", no_headers) == set()
    assert not ex.has_bindings()


def test_unbind_destination() -> None:
    ex = FanoutExchange("f")
    ex.bind(Q1, "a")
    ex.bind(Q1, "b", {"x": 1})
    ex.bind(Q2, "a")
    assert ex.unbind_destination(Q1) == 2
    assert ex.route("a", no_headers) == {Q2}
    assert ex.unbind_destination(Q2) == 1
    assert ex.unbind_destination(Q2) == 0
    assert not ex.has_bindings()
    assert list(ex.bindings()) == []


def test_has_binding_and_listing() -> None:
    ex = FanoutExchange("f")
    ex.bind(Q1, "k", {"x": "y"})
    assert ex.has_bindings()
    assert ex.has_binding(Q1, "k", {"x": b"y"})
    assert not ex.has_binding(Q1, "")
    assert list(ex.bindings()) == [(Q1, "k", {"x": "y"})]
    assert ex.type_name == "fanout"
