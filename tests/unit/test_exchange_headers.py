"""Headers exchange routing: x-match modes, value typing, and binding validation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from tests.helpers import Q1, Q2
from warrenmq.errors import PreconditionFailed, ReplyCode
from warrenmq.exchange import HeadersExchange

Headers = Mapping[str, Any] | None


def headers(table: Headers) -> Callable[[], Headers]:
    return lambda: table


def routes(binding: dict[str, Any], table: Headers) -> bool:
    ex = HeadersExchange("h")
    ex.bind(Q1, "", binding)
    return ex.route("ignored", headers(table)) == {Q1}


def test_all_is_the_default_and_needs_every_field() -> None:
    binding = {"format": "pdf", "type": "report"}
    assert routes(binding, {"format": "pdf", "type": "report"})
    assert routes(binding, {"format": "pdf", "type": "report", "extra": 1})
    assert not routes(binding, {"format": "pdf"})
    assert not routes(binding, {"format": "pdf", "type": "log"})
    assert routes({"x-match": "all", **binding}, {"format": "pdf", "type": "report"})
    assert not routes({"x-match": "all", **binding}, {"type": "report"})


def test_any_needs_one_field() -> None:
    binding = {"x-match": "any", "format": "pdf", "type": "report"}
    assert routes(binding, {"format": "pdf"})
    assert routes(binding, {"type": "report", "format": "zip"})
    assert not routes(binding, {"format": "zip", "type": "log"})
    assert not routes(binding, {"other": "pdf"})


def test_routing_key_is_ignored() -> None:
    ex = HeadersExchange("h")
    ex.bind(Q1, "some.key", {"a": 1})
    assert ex.route("other.key", headers({"a": 1})) == {Q1}
    assert ex.route("", headers({"a": 1})) == {Q1}


def test_x_arguments_are_ignored_by_all_and_any() -> None:
    assert routes({"x-match": "all", "x-custom": "v", "a": 1}, {"a": 1})
    assert not routes({"x-match": "any", "x-custom": "v"}, {"x-custom": "v"})
    assert routes({"x-match": "any", "x-custom": "v", "a": 1}, {"a": 1})


def test_with_x_variants_compare_x_arguments() -> None:
    assert not routes({"x-match": "all-with-x", "x-custom": "v", "a": 1}, {"a": 1})
    assert routes({"x-match": "all-with-x", "x-custom": "v", "a": 1}, {"a": 1, "x-custom": "v"})
    assert routes({"x-match": "any-with-x", "x-custom": "v", "a": 1}, {"x-custom": "v"})
    assert not routes({"x-match": "any-with-x", "x-custom": "v"}, {"x-custom": "w"})


def test_x_match_itself_never_participates() -> None:
    assert routes({"x-match": "all-with-x", "a": 1}, {"a": 1})
    assert not routes({"x-match": "any-with-x"}, {"x-match": "any-with-x"})
    assert routes({"x-match": "all-with-x"}, {})


def test_all_with_no_fields_matches_everything_any_matches_nothing() -> None:
    # rabbit_exchange_type_headers: all starts true, any starts false.
    assert routes({}, None)
    assert routes({"x-match": "all"}, {"anything": 1})
    assert routes({"x-match": "all", "x-ignored": 1}, {})
    assert not routes({"x-match": "any"}, {"anything": 1})
    assert not routes({"x-match": "any", "x-ignored": 1}, {"x-ignored": 1})


def test_void_value_matches_presence() -> None:
    assert routes({"flag": None}, {"flag": "any value"})
    assert routes({"flag": None}, {"flag": None})
    assert routes({"flag": None}, {"flag": 0})
    assert not routes({"flag": None}, {"other": 1})
    assert routes({"x-match": "any", "flag": None, "b": 2}, {"flag": False})
    assert not routes({"x-match": "all", "flag": None, "b": 2}, {"flag": False})


def test_void_header_only_matches_void_or_presence() -> None:
    assert not routes({"a": 1}, {"a": None})
    assert not routes({"a": ""}, {"a": None})


def test_bool_is_not_int() -> None:
    assert not routes({"a": True}, {"a": 1})
    assert not routes({"a": 1}, {"a": True})
    assert not routes({"a": 0}, {"a": False})
    assert routes({"a": True}, {"a": True})
    assert routes({"a": 1}, {"a": 1})


def test_numbers_compare_numerically_like_erlang() -> None:
    # RabbitMQ compares values with Erlang ==, where 1 == 1.0.
    assert routes({"a": 1}, {"a": 1.0})
    assert not routes({"a": 1}, {"a": 2})
    assert not routes({"a": 1}, {"a": "1"})
    assert routes({"a": Decimal("1.5")}, {"a": Decimal("1.5")})
    assert not routes({"a": Decimal("1")}, {"a": 1})


def test_str_and_bytes_are_the_same_longstr() -> None:
    assert routes({"a": "café"}, {"a": "café".encode()})
    assert routes({"a": b"pdf"}, {"a": "pdf"})
    assert not routes({"a": b"pdf"}, {"a": "zip"})
    assert routes({"a": b"\xff"}, {"a": b"\xff"})
    assert not routes({"a": b"\xff"}, {"a": "\xff"})


def test_nested_values_compare_by_value() -> None:
    assert routes({"a": [1, "x", {"k": b"v"}]}, {"a": [1, b"x", {"k": "v"}]})
    assert not routes({"a": [1]}, {"a": [True]})
    assert routes({"t": datetime(2024, 1, 2)}, {"t": datetime(2024, 1, 2)})


def test_missing_headers_are_empty() -> None:
    assert not routes({"a": 1}, None)
    assert not routes({"a": 1}, {})
    assert not routes({"x-match": "any", "a": 1}, None)


def test_headers_are_decoded_lazily() -> None:
    calls: list[int] = []

    def getter() -> Headers:
        calls.append(1)
        return {"a": 1}

    ex = HeadersExchange("h")
    assert ex.route("", getter) == set()
    assert calls == []
    ex.bind(Q1, "", {"a": 1})
    ex.bind(Q2, "", {"a": 1})
    assert ex.route("", getter) == {Q1, Q2}
    assert calls == [1]


@pytest.mark.parametrize("mode", ["all", "any", "all-with-x", "any-with-x", b"any"])
def test_valid_x_match_values(mode: str | bytes) -> None:
    ex = HeadersExchange("h")
    ex.validate_binding("", {"x-match": mode})
    assert ex.bind(Q1, "", {"x-match": mode, "a": 1})
    assert ex.route("", headers({"a": 1})) == {Q1}


@pytest.mark.parametrize("mode", ["ALL", "none", "", "all-with-y", b"\xff"])
def test_invalid_x_match_value(mode: str | bytes) -> None:
    ex = HeadersExchange("h")
    with pytest.raises(PreconditionFailed) as info:
        ex.bind(Q1, "", {"x-match": mode})
    assert info.value.reply_code is ReplyCode.PRECONDITION_FAILED
    assert int(info.value.reply_code) == 406
    assert info.value.text.startswith("Invalid x-match field value")
    assert not ex.has_bindings()


@pytest.mark.parametrize("mode", [1, True, None, ["all"]])
def test_invalid_x_match_type(mode: object) -> None:
    ex = HeadersExchange("h")
    with pytest.raises(PreconditionFailed) as info:
        ex.validate_binding("", {"x-match": mode})
    assert info.value.text.startswith("Invalid x-match field type")


def test_bind_unbind_duplicates_and_destinations() -> None:
    ex = HeadersExchange("h")
    assert ex.bind(Q1, "", {"a": 1})
    assert ex.bind(Q1, "", {"a": 1}) is False
    assert ex.bind(Q1, "", {"b": 2})
    assert ex.bind(Q2, "", {"x-match": "any", "a": 1, "b": 2})
    assert ex.route("", headers({"a": 1, "b": 2})) == {Q1, Q2}
    assert ex.route("", headers({"b": 2})) == {Q1, Q2}
    assert ex.unbind(Q1, "", {"b": 2})
    assert ex.unbind(Q1, "", {"b": 2}) is False
    assert ex.route("", headers({"b": 2})) == {Q2}
    assert ex.has_binding(Q1, "", {"a": 1})
    assert ex.unbind_destination(Q1) == 1
    assert ex.route("", headers({"a": 1})) == {Q2}
    assert ex.has_bindings()
    assert ex.unbind_destination(Q2) == 1
    assert not ex.has_bindings()
    assert ex.route("", headers({"a": 1})) == set()
    assert ex.type_name == "headers"
