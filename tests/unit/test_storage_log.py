"""MessageStore (warrenmq.storage.log) on real files: every record type survives a restart,
recovery order, acked/dropped messages stay gone, delivered flags and failure counts, a
message routed to several queues, tickets and commit semantics, body locations and
read_body, segment rotation and naming, prefix-only segment GC, writes after recovery
going to a new segment, and a commit thread running while the loop thread appends.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from warrenmq.storage import (
    BodyLocation,
    MessageStore,
    Recovery,
    StorageError,
)
from warrenmq.storage.segment import segment_name

Q1, Q2, Q3 = "/\x00q1", "/\x00q2", "vh\x00q3"


def open_store(d: Path, **kw: Any) -> tuple[MessageStore, Recovery]:
    kw.setdefault("fsync", "group")
    return MessageStore.open(d, **kw)


def restart(store: MessageStore, d: Path, **kw: Any) -> tuple[MessageStore, Recovery]:
    """Crash (nothing pending is written) and recover."""
    store.abandon()
    return open_store(d, **kw)


def ids(rec: Recovery) -> dict[str, list[int]]:
    return {q: [m.msg_id for m in msgs] for q, msgs in rec.queues.items()}


def test_empty_directory_is_created_and_recovers_nothing(tmp_path: Path) -> None:
    d = tmp_path / "data" / "messages"
    store, rec = open_store(d)
    assert d.is_dir()
    assert rec.queues == {} and rec.max_msg_id == 0 and rec.segments == [] and rec.records == 0
    assert store.commit() == 0
    store.close()
    assert os.listdir(d) == []


def test_publish_round_trip_every_field(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path)
    props = bytes(range(256)) * 3
    body = os.urandom(5000)
    pub = store.publish(7, ["vh\x00ünïcode"], "amq.tôpic", "a.b.ç", props, body)
    assert pub.ticket == 1
    assert store.read_body(pub.handle) == body  # before the commit: from the buffer
    assert store.commit() == 1
    assert store.read_body(pub.handle) == body  # after: from the file
    store, rec = restart(store, tmp_path)
    (m,) = rec.queues["vh\x00ünïcode"]
    assert (m.msg_id, m.exchange, m.routing_key, m.properties, m.body) == (
        7,
        "amq.tôpic",
        "a.b.ç",
        props,
        body,
    )
    assert m.location == pub.location
    assert (m.delivered, m.failures) == (False, 0)
    assert rec.max_msg_id == 7
    assert store.read_body(m.location) == body
    store.close()


def test_empty_strings_and_empty_body(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path)
    pub = store.publish(1, [Q1], "", "", b"", b"")
    store.commit()
    assert pub.location is not None and pub.location.length == 0
    store, rec = restart(store, tmp_path)
    (m,) = rec.queues[Q1]
    assert (m.exchange, m.routing_key, m.properties, m.body) == ("", "", b"", b"")
    assert store.read_body(m.location) == b""
    store.close()


def test_recovery_order_is_publish_order_per_queue(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path, segment_size=300)
    expected: dict[str, list[int]] = {Q1: [], Q2: [], Q3: []}
    for msg_id in range(1, 41):
        q = (Q1, Q2, Q3)[msg_id * 7 % 3]
        store.publish(msg_id, [q], "x", "rk", b"", b"%d" % msg_id)
        expected[q].append(msg_id)
        if msg_id % 5 == 0:
            store.commit()
    store.commit()
    assert len(store.segments) > 3
    store, rec = restart(store, tmp_path, segment_size=300)
    assert ids(rec) == expected
    assert all(m.body == b"%d" % m.msg_id for msgs in rec.queues.values() for m in msgs)
    store.close()


def test_acked_messages_are_not_recovered(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path)
    for msg_id in range(1, 7):
        store.publish(msg_id, [Q1], "", "q1", b"", b"m")
    store.ack(Q1, 2)
    store.ack(Q1, 5)
    store.ack(Q2, 3)  # wrong queue: no effect
    store.ack(Q1, 99)  # unknown message: no effect
    store.commit()
    store, rec = restart(store, tmp_path)
    assert ids(rec) == {Q1: [1, 3, 4, 6]}
    assert rec.max_msg_id == 99
    store.close()


def test_drop_queue_removes_only_earlier_messages_of_that_queue(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path)
    store.publish(1, [Q1], "", "", b"", b"a")
    store.publish(2, [Q1, Q2], "", "", b"", b"b")
    store.publish(3, [Q2], "", "", b"", b"c")
    store.drop_queue(Q1)
    store.publish(4, [Q1], "", "", b"", b"d")  # the queue declared again
    store.commit()
    store, rec = restart(store, tmp_path)
    assert ids(rec) == {Q1: [4], Q2: [2, 3]}
    store.close()


def test_delivered_flag_and_failure_counts_are_per_queue(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path)
    store.publish(1, [Q1, Q2], "", "", b"", b"a")
    store.publish(2, [Q1], "", "", b"", b"b")
    store.delivered(Q1, 1)
    store.failures(Q2, 1, 1)
    store.failures(Q2, 1, 4)  # the last count wins
    store.delivered(Q3, 1)  # not in that queue: ignored
    store.commit()
    store, rec = restart(store, tmp_path)
    flags = {q: [(m.msg_id, m.delivered, m.failures) for m in ms] for q, ms in rec.queues.items()}
    assert flags == {Q1: [(1, True, 0), (2, False, 0)], Q2: [(1, False, 4)]}
    store.close()


def test_annotations_do_not_survive_ack_and_republish(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path)
    store.publish(1, [Q1], "", "", b"", b"a")
    store.delivered(Q1, 1)
    store.failures(Q1, 1, 2)
    store.ack(Q1, 1)
    store.publish(1, [Q1], "", "", b"", b"again")  # the same id published anew
    store.commit()
    store, rec = restart(store, tmp_path)
    (m,) = rec.queues[Q1]
    assert (m.body, m.delivered, m.failures) == (b"again", False, 0)
    store.close()


def test_message_in_several_queues_acked_by_some(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path, segment_size=200)
    pub = store.publish(1, [Q1, Q2, Q3, Q1], "fan", "", b"p", b"shared body")  # Q1 twice
    store.publish(2, [Q2], "", "", b"", b"x")
    store.ack(Q1, 1)
    store.ack(Q3, 1)
    store.delivered(Q2, 1)
    store.commit()
    store, rec = restart(store, tmp_path, segment_size=200)
    assert ids(rec) == {Q2: [1, 2]}
    m = rec.queues[Q2][0]
    assert (m.body, m.delivered, m.location) == (b"shared body", True, pub.location)
    # The last queue's ack makes the message dead; its segment then goes away.
    head = rec.segments[-1] + 1  # writes after a recovery start a new segment
    store.ack(Q2, 1)
    store.ack(Q2, 2)
    store.commit()
    assert store.segments == [head]
    store, rec = restart(store, tmp_path, segment_size=200)
    assert rec.queues == {}
    store.close()


def test_one_record_per_publish_even_for_several_queues(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path)
    body = b"B" * 1000
    store.publish(1, [Q1, Q2, Q3], "", "", b"", body)
    store.commit()
    size = (tmp_path / segment_name(1)).stat().st_size
    assert len(body) < size < 2 * len(body)
    store, rec = restart(store, tmp_path)
    assert rec.records == 1 and set(rec.queues) == {Q1, Q2, Q3}
    # one object per queue: flags are per queue
    assert len({id(msgs[0]) for msgs in rec.queues.values()}) == 3
    store.close()


def test_uncommitted_appends_are_lost_in_a_crash(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path)
    store.publish(1, [Q1], "", "", b"", b"kept")
    store.commit()
    store.publish(2, [Q1], "", "", b"", b"lost")
    store.ack(Q1, 1)
    assert store.pending_bytes > 0
    store, rec = restart(store, tmp_path)
    assert ids(rec) == {Q1: [1]}
    store.close()


def test_tickets_and_commit_return_values(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path)
    assert (store.last_ticket, store.durable_ticket, store.pending_bytes) == (0, 0, 0)
    t1 = store.publish(1, [Q1], "", "", b"", b"a").ticket
    t2 = store.delivered(Q1, 1)
    t3 = store.failures(Q1, 1, 1)
    t4 = store.ack(Q1, 1)
    t5 = store.drop_queue(Q1)
    assert [t1, t2, t3, t4, t5] == [1, 2, 3, 4, 5]
    assert store.durable_ticket == 0 and store.pending_bytes > 0
    assert store.commit() == 5
    assert (store.durable_ticket, store.pending_bytes) == (5, 0)
    assert store.commit() == 5  # nothing new
    assert store.publish(2, [Q1], "", "", b"", b"b").ticket == 6
    store.close()  # close commits what is pending
    store, rec = open_store(tmp_path)
    assert ids(rec) == {Q1: [2]}
    store.close()


def test_closed_store_refuses_operations(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path)
    store.close()
    store.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        store.publish(1, [Q1], "", "", b"", b"")
    with pytest.raises(StorageError, match="closed"):
        store.ack(Q1, 1)
    with pytest.raises(StorageError, match="closed"):
        store.commit()


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"segment_size": 10}, "segment_size"),
        ({"fsync": "sometimes"}, "fsync policy"),
    ],
)
def test_invalid_options(tmp_path: Path, kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        MessageStore.open(tmp_path, **kwargs)


def test_invalid_records_are_refused_before_anything_is_appended(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path)
    with pytest.raises(ValueError, match="short string"):
        store.publish(1, [Q1], "e" * 256, "", b"", b"")
    with pytest.raises(ValueError, match="short string"):
        store.publish(1, [Q1], "", "r" * 256, b"", b"")
    with pytest.raises(ValueError, match="at least one queue"):
        store.publish(1, [], "", "", b"", b"")
    with pytest.raises(ValueError, match="64 bits"):
        store.publish(2**64, [Q1], "", "", b"", b"")
    assert (store.last_ticket, store.pending_bytes) == (0, 0)
    store.close()


@pytest.mark.parametrize("policy", ["group", "always", "never"])
def test_every_fsync_policy_persists_committed_data(tmp_path: Path, policy: str) -> None:
    store, _ = MessageStore.open(tmp_path, fsync=policy)  # type: ignore[arg-type]
    store.publish(1, [Q1], "", "", b"", b"a")
    assert store.commit() == 1
    store.abandon()
    store, rec = MessageStore.open(tmp_path, fsync=policy)  # type: ignore[arg-type]
    assert ids(rec) == {Q1: [1]}
    store.close()


def test_rotation_naming_and_locations_across_segments(tmp_path: Path) -> None:
    size = 256
    store, _ = open_store(tmp_path, segment_size=size)
    pubs = [store.publish(i, [Q1], "e", "k", b"", bytes([i]) * 60) for i in range(1, 11)]
    big = store.publish(11, [Q1], "e", "k", b"", b"L" * 1000)  # larger than a segment
    after = store.publish(12, [Q1], "e", "k", b"", b"after")
    store.commit()
    files = sorted(os.listdir(tmp_path))
    assert files[0] == "0000000000000001.seg"
    assert all(len(f) == len("0000000000000001.seg") for f in files)
    segs = [p.location.segment for p in pubs]
    assert segs == sorted(segs) and segs[-1] > segs[0]
    for seq in store.segments:  # only the oversize record's segment exceeds the size
        n = (tmp_path / segment_name(seq)).stat().st_size
        assert n <= size or seq == big.location.segment
    assert big.location.offset < 100 and big.location.segment not in segs
    assert after.location.segment == big.location.segment + 1
    for p, i in zip(pubs, range(1, 11), strict=True):
        assert store.read_body(p.handle) == bytes([i]) * 60
    assert store.read_body(big.handle) == b"L" * 1000
    store, rec = restart(store, tmp_path, segment_size=size)
    assert ids(rec) == {Q1: list(range(1, 13))}
    assert [m.location for m in rec.queues[Q1]] == [p.location for p in [*pubs, big, after]]
    store.close()


def test_keep_in_memory_threshold_gives_locations_and_read_body(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path)
    store.publish(1, [Q1], "", "", b"", b"s" * 10)
    store.publish(2, [Q1], "", "", b"", b"L" * 11)
    store.commit()
    store, rec = restart(store, tmp_path, keep_in_memory=10)
    small, large = rec.queues[Q1]
    assert small.body == b"s" * 10
    assert large.body is None and large.location.length == 11
    assert store.read_body(large.location) == b"L" * 11
    with pytest.raises(StorageError, match="beyond the end"):
        store.read_body(BodyLocation(large.location.segment, large.location.offset, 10_000))
    store.close()


def test_new_writes_after_recovery_go_to_a_new_segment(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path)
    store.publish(1, [Q1], "", "", b"", b"a")
    store.commit()
    before = (tmp_path / segment_name(1)).read_bytes()
    store, rec = restart(store, tmp_path)
    assert rec.segments == [1]
    pub = store.publish(2, [Q1], "", "", b"", b"b")
    store.commit()
    assert pub.location.segment == 2
    assert (tmp_path / segment_name(1)).read_bytes() == before
    store, rec = restart(store, tmp_path)
    assert ids(rec) == {Q1: [1, 2]} and rec.segments == [1, 2]
    store.close()


def _fill(store: MessageStore, first: int, count: int, queue: str = Q1) -> list[int]:
    """Publish and commit ``count`` messages; the segments they landed in."""
    pubs = [store.publish(i, [queue], "", "", b"", b"x" * 40) for i in range(first, first + count)]
    store.commit()
    return [p.location.segment for p in pubs if p.location is not None]


def test_gc_deletes_only_a_dead_prefix(tmp_path: Path) -> None:
    # 100-byte segments: a 75-byte PUBLISH each; an ACK (27 bytes) does not fit after one.
    store, _ = open_store(tmp_path, segment_size=100)
    segs = _fill(store, 1, 4)
    assert segs == [1, 2, 3, 4]
    store.commit()
    store.ack(Q1, 2)  # segment 2 is dead, but segment 1 is live: nothing may go
    assert _fill(store, 5, 1) == [6]  # the head moves past the ACK's segment 5
    store.commit()
    assert store.segments == [1, 2, 3, 4, 5, 6]
    store, rec = restart(store, tmp_path, segment_size=100)
    assert ids(rec) == {Q1: [1, 3, 4, 5]}  # the ACK in segment 5 still hides message 2
    store.ack(Q1, 1)  # now segments 1 and 2 are a dead prefix; 3 is live
    store.commit()
    assert store.segments == [3, 4, 5, 6, 7]
    assert sorted(os.listdir(tmp_path)) == [segment_name(s) for s in (3, 4, 5, 6, 7)]
    store, rec = restart(store, tmp_path, segment_size=100)
    assert ids(rec) == {Q1: [3, 4, 5]}
    store.ack(Q1, 4)  # a dead segment after a live one is kept
    store.commit()
    assert store.segments[0] == 3 and 4 in store.segments
    store.ack(Q1, 3)
    store.ack(Q1, 5)
    store.commit()  # everything below the head is dead, ACK-only segments included
    assert store.segments == [8]  # the head segment holding those three ACKs
    store, rec = restart(store, tmp_path, segment_size=100)
    assert rec.queues == {}
    store.close()


def test_gc_never_deletes_the_head_segment_or_live_data(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path, segment_size=4096)
    store.publish(1, [Q1], "", "", b"", b"a")
    store.commit()
    store.ack(Q1, 1)
    store.commit()
    assert store.segments == [1]  # dead, but still the head: more appends will land there
    store.publish(2, [Q1], "", "", b"", b"b")
    store.commit()
    store, rec = restart(store, tmp_path)
    assert ids(rec) == {Q1: [2]}
    store.close()


def test_drop_queue_lets_gc_reclaim_its_segments(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path, segment_size=128)
    _fill(store, 1, 3, Q1)
    _fill(store, 4, 1, Q2)
    store.drop_queue(Q1)
    store.commit()
    store.publish(5, [Q2], "", "", b"", b"z")  # moves past the segment holding the drop
    store.commit()
    assert store.segments[0] == 4
    store, rec = restart(store, tmp_path, segment_size=128)
    assert ids(rec) == {Q2: [4, 5]}
    store.close()


def test_read_body_from_a_failed_or_pending_batch_is_served_from_memory(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path)
    pubs = [store.publish(i, [Q1], "", "", b"", os.urandom(100)) for i in range(1, 4)]
    bodies = [store.read_body(p.handle) for p in pubs]
    store.commit()
    assert [store.read_body(p.handle) for p in pubs] == bodies
    store.close()


def test_commit_in_a_worker_thread_while_the_loop_thread_appends(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path, segment_size=4096)
    stop = threading.Event()
    returned: list[int] = []
    errors: list[BaseException] = []

    def committer() -> None:
        try:
            while not stop.is_set():
                returned.append(store.commit())
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    worker = threading.Thread(target=committer, daemon=True)
    worker.start()
    locations = {}
    try:
        for msg_id in range(1, 3001):
            pub = store.publish(msg_id, [Q1, Q2], "", "", b"", msg_id.to_bytes(4, "big") * 8)
            locations[msg_id] = pub.handle
            if msg_id % 2 == 0:
                store.ack(Q1, msg_id)
            if msg_id % 500 == 0:  # reads racing the writer: memory or file, same bytes
                assert (
                    store.read_body(locations[msg_id - 250])
                    == (msg_id - 250).to_bytes(4, "big") * 8
                )
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not worker.is_alive()
    assert errors == []
    assert returned == sorted(returned) and len(returned) > 1
    final = store.commit()
    assert final == store.last_ticket == 3000 + 1500
    store, rec = restart(store, tmp_path, segment_size=4096)
    assert ids(rec) == {Q1: list(range(1, 3001, 2)), Q2: list(range(1, 3001))}
    assert all(
        m.body == m.msg_id.to_bytes(4, "big") * 8 and m.location == locations[m.msg_id].location
        for m in rec.queues[Q2]
    )
    store.close()


def test_publish_time_survives_a_restart(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path)
    store.publish(1, [Q1], "", "", b"", b"a", 1_700_000_123.456)
    store.publish(2, [Q1], "", "", b"", b"b")  # unknown: 0
    store.commit()
    store, rec = restart(store, tmp_path)
    assert [m.published for m in rec.queues[Q1]] == [1_700_000_123.456, 0.0]
    store.close()
