"""Unacked (server/unacked.py): a channel's unsettled deliveries by tag, kept in a list."""

from __future__ import annotations

import random

import pytest

from warrenmq.errors import PreconditionFailed
from warrenmq.message import Message
from warrenmq.queues.ready import QueuedMessage
from warrenmq.server.unacked import Unacked


def qms(count: int, start: int = 0) -> list[QueuedMessage]:
    message = Message("", "q", b"\x00\x01q", b"\x00\x00", b"body")
    return [QueuedMessage(message, start + i) for i in range(count)]


def test_multiple_takes_the_prefix_in_tag_order() -> None:
    held = Unacked()
    batch = qms(10)
    held.extend(1, batch)
    assert held.take(4, multiple=True) == batch[:4]
    assert len(held) == 6
    assert held.take(0, multiple=True) == batch[4:]
    assert len(held) == 0


def test_single_acks_out_of_order_leave_holes_that_multiple_skips() -> None:
    held = Unacked()
    batch = qms(6)
    held.extend(1, batch)
    assert held.take(3, multiple=False) == [batch[2]]
    assert held.take(5, multiple=False) == [batch[4]]
    assert held.take(6, multiple=True) == [batch[0], batch[1], batch[3], batch[5]]
    assert held.values() == []


@pytest.mark.parametrize(("tag", "multiple"), [(3, False), (3, True), (99, True), (0, False)])
def test_an_unknown_tag_is_406(tag: int, multiple: bool) -> None:
    held = Unacked()
    batch = qms(4)
    held.extend(1, batch)
    held.take(3, multiple=False)
    with pytest.raises(PreconditionFailed, match=f"unknown delivery tag {tag}"):
        held.take(tag, multiple)


def test_tags_of_deliveries_without_ack_are_holes_only_while_something_is_held() -> None:
    held = Unacked()
    first = qms(2)
    held.extend(5, first)  # tags 5, 6; tags 7..9 went to a no_ack consumer
    later = qms(2, 10)
    held.extend(10, later)
    with pytest.raises(PreconditionFailed):
        held.take(8, multiple=False)
    assert held.take(10, multiple=True) == [*first, later[0]]
    assert held.take(11, multiple=False) == [later[1]]
    held.extend(40, first)  # empty: no holes kept for 12..39
    assert held.take(40, multiple=True) == [first[0]]


def test_random_operations_match_a_dict_model() -> None:
    rng = random.Random(11)
    held = Unacked()
    model: dict[int, QueuedMessage] = {}
    tag = 1
    for _ in range(3000):
        op = rng.random()
        if op < 0.45:
            batch = qms(rng.randint(1, 5), tag)
            if rng.random() < 0.2:
                tag += rng.randint(1, 3)  # no_ack deliveries in between
            held.extend(tag, batch)
            for i, qm in enumerate(batch):
                model[tag + i] = qm
            tag += len(batch)
        elif model:
            target = rng.choice(sorted(model))
            multiple = op > 0.75
            expected = [model.pop(t) for t in sorted(model) if t <= target] if multiple \
                else [model.pop(target)]
            assert held.take(target, multiple) == expected
        assert len(held) == len(model)
        assert held.values() == [model[t] for t in sorted(model)]
    assert held.take_all() == [model[t] for t in sorted(model)]


def test_items_and_restore_put_taken_entries_back_by_tag() -> None:
    """A transaction's rollback: entries taken by an ack come back under their tags."""
    unacked = Unacked()
    qms = [QueuedMessage(Message("", "k", b"", b"\x00\x00", b""), n) for n in range(5)]
    unacked.extend(1, qms[:3])
    unacked.extend(5, qms[3:])  # tag 4 was a no_ack delivery: a hole
    assert [tag for tag, _ in unacked.items()] == [1, 2, 3, 5, 6]
    first = unacked.take(2, multiple=True)
    middle = unacked.take(5, multiple=False)
    assert [tag for tag, _ in unacked.items()] == [3, 6]
    unacked.restore([(1, first[0]), (2, first[1]), (5, middle[0])])
    assert unacked.items() == [(1, qms[0]), (2, qms[1]), (3, qms[2]), (5, qms[3]),
                               (6, qms[4])]
    assert len(unacked) == 5
    assert unacked.take(2, multiple=False) == [qms[1]]
    unacked.extend(8, [qms[0]])  # later deliveries still append after a gap
    assert [tag for tag, _ in unacked.items()] == [1, 3, 5, 6, 8]
    assert unacked.take(0, multiple=True) == [qms[0], qms[2], qms[3], qms[4], qms[0]]
