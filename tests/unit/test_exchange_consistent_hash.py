"""x-consistent-hash as a plain object: weights, the documented stable mapping, spread.

Covers: binding keys 1..10000 (406 worded as RabbitMQ's plugin otherwise); only a
destination's first binding counts (and the next takes over when it goes); hash-header,
x-hash-on (LavinMQ) and hash-property choose what is hashed, a message lacking it still
reaches exactly one destination; mutually exclusive / unknown property -> 406; the key ->
destination mapping is a fixed function (golden values, and the same in a process with
another PYTHONHASHSEED); adding a queue moves about 1/N of keys, all to the new queue;
8 equal queues and 100,000 random UUIDs spread within 5%; weights share keys in proportion.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest

from warrenmq.errors import PreconditionFailed
from warrenmq.exchange.consistent_hash import (
    ConsistentHashExchange,
    jump_hash,
    key_hash,
    parse_weight,
)
from warrenmq.exchange.registry import create_exchange
from warrenmq.message import Message
from warrenmq.protocol.properties import encode_properties

ROOT = Path(__file__).resolve().parents[2]


def exchange(n: int = 0, weight: str = "1", **arguments: object) -> ConsistentHashExchange:
    x = create_exchange("x-consistent-hash", "chx", arguments=arguments or None)
    assert isinstance(x, ConsistentHashExchange)
    for i in range(n):
        x.bind(f"q{i}", weight)
    return x


def route(x: ConsistentHashExchange, key: str) -> str:
    found = x.route(key, lambda: None)
    assert len(found) == 1
    return str(next(iter(found)))


def uuids(count: int, seed: int = 13) -> list[str]:
    rnd = random.Random(seed)
    return [str(uuid.UUID(int=rnd.getrandbits(128), version=4)) for _ in range(count)]


@pytest.mark.parametrize(("key", "text"), [
    ("abc", 'The binding key must be an integer: <<"abc">>'),
    ("", 'The binding key must be an integer: <<"">>'),
    ("1.5", 'The binding key must be an integer: <<"1.5">>'),
    ("0", "The binding key must be greater than 0"),
    ("-3", "The binding key must be greater than 0"),
    ("10001", "The binding key must be less than or equal to 10000"),
])
def test_bad_weights_are_refused_in_the_plugins_words(key: str, text: str) -> None:
    with pytest.raises(PreconditionFailed) as info:
        exchange().bind("q", key)
    assert info.value.text == text


def test_weights_in_range_are_accepted() -> None:
    assert [parse_weight(k) for k in ("1", "10000", " 7 ")] == [1, 10000, 7]


def test_only_the_first_binding_of_a_queue_counts() -> None:
    x = exchange()
    x.bind("a", "1")
    x.bind("b", "1")
    x.bind("a", "5")  # kept (listed) but not counted
    assert x.weights() == [("a", 1), ("b", 1)]
    assert len(list(x.bindings())) == 3
    x.unbind("a", "1")  # the oldest remaining binding of "a" takes over
    assert x.weights() == [("a", 5), ("b", 1)]
    x.unbind_destination("a")
    assert x.weights() == [("b", 1)]


def test_golden_mapping_is_a_fixed_function() -> None:
    # BLAKE2b-64 (little-endian) of the key, then jump consistent hash: these never change
    for key in (b"", b"a", b"customer-42"):
        assert key_hash(key) == int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(),
                                               "little")
    assert key_hash(b"") == 0xB4B2797457A0A6E4
    golden = {key: jump_hash(key_hash(key.encode()), 8) for key in ("a", "customer-42", "")}
    assert golden == GOLDEN
    x = exchange(8)
    assert {k: route(x, k) for k in GOLDEN} == {k: f"q{b}" for k, b in GOLDEN.items()}


GOLDEN = {"a": 3, "customer-42": 2, "": 6}


def test_same_mapping_in_another_process_with_another_hash_seed() -> None:
    keys = uuids(200)
    here = [route(exchange(5), k) for k in keys]
    code = ("import sys, json; from tests.unit.test_exchange_consistent_hash import exchange,"
            " route, uuids; print(json.dumps([route(exchange(5), k) for k in uuids(200)]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONHASHSEED": "12345", "WARRENMQ_PURE": "1"},
                         timeout=60, check=True)
    assert json.loads(out.stdout) == here


def test_adding_a_queue_moves_about_one_nth_of_keys_all_to_it() -> None:
    keys = uuids(20_000)
    before = exchange(7)
    after = exchange(8)
    moved = [(route(before, k), route(after, k)) for k in keys]
    changed = [(a, b) for a, b in moved if a != b]
    assert all(b == "q7" for _, b in changed)
    share = len(changed) / len(keys)
    assert abs(share - 1 / 8) < 0.01, share


def test_eight_queues_and_100k_uuids_spread_within_5_percent() -> None:
    x = exchange(8)
    counts = Counter(route(x, k) for k in uuids(100_000))
    assert len(counts) == 8
    spread = max(counts.values()) / min(counts.values()) - 1
    assert spread < 0.05, (spread, counts)


def test_weights_share_keys_in_proportion() -> None:
    x = exchange()
    x.bind("light", "1")
    x.bind("heavy", "3")
    counts = Counter(route(x, k) for k in uuids(40_000))
    assert abs(counts["heavy"] / counts["light"] - 3) < 0.15, counts


def message(routing_key: str = "rk", **props: object) -> Message:
    return Message("chx", routing_key, routing_key.encode(), encode_properties(props), b"body")


@pytest.mark.parametrize("spelling", ["hash-header", "x-hash-on"])
def test_hash_on_a_header(spelling: str) -> None:
    x = exchange(8, **{spelling: "customer"})
    assert not x.routes_message  # headers take the cheap route(key, headers) path
    for key in uuids(50):
        m = message(routing_key=str(uuid.uuid4()), headers={"customer": key})
        assert x.route(m.routing_key, m.headers) == {route(exchange(8), key)}
    assert len(x.route("rk", lambda: None)) == 1  # lacking the header: exactly one queue
    assert len(x.route("rk", lambda: {"other": 1})) == 1


@pytest.mark.parametrize(("prop", "value"), [("message_id", "m-1"),
                                             ("correlation_id", "c-9"),
                                             ("timestamp", 1_700_000_000)])
def test_hash_on_a_property(prop: str, value: object) -> None:
    x = exchange(8, **{"hash-property": prop})
    assert x.routes_message
    m = message(routing_key=str(uuid.uuid4()), **{prop: value})
    assert x.route_message(m) == {route(exchange(8), str(value))}
    assert len(x.route_message(message())) == 1  # lacking the property: exactly one queue


@pytest.mark.parametrize(("arguments", "text"), [
    ({"hash-header": "h", "hash-property": "message_id"},
     "hash-header and hash-property are mutually exclusive"),
    ({"x-hash-on": "h", "hash-property": "message_id"},
     "hash-header and hash-property are mutually exclusive"),
    ({"hash-property": "user_id"}, "Unsupported property: user_id"),
    ({"hash-header": 5}, "hash-header must be a non-empty string, got 5"),
])
def test_bad_arguments_are_refused_at_declare(arguments: dict[str, object], text: str) -> None:
    with pytest.raises(PreconditionFailed) as info:
        exchange(**arguments)
    assert info.value.text == text


def test_no_bindings_routes_nowhere() -> None:
    assert exchange().route("k", lambda: None) == set()
