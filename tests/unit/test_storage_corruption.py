"""Torn writes and corrupt records in the message log (warrenmq.storage.segment/recovery).

A file truncated at EVERY byte offset inside its last record, and inside an earlier record,
recovers exactly the records before the cut; the store then takes new writes (in a new
segment) and recovers them too. A byte flipped at EVERY offset of a middle record loses
only that record: scanning resyncs, so the records after it are recovered, and a
``storage_corrupt_record`` warning names the file and offset. Also garbage and zero tails,
inserted junk, and a whole corrupt segment between good ones.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from warrenmq.storage import MessageStore, Recovery
from warrenmq.storage.segment import segment_name

Q1, Q2 = "/\x00q1", "/\x00q2"
SEG1 = segment_name(1)

Op = tuple[Any, ...]
# A mix of every record type; bodies of different sizes so records differ in length.
OPS: list[Op] = [
    ("pub", 1, (Q1,), b"first"),
    ("pub", 2, (Q1, Q2), b"second" * 5),
    ("delivered", Q1, 1),
    ("failures", Q2, 2, 3),
    ("pub", 3, (Q2,), b""),
    ("ack", Q1, 1),
    ("drop", Q2),
    ("pub", 4, (Q2,), b"fourth"),
]


def apply(store: MessageStore, op: Op) -> None:
    kind = op[0]
    if kind == "pub":
        store.publish(op[1], op[2], "ex", "rk", b"\x01\x02", op[3])
    elif kind == "ack":
        store.ack(op[1], op[2])
    elif kind == "delivered":
        store.delivered(op[1], op[2])
    elif kind == "failures":
        store.failures(op[1], op[2], op[3])
    else:
        store.drop_queue(op[1])


def model(ops: list[Op]) -> dict[str, list[tuple[int, bytes, bool, int]]]:
    """Expected recovery after ``ops``: queue -> [(msg_id, body, delivered, failures)]."""
    queues: dict[str, dict[int, list[Any]]] = {}
    for op in ops:
        kind = op[0]
        if kind == "pub":
            for q in op[2]:
                queues.setdefault(q, {})[op[1]] = [op[1], op[3], False, 0]
        elif kind == "ack":
            queues.get(op[1], {}).pop(op[2], None)
        elif kind == "delivered":  # about a message not live: ignored, like recovery does
            queues.get(op[1], {}).get(op[2], [0, 0, 0, 0])[2] = True
        elif kind == "failures":
            queues.get(op[1], {}).get(op[2], [0, 0, 0, 0])[3] = op[3]
        else:
            queues.pop(op[1], None)
    return {q: [(e[0], e[1], e[2], e[3]) for e in m.values()] for q, m in queues.items() if m}


def recovered(rec: Recovery) -> dict[str, list[tuple[int, bytes, bool, int]]]:
    return {
        q: [(m.msg_id, m.body or b"", m.delivered, m.failures) for m in msgs]
        for q, msgs in rec.queues.items()
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """One segment holding OPS, and the file offset where each record starts (plus the end),
    measured from the file size after committing each op (independent of the scanner).
    """
    d = tmp_path_factory.mktemp("reference")
    store, _ = MessageStore.open(d, fsync="never")
    bounds = [0]
    for op in OPS:
        apply(store, op)
        store.commit()
        bounds.append((d / SEG1).stat().st_size)
    store.close()
    assert store.segments == [1]
    return d, bounds


def damaged_copy(src: Path, dst: Path, damage: Callable[[bytearray], bytearray]) -> Path:
    shutil.copytree(src, dst)
    path = dst / SEG1
    path.write_bytes(damage(bytearray(path.read_bytes())))
    return dst


def recover_then_write_more(d: Path, expect: dict[str, Any]) -> list[MutableMapping[str, Any]]:
    """Recover ``d`` and check it equals ``expect``; then a new write must also survive."""
    with capture_logs() as logs:
        store, rec = MessageStore.open(d, fsync="never")
    assert recovered(rec) == expect
    pub = store.publish(100, [Q1], "ex", "rk", b"", b"new")
    store.commit()
    assert pub.location.segment == 2  # never appended after the damage
    store.abandon()
    store, rec = MessageStore.open(d, fsync="never")
    after = recovered(rec)
    assert after.pop(Q1)[-1] == (100, b"new", False, 0)
    before = dict(expect)
    before.pop(Q1, None)
    assert after == before
    store.abandon()
    return [e for e in logs if e["event"] == "storage_corrupt_record"]


@pytest.mark.parametrize("record", [len(OPS) - 1, 1])
def test_truncation_at_every_offset_inside_a_record(
    reference: tuple[Path, list[int]], tmp_path: Path, record: int
) -> None:
    src, bounds = reference
    start, end = bounds[record], bounds[record + 1]
    expect = model(OPS[:record])
    for cut in range(start, end):

        def truncate(b: bytearray, cut: int = cut) -> bytearray:
            return b[:cut]

        d = damaged_copy(src, tmp_path / str(cut), truncate)
        warnings = recover_then_write_more(d, expect)
        if cut == start:  # a clean cut between records: nothing to report
            assert warnings == []
        else:
            assert [(w["file"], w["offset"], w["torn_tail"]) for w in warnings] == [
                (str(d / SEG1), start, True)
            ]


def test_flipped_byte_at_every_offset_of_a_middle_record_resyncs(
    reference: tuple[Path, list[int]], tmp_path: Path
) -> None:
    src, bounds = reference
    middle = 1  # the PUBLISH of message 2 (to Q1 and Q2)
    start, end = bounds[middle], bounds[middle + 1]
    # Every record but that one is recovered, including those after it.
    expect = model(_without(OPS, middle))
    assert Q1 not in expect  # message 1: published, delivered, then acked after the damage
    assert expect[Q2] == [(4, b"fourth", False, 0)]
    for pos in range(start, end):

        def flip(b: bytearray, pos: int = pos) -> bytearray:
            b[pos] ^= 0x5A
            return b

        d = damaged_copy(src, tmp_path / str(pos), flip)
        with capture_logs() as logs:
            store, rec = MessageStore.open(d, fsync="never")
        store.abandon()
        assert recovered(rec) == expect, pos
        warnings = [e for e in logs if e["event"] == "storage_corrupt_record"]
        assert [(w["file"], w["offset"], w["torn_tail"]) for w in warnings] == [
            (str(d / SEG1), start, False)
        ], pos
        assert warnings[0]["skipped"] == end - start
        assert warnings[0]["log_level"] == "warning"
        assert rec.damaged == [(str(d / SEG1), start)]
        assert rec.records == len(OPS) - 1


def _without(ops: list[Op], index: int) -> list[Op]:
    """``ops`` minus one record; annotations of a now unknown message are dropped, as
    recovery ignores records about messages that are not live.
    """
    return [op for i, op in enumerate(ops) if i != index]


def test_a_corrupt_ack_resurrects_its_message_at_least_once(
    reference: tuple[Path, list[int]], tmp_path: Path
) -> None:
    src, bounds = reference
    ack = 5  # ("ack", Q1, 1)
    d = damaged_copy(src, tmp_path / "d", lambda b: _flip_at(b, bounds[ack] + 20))
    store, rec = MessageStore.open(d, fsync="never")
    store.abandon()
    assert recovered(rec) == model(_without(OPS, ack))
    assert rec.queues[Q1][0].msg_id == 1  # redelivered rather than lost


def _flip_at(b: bytearray, pos: int) -> bytearray:
    b[pos] ^= 0xFF
    return b


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("zero tail", lambda b: b + bytes(100)),
        ("garbage tail", lambda b: b + b"\xde\xad\xbe\xef" * 10),
        ("lone magic tail", lambda b: b + b"WMQr\x01"),
        ("junk inserted", lambda b: b[:5] + b"WMQrjunkWMQr" + b[5:]),
    ],
)
def test_garbage_is_skipped_and_reported(
    tmp_path: Path, name: str, damage: Callable[[bytearray], bytearray]
) -> None:
    d = tmp_path / "d"
    store, _ = MessageStore.open(d, fsync="never")
    pubs = [store.publish(i, [Q1], "", "", b"", b"%d" % i * 20) for i in range(1, 4)]
    store.close()
    path = d / SEG1
    assert pubs[0].location.segment == pubs[2].location.segment == 1
    original = bytes(path.read_bytes())
    path.write_bytes(damage(bytearray(original)))
    with capture_logs() as logs:
        store, rec = MessageStore.open(d, fsync="never")
    store.abandon()
    assert [m.msg_id for m in rec.queues[Q1]] == [1, 2, 3] or name == "junk inserted"
    warnings = [e for e in logs if e["event"] == "storage_corrupt_record"]
    assert len(warnings) == 1 and warnings[0]["file"] == str(path)
    if name == "junk inserted":  # inside record 1 (which is lost): resync at record 2
        assert [m.msg_id for m in rec.queues[Q1]] == [2, 3]
        assert warnings[0]["offset"] == 0
    else:
        assert warnings[0]["offset"] == len(original) and warnings[0]["torn_tail"]


def test_a_wholly_corrupt_segment_between_good_ones(tmp_path: Path) -> None:
    d = tmp_path / "d"
    store, _ = MessageStore.open(d, segment_size=100, fsync="never")
    for i in range(1, 4):
        store.publish(i, [Q1], "", "", b"", b"b" * 40)  # one record per segment
    store.close()
    (d / segment_name(2)).write_bytes(b"\x00" * 50 + b"\xff" * 25)
    with capture_logs() as logs:
        store, rec = MessageStore.open(d, fsync="never")
    assert [m.msg_id for m in rec.queues[Q1]] == [1, 3]
    assert [(e["file"], e["offset"]) for e in logs if e["event"] == "storage_corrupt_record"] == [
        (str(d / segment_name(2)), 0)
    ]
    # The dead corrupt segment goes once the segment before it is dead too.
    store.ack(Q1, 1)
    store.commit()
    assert store.segments == [3, 4]
    store.close()


def test_valid_frame_with_undecodable_payload_is_skipped(tmp_path: Path) -> None:
    from warrenmq.storage.records import RecordType, _frame

    d = tmp_path / "d"
    store, _ = MessageStore.open(d, fsync="never")
    store.publish(1, [Q1], "", "", b"", b"ok")
    store.close()
    bad = b"".join(_frame(RecordType.ACK, [b"\x00\x05ab"]))  # queue overruns the payload
    with (d / SEG1).open("ab") as f:
        f.write(bad)
    with capture_logs() as logs:
        store, rec = MessageStore.open(d, fsync="never")
    store.abandon()
    assert [m.msg_id for m in rec.queues[Q1]] == [1]
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "storage_undecodable_record"
    ]
