"""queues/priority.py: reading the priority property from raw bytes, and the
PriorityReadyList's order, byte counts, tombstones and batch take; queues/arguments.py:
x-max-priority and x-single-active-consumer validation (RabbitMQ 3.10.8's limits; its
reply texts are Erlang terms, ours say the same in words after its common prefix)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warrenmq.errors import PreconditionFailed
from warrenmq.message import Message
from warrenmq.protocol.properties import encode_properties, get_property
from warrenmq.queues.arguments import parse_arguments
from warrenmq.queues.priority import PriorityReadyList, message_priority
from warrenmq.queues.ready import DEAD, QueuedMessage, ReadyList

ROUTE = b"\x00\x01q"

PROPERTY_SETS = st.fixed_dictionaries({}, optional={
    "content_type": st.text(max_size=20),
    "content_encoding": st.text(max_size=20),
    "headers": st.dictionaries(st.text(max_size=10), st.integers(-(2**31), 2**31 - 1),
                               max_size=4),
    "delivery_mode": st.integers(1, 2),
    "priority": st.integers(0, 255),
    "correlation_id": st.text(max_size=10),
    "expiration": st.sampled_from(["1000", "60000"]),
})


@given(PROPERTY_SETS)
def test_message_priority_reads_what_the_codec_reads(props: dict[str, Any]) -> None:
    raw = encode_properties(props)
    assert message_priority(raw) == (get_property(raw, "priority") or 0)


def test_message_priority_of_empty_or_short_properties_is_zero() -> None:
    assert message_priority(b"") == 0
    assert message_priority(b"\x00\x00") == 0


def qm(seq: int, priority: int | None, body: bytes = b"x") -> QueuedMessage:
    props = encode_properties({"priority": priority})
    return QueuedMessage(Message("", "q", ROUTE, props, body), seq)


def drain(ready: ReadyList) -> list[int]:
    out = []
    while len(ready):
        out.append(ready.pop().seq)
    return out


def test_higher_first_fifo_within_a_level_and_clamped_to_the_maximum() -> None:
    ready = PriorityReadyList(3)
    for seq, priority in enumerate([None, 1, 3, 9, 0, 2, 3, None, 1]):
        ready.append(qm(seq, priority))
    assert len(ready) == 9
    # 3 and 9 (clamped to 3) first in publish order, then 2, 1, then none/0 alike
    assert drain(ready) == [2, 3, 6, 5, 1, 8, 0, 4, 7]
    assert ready.bytes == 0 and ready.resident == 0


def test_put_back_returns_to_the_original_place_in_its_level() -> None:
    ready = PriorityReadyList(5)
    msgs = [qm(seq, p) for seq, p in enumerate([1, 1, 2, 2, 0])]
    for m in msgs:
        ready.append(m)
    first, second, third = ready.pop(), ready.pop(), ready.pop()
    assert [first.seq, second.seq, third.seq] == [2, 3, 0]
    ready.put_back(third)
    ready.put_back(first)
    assert drain(ready) == [2, 0, 1, 4]


def test_evict_takes_the_oldest_of_the_lowest_level() -> None:
    ready = PriorityReadyList(5)
    for seq, priority in enumerate([5, 1, 3, 1, 2]):
        ready.append(qm(seq, priority))
    assert ready.evict().seq == 1
    assert ready.evict().seq == 3
    assert drain(ready) == [0, 2, 4]
    with pytest.raises(IndexError):
        ready.evict()


def test_plain_ready_list_evicts_its_head() -> None:
    ready = ReadyList()
    for seq in range(3):
        ready.append(qm(seq, 7))
    assert ready.evict().seq == 0


def test_kill_in_place_head_take_all_and_clear() -> None:
    ready = PriorityReadyList(2)
    msgs = [qm(seq, p, b"b" * (seq + 1)) for seq, p in enumerate([0, 2, 1, 2])]
    for m in msgs:
        ready.append(m)
    assert ready.bytes == 1 + 2 + 3 + 4
    head = ready.head()
    assert head is not None and head.seq == 1
    ready.kill(msgs[1])
    assert msgs[1].state == DEAD
    assert len(ready) == 3 and ready.bytes == 1 + 3 + 4
    head = ready.head()
    assert head is not None and head.seq == 3
    assert ready.take_all(10) is None  # three levels hold messages: not trivially in order
    assert sorted(m.seq for m in ready) == [0, 2, 3]
    assert ready.clear() == 3
    assert len(ready) == 0 and ready.bytes == 0 and ready.head() is None
    one_level = PriorityReadyList(2)
    for seq in range(3):
        one_level.append(qm(seq, 1))
    assert one_level.take_all(2) is None  # over the limit
    taken = one_level.take_all(3)
    assert taken is not None and [m.seq for m in taken] == [0, 1, 2]
    assert len(one_level) == 0 and one_level.bytes == 0


WHERE = "queue 'q' in vhost '/'"


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (1, 1), (10, 10), (255, 255)])
def test_max_priority_accepted(value: int, expected: int) -> None:
    assert parse_arguments({"x-max-priority": value}, WHERE).max_priority == expected


@pytest.mark.parametrize(("value", "problem"), [
    (256, "value must be at most 255, got 256"),
    (2**40, "value must be at most 255, got 1099511627776"),
    (-1, "value must not be negative, got -1"),
    ("5", "expected an integer, got str '5'"),
    (5.0, "expected an integer, got float 5.0"),
    (True, "expected an integer, got bool True"),
    (None, "expected an integer, got NoneType None"),
])
def test_max_priority_refused(value: object, problem: str) -> None:
    with pytest.raises(PreconditionFailed) as caught:
        parse_arguments({"x-max-priority": value}, WHERE)
    assert caught.value.text == f"invalid arg 'x-max-priority' for {WHERE}: {problem}"


@pytest.mark.parametrize("value", [1, 0, "true", None])
def test_single_active_consumer_must_be_a_boolean(value: object) -> None:
    with pytest.raises(PreconditionFailed) as caught:
        parse_arguments({"x-single-active-consumer": value}, WHERE)
    assert caught.value.text.startswith(
        f"invalid arg 'x-single-active-consumer' for {WHERE}: expected a boolean, got ")
    assert parse_arguments({"x-single-active-consumer": True}, WHERE).single_active_consumer
    assert not parse_arguments({"x-single-active-consumer": False},
                               WHERE).single_active_consumer


@pytest.mark.parametrize("key", ["max-priority", "single-active-consumer"])
def test_no_policy_sets_them(key: str) -> None:
    """RabbitMQ 3.10.8: "[{<<"max-priority">>,5}] are not recognised policy settings"."""
    from warrenmq.broker.policies import Policy

    with pytest.raises(ValueError, match=f"policy key '{key}' is not a recognised policy"):
        Policy("p", "/", ".*", definition={key: 5})
