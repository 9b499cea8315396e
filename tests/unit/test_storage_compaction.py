"""Compaction (warrenmq.storage.compaction): a long-lived message in the oldest segment is
copied to the head once dead segments pile up behind it, so the prefix GC can delete
them all; the copy keeps the message's DELIVERED / FAILURES state per queue, its place in
each queue's order after a restart, its body for read_body; an ACK after the copy hides
it for good; a crash before the copy is written keeps the original.
"""

from __future__ import annotations

from pathlib import Path

from warrenmq.storage import MessageStore, Recovery
from warrenmq.storage.compaction import choose

Q1, Q2, Q3 = "/\x00q1", "/\x00q2", "/\x00q3"
SEGMENT = 200  # a PUBLISH with a 40-byte body is ~75 bytes: two records per segment


def churn(store: MessageStore, first: int, count: int) -> None:
    """Messages published and acked in separate commits: dead segments, not elided."""
    for msg_id in range(first, first + count):
        store.publish(msg_id, [Q3], "", "", b"", b"c" * 40)
        store.commit()
        store.ack(Q3, msg_id)
        store.commit()


def restart(store: MessageStore, d: Path) -> tuple[MessageStore, Recovery]:
    store.abandon()
    return MessageStore.open(d, segment_size=SEGMENT)


def test_choose_takes_the_oldest_small_live_segment_with_dead_ones_behind() -> None:
    assert choose([1, 2, 3, 4], head=5, segment_live={1: 3}) == 1
    assert choose([1, 2, 3, 4], head=5, segment_live={1: 3, 3: 1}) == 1  # 2 and 4 dead
    assert choose([1, 2, 3], head=4, segment_live={1: 3, 2: 1}) is None  # one dead behind
    assert choose([1, 2, 3, 4], head=5, segment_live={2: 1}) is None  # oldest dead: plain GC
    assert choose([1, 2, 3, 4], head=5, segment_live={1: 20}, max_live=10) is None
    assert choose([1], head=1, segment_live={1: 1}) is None  # the head itself


def test_an_old_live_message_no_longer_pins_the_log(tmp_path: Path) -> None:
    store, _ = MessageStore.open(tmp_path, segment_size=SEGMENT)
    old = store.publish(1, [Q1, Q2], "ex", "rk.old", b"\x00\x01", b"o" * 40)
    store.commit()
    store.delivered(Q1, 1)
    store.failures(Q1, 1, 2)
    store.publish(2, [Q1], "ex", "rk.new", b"", b"n" * 40)  # later, in a later segment
    store.commit()
    first = old.location.segment if old.location is not None else -1
    for msg_id in range(10, 60):  # until the first segment is copied forward and deleted
        churn(store, msg_id, 1)
        if first not in store.segments:
            break
    assert first not in store.segments, store.segments
    assert store.read_body(old.handle, 1) == b"o" * 40
    # Message 2's record now lies before message 1's copy: recovery restores msg_id order.
    for _ in range(2):
        store, rec = restart(store, tmp_path)
        q1 = [(m.msg_id, m.delivered, m.failures, m.body) for m in rec.queues[Q1]]
        assert q1 == [(1, True, 2, b"o" * 40), (2, False, 0, b"n" * 40)]  # order kept
        (m,) = rec.queues[Q2]
        assert (m.msg_id, m.delivered, m.failures) == (1, False, 0)  # state per queue
        assert (m.exchange, m.routing_key, m.properties) == ("ex", "rk.old", b"\x00\x01")
        assert Q3 not in rec.queues
        churn(store, 100, 30)  # both live messages get copied as the log moves on
        # bounded, not growing: the copies' segment, a couple of dead ones, the head
        assert len(store.segments) <= 6, store.segments
        assert store.read_body(rec.queues[Q1][0].location, 1) == b"o" * 40
    store.close()


def test_ack_after_the_copy_is_durable(tmp_path: Path) -> None:
    store, _ = MessageStore.open(tmp_path, segment_size=SEGMENT)
    store.publish(1, [Q1], "", "", b"", b"o" * 40)
    store.commit()
    churn(store, 10, 30)
    store.ack(Q1, 1)
    store.commit()
    store, rec = restart(store, tmp_path)
    assert rec.queues == {}
    store.close()


def test_a_crash_before_the_copy_is_written_keeps_the_original(tmp_path: Path) -> None:
    store, _ = MessageStore.open(tmp_path, segment_size=SEGMENT)
    store.publish(1, [Q1], "", "", b"", b"o" * 40)
    store.commit()
    store.delivered(Q1, 1)
    for msg_id in range(10, 40):  # churn until a compaction has queued its copies
        store.publish(msg_id, [Q3], "", "", b"", b"c" * 40)
        store.commit()
        store.ack(Q3, msg_id)
        batch = store.prepare_commit()
        store.finish_commit(batch, ok=store.write_prepared(batch) == batch.target)
        if batch.found:
            break
    else:
        raise AssertionError("no compaction was started")
    store, rec = restart(store, tmp_path)  # the copies were pending, never written
    (m,) = rec.queues[Q1]
    assert (m.msg_id, m.body, m.delivered) == (1, b"o" * 40, True)
    store.close()


def test_delivered_flags_written_with_the_publish_survive_the_copy(tmp_path: Path) -> None:
    store, _ = MessageStore.open(tmp_path, segment_size=SEGMENT)
    store.publish(1, [Q1], "", "", b"", b"a" * 40)
    store.delivered(Q1, 1)  # before the layout: one PUBLISH_DELIVERED record
    store.publish(2, [Q1, Q2], "", "", b"", b"b" * 40)
    store.delivered(Q2, 2)  # in one queue only: PUBLISH + DELIVERED
    store.commit()
    first = store.segments[0]
    for msg_id in range(10, 60):
        churn(store, msg_id, 1)
        if first not in store.segments:
            break
    assert first not in store.segments, store.segments
    store, rec = restart(store, tmp_path)
    flags = {q: [(m.msg_id, m.delivered) for m in ms] for q, ms in rec.queues.items()}
    assert flags == {Q1: [(1, True), (2, False)], Q2: [(2, True)]}
    store.close()
