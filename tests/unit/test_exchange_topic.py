"""Topic exchange routing: RabbitMQ's own cases, edge cases, and a model-based comparison."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warrenmq.exchange import TopicExchange, split_topic_key

Q1 = ("queue", "q1")
Q2 = ("queue", "q2")


def no_headers() -> Mapping[str, Any] | None:
    raise AssertionError("only the headers exchange may decode headers")


def queues(*names: str) -> set[tuple[str, str]]:
    return {("queue", name) for name in names}


# deps/rabbit/test/routing_SUITE.erl (topic1) in rabbitmq-server: bindings, in order.
RABBIT_BINDINGS: list[tuple[str, str, dict[str, Any]]] = [
    ("a.b.c", "t1", {}),
    ("a.*.c", "t2", {}),
    ("a.#.b", "t3", {}),
    ("a.b.b.c", "t4", {}),
    ("#", "t5", {}),
    ("#.#", "t6", {}),
    ("#.b", "t7", {}),
    ("*.*", "t8", {}),
    ("a.*", "t9", {}),
    ("*.b.c", "t10", {}),
    ("a.#", "t11", {}),
    ("a.#.#", "t12", {}),
    ("b.b.c", "t13", {}),
    ("a.b.b", "t14", {}),
    ("a.b", "t15", {}),
    ("b.c", "t16", {}),
    ("", "t17", {}),
    ("*.*.*", "t18", {}),
    ("vodka.martini", "t19", {}),
    ("a.b.c", "t20", {}),
    ("*.#", "t21", {}),
    ("#.*.#", "t22", {}),
    ("*.#.#", "t23", {}),
    ("#.#.#", "t24", {}),
    ("*", "t25", {}),
    ("#.b.#", "t26", {}),
    ("args-test", "t27", {"foo": "bar"}),
    ("args-test", "t27", {"foo": "baz"}),
]

# Expected destinations per routing key, space-separated.
RABBIT_EXPECTED_BEFORE = {
    "a.b.c": "t1 t2 t5 t6 t10 t11 t12 t18 t20 t21 t22 t23 t24 t26",
    "a.b": "t3 t5 t6 t7 t8 t9 t11 t12 t15 t21 t22 t23 t24 t26",
    "a.b.b": "t3 t5 t6 t7 t11 t12 t14 t18 t21 t22 t23 t24 t26",
    "": "t5 t6 t17 t24",
    "b.c.c": "t5 t6 t18 t21 t22 t23 t24 t26",
    "a.a.a.a.a": "t5 t6 t11 t12 t21 t22 t23 t24",
    "vodka.gin": "t5 t6 t8 t21 t22 t23 t24",
    "vodka.martini": "t5 t6 t8 t19 t21 t22 t23 t24",
    "b.b.c": "t5 t6 t10 t13 t18 t21 t22 t23 t24 t26",
    "nothing.here.at.all": "t5 t6 t21 t22 t23 t24",
    "oneword": "t5 t6 t21 t22 t23 t24 t25",
    "args-test": "t5 t6 t21 t22 t23 t24 t25 t27",
}

RABBIT_REMOVED = [1, 5, 11, 19, 21, 28]  # 1-based, as lists:nth in the suite

RABBIT_EXPECTED_AFTER = {
    "a.b.c": "t2 t6 t10 t12 t18 t20 t22 t23 t24 t26",
    "a.b": "t3 t6 t7 t8 t9 t12 t15 t22 t23 t24 t26",
    "a.b.b": "t3 t6 t7 t12 t14 t18 t22 t23 t24 t26",
    "": "t6 t17 t24",
    "b.c.c": "t6 t18 t22 t23 t24 t26",
    "a.a.a.a.a": "t6 t12 t22 t23 t24",
    "vodka.gin": "t6 t8 t22 t23 t24",
    "vodka.martini": "t6 t8 t22 t23 t24",
    "b.b.c": "t6 t10 t13 t18 t22 t23 t24 t26",
    "nothing.here.at.all": "t6 t22 t23 t24",
    "oneword": "t6 t22 t23 t24 t25",
    "args-test": "t6 t22 t23 t24 t25 t27",
}


def test_rabbitmq_routing_suite() -> None:
    ex = TopicExchange("topic_matching-exchange")
    for key, name, args in RABBIT_BINDINGS:
        assert ex.bind(("queue", name), key, args)
    for routing_key, expected in RABBIT_EXPECTED_BEFORE.items():
        assert ex.route(routing_key, no_headers) == queues(*expected.split()), routing_key
    for position in RABBIT_REMOVED:
        key, name, args = RABBIT_BINDINGS[position - 1]
        assert ex.unbind(("queue", name), key, args)
    for routing_key, expected in RABBIT_EXPECTED_AFTER.items():
        assert ex.route(routing_key, no_headers) == queues(*expected.split()), routing_key


@pytest.mark.parametrize(
    ("pattern", "routing_key", "matches"),
    [
        ("a.b.c", "a.b.c", True),
        ("a.*.c", "a.b.c", True),
        ("a.*.c", "a.c", False),
        ("a.*.c", "a.b.b.c", False),
        ("#", "", True),
        ("#", "a", True),
        ("#", "a.b.c", True),
        ("a.#", "a", True),
        ("a.#", "a.b.c", True),
        ("a.#", "b", False),
        ("#.a", "a", True),
        ("#.a", "b.b.a", True),
        ("#.a", "a.b", False),
        ("a.#.b", "a.b", True),
        ("a.#.b", "a.x.y.b", True),
        ("a.#.b", "a.b.c", False),
        ("a.#.#.b", "a.b", True),
        ("a.#.#.b", "a.x.b", True),
        ("a.#.#.b", "a.x.y.z.b", True),
        ("*.*", "a.b", True),
        ("*.*", "a", False),
        ("*.*", "a.b.c", False),
        ("*", "", False),
        ("*", "a", True),
        ("", "", True),
        ("", "a", False),
        ("#.*", "", False),
        ("#.*", "a", True),
        ("*.#", "", False),
        # Empty words are words: "a." is ["a", ""], "." is ["", ""].
        ("a.*", "a.", True),
        ("a.", "a.", True),
        ("a.", "a", False),
        ("*.*", ".", True),
        ("*", ".", False),
        ("a..b", "a..b", True),
        ("a.*.b", "a..b", True),
        ("a.#", "a..", True),
        ("#.", "a.", True),
        # A literal "*" or "#" in a routing key is just a word.
        ("a.b", "a.*", False),
        ("*", "#", True),
        ("a.#", "a.#", True),
    ],
)
def test_pattern_cases(pattern: str, routing_key: str, matches: bool) -> None:
    ex = TopicExchange("t")
    ex.bind(Q1, pattern)
    assert ex.route(routing_key, no_headers) == ({Q1} if matches else set())


def test_split_topic_key() -> None:
    assert split_topic_key("") == []
    assert split_topic_key("a") == ["a"]
    assert split_topic_key("a.b") == ["a", "b"]
    assert split_topic_key("a.") == ["a", ""]
    assert split_topic_key(".") == ["", ""]


def test_bind_unbind_duplicates_and_destinations() -> None:
    ex = TopicExchange("t")
    assert ex.bind(Q1, "a.*")
    assert ex.bind(Q1, "a.*") is False
    assert ex.bind(Q1, "#.b")
    assert ex.bind(Q2, "a.b")
    assert ex.route("a.b", no_headers) == {Q1, Q2}
    assert ex.unbind(Q1, "a.*")
    assert ex.route("a.b", no_headers) == {Q1, Q2}
    assert ex.route("a.c", no_headers) == set()
    assert ex.unbind(Q1, "a.*") is False
    assert ex.unbind_destination(Q1) == 1
    assert ex.route("a.b", no_headers) == {Q2}
    assert ex.has_bindings()
    assert ex.has_binding(Q2, "a.b")
    assert not ex.has_binding(Q2, "a.*")
    assert ex.unbind_destination(Q2) == 1
    assert not ex.has_bindings()
    assert ex.route("a.b", no_headers) == set()


def test_unbinding_prunes_the_trie() -> None:
    ex = TopicExchange("t")
    keys = ["a.b.c", "a.*.#", "#", "#.x.#", "", "a..b", "*.*"]
    for index, key in enumerate(keys):
        ex.bind(("queue", f"q{index}"), key)
        ex.bind(("queue", f"q{index}"), key, {"alias": 1})
    for index, key in enumerate(keys):
        ex.unbind(("queue", f"q{index}"), key)
    assert not ex._root.is_empty()
    for index in range(len(keys)):
        assert ex.unbind_destination(("queue", f"q{index}")) == 1
    assert ex._root.is_empty()
    assert not ex.has_bindings()


def test_cache_is_invalidated_by_bind_and_unbind() -> None:
    ex = TopicExchange("t")
    assert ex.route("a.b", no_headers) == set()
    ex.bind(Q1, "a.*")
    assert ex.route("a.b", no_headers) == {Q1}
    assert ex.route("a.b", no_headers) == {Q1}
    ex.bind(Q2, "#")
    assert ex.route("a.b", no_headers) == {Q1, Q2}
    ex.unbind(Q1, "a.*")
    assert ex.route("a.b", no_headers) == {Q2}
    ex.unbind_destination(Q2)
    assert ex.route("a.b", no_headers) == set()


def test_cache_is_bounded_and_results_are_caller_owned() -> None:
    ex = TopicExchange("t")
    ex.bind(Q1, "#")
    for index in range(TopicExchange.CACHE_SIZE * 2 + 3):
        assert ex.route(f"k.{index}", no_headers) == {Q1}
        assert len(ex._cache) <= TopicExchange.CACHE_SIZE
    ex.route("k.0", no_headers).add(Q2)
    assert ex.route("k.0", no_headers) == {Q1}


@pytest.mark.timeout(5)
def test_many_hash_patterns_do_not_blow_up() -> None:
    ex = TopicExchange("t")
    for index in range(200):
        ex.bind(("queue", f"q{index}"), f"#.#.#.#.x{index}")
        ex.bind(("queue", f"r{index}"), f"#.*.#.*.#.x{index}.#")
    words = [f"w{index}" for index in range(29)]
    assert ex.route(".".join([*words, "x7"]), no_headers) == {("queue", "q7"), ("queue", "r7")}
    assert ex.route(".".join(words), no_headers) == set()
    assert ex.route(".".join(["x3", *words]), no_headers) == set()
    assert ex.route(".".join([*words[:5], "x3", *words[5:]]), no_headers) == {("queue", "r3")}


# ----- model-based comparison with a naive recursive matcher -----

PATTERN_WORDS = ["a", "b", "c", "", "*", "#"]
KEY_WORDS = ["a", "b", "c", ""]
DESTINATIONS = [("queue", f"q{index}") for index in range(4)] + [("exchange", "x")]


def naive_match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(naive_match(rest, words[skip:]) for skip in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and naive_match(rest, words[1:])


def naive_route(bindings: set[tuple[Any, str]], routing_key: str) -> set[Any]:
    words = split_topic_key(routing_key)
    return {dest for dest, pattern in bindings if naive_match(split_topic_key(pattern), words)}


patterns = st.lists(st.sampled_from(PATTERN_WORDS), max_size=5).map(".".join)
routing_keys = st.lists(st.sampled_from(KEY_WORDS), max_size=6).map(".".join)
destinations = st.sampled_from(DESTINATIONS)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("bind"), destinations, patterns),
        st.tuples(st.just("unbind"), st.integers(min_value=0, max_value=50), patterns),
        st.tuples(st.just("unbind-destination"), destinations, st.just("")),
        st.tuples(st.just("route"), st.just(None), routing_keys),
    ),
    max_size=40,
)
PROBE_KEYS = [
    ".".join(words) for length in range(4) for words in itertools.product(KEY_WORDS, repeat=length)
]


def apply_operation(
    ex: TopicExchange, model: set[tuple[Any, str]], operation: tuple[str, Any, str]
) -> None:
    kind, target, text = operation
    if kind == "bind":
        assert ex.bind(target, text) == ((target, text) not in model)
        model.add((target, text))
    elif kind == "unbind":
        if model and target % 2 == 0:
            chosen = sorted(model, key=repr)[target % len(model)]
        else:
            chosen = (DESTINATIONS[target % len(DESTINATIONS)], text)
        assert ex.unbind(*chosen) == (chosen in model)
        model.discard(chosen)
    elif kind == "unbind-destination":
        doomed = {binding for binding in model if binding[0] == target}
        assert ex.unbind_destination(target) == len(doomed)
        model -= doomed
    for _ in range(2):
        assert ex.route(text, no_headers) == naive_route(model, text)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_trie_agrees_with_naive_matcher(ops: list[tuple[str, Any, str]]) -> None:
    ex = TopicExchange("t")
    model: set[tuple[Any, str]] = set()
    for operation in ops:
        apply_operation(ex, model, operation)
    assert ex.has_bindings() == bool(model)
    assert {(dest, key) for dest, key, _ in ex.bindings()} == model
    for key in PROBE_KEYS:
        assert ex.route(key, no_headers) == naive_route(model, key), key
    for dest, pattern in list(model):
        ex.unbind(dest, pattern)
    assert ex._root.is_empty()
