"""MessageStore's write elision (warrenmq.storage.pending): a publish acked by every
queue before its batch is taken is never written; one acked by some queues is written
for the others only; DELIVERED / FAILURES that arrive before the layout follow the
PUBLISH; a queue dropped meanwhile is left out; tickets still advance and the commit
still covers them; the handle serves the body before and after the write.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from warrenmq.storage import MessageStore, StorageError
from warrenmq.storage.segment import segment_name

Q1, Q2 = "/\x00q1", "/\x00q2"


def open_store(d: Path) -> MessageStore:
    return MessageStore.open(d, fsync="group")[0]


def test_a_message_acked_before_its_batch_is_never_written(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    pub = store.publish(1, [Q1], "ex", "rk", b"", b"body")
    store.ack(Q1, 1)
    assert store.commit() == store.last_ticket >= pub.ticket  # its confirm is covered
    assert pub.location is None
    first = tmp_path / segment_name(1)
    assert not first.exists() or first.stat().st_size == 0
    with pytest.raises(StorageError, match="never written"):
        store.read_body(pub.handle)
    store.abandon()
    _, rec = MessageStore.open(tmp_path)
    assert rec.queues == {} and rec.records == 0


def test_multiple_ack_elides_and_writes_the_rest(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    for i in range(1, 6):
        store.publish(i, [Q1], "", "", b"", bytes([i]))
    store.ack_many(Q1, [1, 2, 4])
    store.commit()
    store.abandon()
    _, rec = MessageStore.open(tmp_path)
    assert [(m.msg_id, m.body) for m in rec.queues[Q1]] == [(3, b"\x03"), (5, b"\x05")]
    assert rec.records == 2  # two PUBLISH records, no ACKs


def test_partly_acked_message_is_written_for_the_remaining_queues(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.publish(1, [Q1, Q2], "", "", b"", b"shared")
    store.delivered(Q1, 1)
    store.delivered(Q2, 1)
    store.failures(Q2, 1, 2)
    store.ack(Q1, 1)
    store.commit()
    store.abandon()
    _, rec = MessageStore.open(tmp_path)
    assert list(rec.queues) == [Q2]
    (m,) = rec.queues[Q2]
    assert (m.body, m.delivered, m.failures) == (b"shared", True, 2)
    assert rec.records == 2  # PUBLISH_DELIVERED (Q2 only), FAILURES


def test_drop_queue_removes_it_from_unwritten_publishes(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.publish(1, [Q1, Q2], "", "", b"", b"a")
    store.publish(2, [Q1], "", "", b"", b"b")
    store.drop_queue(Q1)
    store.publish(3, [Q1], "", "", b"", b"c")  # the queue declared anew
    store.commit()
    store.abandon()
    _, rec = MessageStore.open(tmp_path)
    assert {q: [m.msg_id for m in ms] for q, ms in rec.queues.items()} == {Q2: [1], Q1: [3]}


def test_acks_after_the_layout_are_records_and_the_handle_reads_from_disk(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    pub = store.publish(1, [Q1], "", "", b"", b"x" * 100)
    batch = store.prepare_commit()  # laid out, not yet written
    assert pub.location is not None and pub.handle.body == b"x" * 100
    store.ack(Q1, 1)  # too late to elide: an ACK record follows
    assert store.write_prepared(batch) == batch.target
    store.finish_commit(batch, ok=True)
    assert pub.handle.body is None  # released: read from the segment now
    assert store.read_body(pub.handle) == b"x" * 100
    store.commit()
    store.abandon()
    _, rec = MessageStore.open(tmp_path)
    assert rec.queues == {} and rec.records == 2


def test_a_failed_batch_keeps_bodies_in_memory(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    pub = store.publish(1, [Q1], "", "", b"", b"kept")
    batch = store.prepare_commit()
    store.finish_commit(batch, ok=False)  # as after ENOSPC: retried by the next commit
    assert store.read_body(pub.handle) == b"kept" and store.pending_bytes > 0
    store.commit()
    assert store.pending_bytes == 0 and store.read_body(pub.handle) == b"kept"
    store.abandon()
    _, rec = MessageStore.open(tmp_path)
    assert [m.body for m in rec.queues[Q1]] == [b"kept"]
