"""MessageStore against a simple in-memory model, with hypothesis.

Random sequences of publish (to 1-3 queues) / ack / ack_many / delivered / failures / drop_queue /
commit run on a real store with small segments (rotation and GC happen) and on a model
of what recovery must return. Then the process "crashes" (the store is dropped without
close: pending appends are lost) and recovery must equal the model's state at the last
commit; a second round of operations on the recovered store must survive a second crash.
The torn-tail variant lays out and writes the appends made after the last commit, then
cuts the last segment at a random point inside them (a crash in the middle of that
commit). The store skips or shrinks publishes acked before they were laid out, so the
result need not equal any single earlier state; it must keep every committed message
that the tail did not remove, and hold nothing (message, queue, content, flags, order)
that never existed. A third variant commits after every operation, so small segments
fill with dead records behind live ones and compaction copies messages forward (a few
hundred compactions per run).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from warrenmq.storage import MessageStore, Recovery
from warrenmq.storage.segment import segment_name

QUEUES = ["/\x00a", "/\x00b", "other\x00a"]
queue = st.sampled_from(QUEUES)
index = st.integers(0, 1000)
op = st.one_of(
    st.tuples(st.just("pub"), st.lists(queue, min_size=1, max_size=3), st.integers(0, 120)),
    st.tuples(st.just("pub"), st.lists(queue, min_size=1, max_size=1), st.integers(0, 600)),
    st.tuples(st.just("ack"), queue, index),
    st.tuples(st.just("ack"), queue, index),
    st.tuples(st.just("ackmany"), queue, st.lists(index, min_size=1, max_size=4)),
    st.tuples(st.just("delivered"), queue, index),
    st.tuples(st.just("failures"), queue, index, st.integers(0, 2**32 - 1)),
    st.tuples(st.just("drop"), queue),
    st.tuples(st.just("commit")),
)
ops = st.lists(op, max_size=60)
segment_size = st.sampled_from([128, 300, 1024, 1 << 20])

State = dict[str, list[tuple[Any, ...]]]
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Model:
    """queue -> {msg_id: [exchange, routing_key, properties, body, delivered, failures]}."""

    def __init__(self, state: State | None = None, next_id: int = 1) -> None:
        self.queues: dict[str, dict[int, list[Any]]] = {
            q: {m[0]: list(m[1:]) for m in msgs} for q, msgs in (state or {}).items()
        }
        self.ids: list[int] = [m[0] for msgs in (state or {}).values() for m in msgs]
        self.next_id = next_id
        self.committed = self.state()

    def state(self) -> State:
        return {q: [(i, *v) for i, v in m.items()] for q, m in self.queues.items() if m}

    def pick(self, i: int) -> int:
        return self.ids[i % len(self.ids)] if self.ids else 1

    def apply(self, store: MessageStore, o: tuple[Any, ...]) -> None:
        kind = o[0]
        if kind == "pub":
            msg_id = self.next_id
            self.next_id += 1
            self.ids.append(msg_id)
            exchange, routing_key = f"ex{msg_id % 3}", f"rk.{msg_id}"
            properties = bytes([msg_id % 7]) * (msg_id % 5)
            body = bytes([msg_id % 251]) * o[2]
            store.publish(msg_id, o[1], exchange, routing_key, properties, body)
            for q in dict.fromkeys(o[1]):
                entry = [exchange, routing_key, properties, body, False, 0]
                self.queues.setdefault(q, {})[msg_id] = entry
        elif kind == "ack":
            msg_id = self.pick(o[2])
            store.ack(o[1], msg_id)
            self.queues.get(o[1], {}).pop(msg_id, None)
        elif kind == "ackmany":
            msg_ids = list(dict.fromkeys(self.pick(i) for i in o[2]))
            store.ack_many(o[1], msg_ids)
            for msg_id in msg_ids:
                self.queues.get(o[1], {}).pop(msg_id, None)
        elif kind == "delivered":
            msg_id = self.pick(o[2])
            store.delivered(o[1], msg_id)
            if msg_id in self.queues.get(o[1], {}):
                self.queues[o[1]][msg_id][4] = True
        elif kind == "failures":
            msg_id = self.pick(o[2])
            store.failures(o[1], msg_id, o[3])
            if msg_id in self.queues.get(o[1], {}):
                self.queues[o[1]][msg_id][5] = o[3]
        elif kind == "drop":
            store.drop_queue(o[1])
            self.queues.pop(o[1], None)
        else:
            assert store.commit() == store.last_ticket
            self.committed = self.state()


def recovered(store: MessageStore, rec: Recovery) -> State:
    out: State = {}
    for q, msgs in rec.queues.items():
        out[q] = []
        for m in msgs:
            body = m.body if m.body is not None else store.read_body(m.location)
            out[q].append(
                (m.msg_id, m.exchange, m.routing_key, m.properties, body, m.delivered, m.failures)
            )
    return out


def run(store: MessageStore, model: Model, sequence: list[tuple[Any, ...]]) -> None:
    for o in sequence:
        model.apply(store, o)


@SETTINGS
@given(first=ops, second=ops, size=segment_size, keep=st.sampled_from([0, 50, 1 << 20]))
def test_recovery_after_a_crash_equals_the_committed_model(
    first: list[tuple[Any, ...]], second: list[tuple[Any, ...]], size: int, keep: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "messages"
        store, _ = MessageStore.open(d, segment_size=size, fsync="never")
        model = Model()
        run(store, model, first)
        store.abandon()  # crash: what was appended after the last commit is lost
        store, rec = MessageStore.open(d, segment_size=size, fsync="never", keep_in_memory=keep)
        assert recovered(store, rec) == model.committed
        assert rec.max_msg_id <= max(model.next_id - 1, 1)  # pick() says 1 before any publish
        assert store.segments == rec.segments
        model = Model(model.committed, model.next_id)
        run(store, model, [*second, ("commit",)] if second else second)
        store.abandon()
        store, rec = MessageStore.open(d, segment_size=size, fsync="never", keep_in_memory=keep)
        assert recovered(store, rec) == model.committed
        store.close()


@SETTINGS
@given(sequence=ops, tail=ops, size=segment_size, data=st.data())
def test_torn_tail_recovers_a_prefix_of_the_uncommitted_appends(
    sequence: list[tuple[Any, ...]],
    tail: list[tuple[Any, ...]],
    size: int,
    data: st.DataObject,
) -> None:
    tail = [o for o in tail if o[0] != "commit"]
    with tempfile.TemporaryDirectory() as tmp:
        d, image, before = Path(tmp) / "messages", Path(tmp) / "image", Path(tmp) / "before"
        store, _ = MessageStore.open(d, segment_size=size, fsync="never")
        model = Model()
        run(store, model, [*sequence, ("commit",)])
        shutil.copytree(d, before)  # exactly the committed data
        states = [model.state()]
        for o in tail:
            model.apply(store, o)
            states.append(model.state())
        # The crash image: the commit of the tail wrote every byte, then the machine died
        # before it returned (so before any GC), with the last segment cut somewhere inside
        # the new bytes. The bytes are the laid-out chunks at their assigned offsets.
        shutil.copytree(before, image)
        for chunk in store.prepare_commit().chunks:
            fd = os.open(image / segment_name(chunk.segment), os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                assert os.pwrite(fd, chunk.data, chunk.offset) == len(chunk.data)
            finally:
                os.close(fd)
        store.abandon()
        names = sorted(p.name for p in image.iterdir())
        if names:
            last = image / names[-1]
            low = (before / last.name).stat().st_size if (before / last.name).exists() else 0
            cut = data.draw(st.integers(low, last.stat().st_size), label="cut")
            with last.open("r+b") as f:
                f.truncate(cut)
        store, rec = MessageStore.open(image, segment_size=size, fsync="never")
        got = recovered(store, rec)
        store.abandon()
        check_torn_tail(got, states)


def check_torn_tail(got: State, states: list[State]) -> None:
    """``got`` keeps what was committed and not removed since, and invents nothing."""
    final = states[-1]
    for q, msgs in states[0].items():
        kept = {m[0] for m in final.get(q, [])}
        survivors = [m[0] for m in msgs if m[0] in kept]
        have = {m[0] for m in got.get(q, [])}
        assert set(survivors) <= have, (q, survivors, got)
    seen: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
    for st_ in states:
        for q, msgs in st_.items():
            for m in msgs:
                seen.setdefault((q, m[0]), []).append(m)
    for q, msgs in got.items():
        ids = [m[0] for m in msgs]
        assert ids == sorted(ids), (q, ids)  # publish order
        for m in msgs:
            versions = seen.get((q, m[0]))
            assert versions is not None, (q, m)  # never in that queue
            assert m[1:5] in [v[1:5] for v in versions], (q, m)  # content
            assert not m[5] or any(v[5] for v in versions), (q, m)  # delivered
            assert m[6] in [v[6] for v in versions], (q, m)  # failures


@SETTINGS
@given(sequence=st.lists(op, min_size=20, max_size=120), size=st.sampled_from([128, 300]))
def test_recovery_with_a_commit_after_every_operation(
    sequence: list[tuple[Any, ...]], size: int
) -> None:
    # Every record is written (nothing elided) and small segments fill up, so dead
    # segments pile up behind live ones and compaction copies messages forward.
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "messages"
        store, _ = MessageStore.open(d, segment_size=size, fsync="never")
        model = Model()
        run(store, model, [x for o in sequence for x in (o, ("commit",))])
        store.abandon()
        store, rec = MessageStore.open(d, segment_size=size, fsync="never")
        assert recovered(store, rec) == model.committed
        store.close()


def test_a_torn_off_compaction_copy_keeps_the_failure_count(tmp_path: Path) -> None:
    """Found by the model above: a message whose FAILURES record is in the log is copied
    by compaction; the copy's PUBLISH lands in one segment, its records in the next, and
    a crash tears the next one off. Recovery must not let the copy reset the count (a
    poison message would get its retries back), and the copy must carry it forward."""
    d, image = tmp_path / "messages", tmp_path / "image"
    store, _ = MessageStore.open(d, segment_size=128, fsync="never")
    model = Model()
    run(store, model, [("pub", ["/\x00a"], 0), ("pub", ["other\x00a"], 0),
                       ("pub", ["/\x00a"], 47), ("commit",), ("ack", "other\x00a", 1),
                       ("ack", "/\x00a", 0), ("ack", "/\x00a", 0), ("ack", "/\x00a", 0),
                       ("failures", "/\x00a", 260, 1), ("commit",), ("pub", ["/\x00a"], 46),
                       ("commit",)])
    shutil.copytree(d, image)
    chunks = store.prepare_commit().chunks  # the compaction copy, laid out
    assert len({c.segment for c in chunks}) == 2  # PUBLISH in one segment, FAILURES next
    for chunk in chunks:
        with open(image / segment_name(chunk.segment), "ab") as f:
            f.write(chunk.data)
    store.abandon()
    last = sorted(image.iterdir())[-1]
    last.write_bytes(b"")  # the crash: the copy's FAILURES record never reached the disk
    store, rec = MessageStore.open(image, segment_size=128, fsync="never")
    got = recovered(store, rec)
    store.abandon()
    assert [(m[0], m[6]) for m in got["/\x00a"]] == [(3, 1), (4, 0)]
    assert [(m[0], m[6]) for m in model.state()["/\x00a"]] == [(3, 1), (4, 0)]
