"""StreamLog: appends, commits, reads across segments, seeks by offset and time,
records larger than a read block or a segment, retention, recovery and torn tails."""

from __future__ import annotations

from pathlib import Path

from warrenmq.storage.stream import MAGIC, READ_BLOCK, StreamLog


def commit(log: StreamLog) -> None:
    batch = log.take()
    if batch is not None:
        log.write(batch)
        log.finish(batch, True)


def fill(log: StreamLog, count: int, size: int = 100, ts: int = 1000, per_commit: int = 1
         ) -> None:
    for i in range(count):
        log.append(ts + i, b"", b"\x00\x01q", b"\x00\x00", bytes([i % 251]) * size)
        if (i + 1) % per_commit == 0:
            commit(log)
    commit(log)


def read_all(log: StreamLog, offset: int) -> list[int]:
    where = log.position(offset)
    out: list[int] = []
    while True:
        records, where = log.read(where, 1000)
        if not records:
            return out
        out.extend(r.offset for r in records)


def test_only_committed_records_are_readable(tmp_path: Path) -> None:
    log = StreamLog.open(tmp_path / "s", 10_000)
    log.append(1, b"", b"r", b"\x00\x00", b"a")
    assert read_all(log, 0) == []
    commit(log)
    assert read_all(log, 0) == [0]


def test_segments_roll_and_reads_cross_them(tmp_path: Path) -> None:
    log = StreamLog.open(tmp_path / "s", 1000)
    fill(log, 50)
    assert len(log.segments) > 5
    assert read_all(log, 0) == list(range(50))
    assert read_all(log, 37) == list(range(37, 50))
    assert log.offset_at_time(1000 + 20) == 20
    assert log.offset_at_time(99_999) == 50


def test_chunks_define_last(tmp_path: Path) -> None:
    log = StreamLog.open(tmp_path / "s", 1 << 20)
    fill(log, 10, per_commit=4)  # chunks 0-3, 4-7, 8-9
    assert log.last_chunk == 8
    log.close()
    again = StreamLog.open(tmp_path / "s", 1 << 20)
    assert again.last_chunk == 8 and again.committed == 10


def test_records_larger_than_a_block_and_a_segment(tmp_path: Path) -> None:
    log = StreamLog.open(tmp_path / "s", 1000)
    big = READ_BLOCK + 123
    log.append(1, b"f", b"r", b"\x00\x00", b"b" * big)
    log.append(2, b"", b"r", b"\x00\x00", b"small")
    commit(log)
    records, _ = log.read(log.position(0), 10)
    assert [len(r.body) for r in records] == [big, 5]
    assert records[0].filter_value == b"f"
    assert read_all(log, 0) == [0, 1]
    log.close()
    again = StreamLog.open(tmp_path / "s", 1000)
    assert read_all(again, 0) == [0, 1]


def test_retention_keeps_the_newest_segment(tmp_path: Path) -> None:
    log = StreamLog.open(tmp_path / "s", 1000)
    fill(log, 40)
    removed = log.retain(0, None, 0)
    assert removed > 0 and len(log.segments) == 1
    assert read_all(log, 0) == list(range(log.first_offset, 40))


def test_recovery_reads_one_header_per_old_segment(tmp_path: Path) -> None:
    log = StreamLog.open(tmp_path / "s", 1000)
    fill(log, 60)
    count = len(log.segments)
    log.close()
    again = StreamLog.open(tmp_path / "s", 1000)
    assert len(again.segments) == count
    assert again.committed == again.next_offset == 60
    assert [s.first_ts for s in again.segments] == [1000 + s.first for s in again.segments]


def test_torn_tail_and_bad_crc_are_cut(tmp_path: Path) -> None:
    log = StreamLog.open(tmp_path / "s", 1 << 20)
    fill(log, 5)
    log.close()
    path = next((tmp_path / "s").glob("*.seg"))
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # the last record's body: its CRC fails
    path.write_bytes(bytes(data))
    again = StreamLog.open(tmp_path / "s", 1 << 20)
    assert again.committed == 4
    assert read_all(again, 0) == [0, 1, 2, 3]
    again.append(9, b"", b"r", b"\x00\x00", b"next")
    commit(again)
    assert read_all(again, 4) == [4]


def test_a_segment_without_its_header_is_reset(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / f"{0:020d}.seg").write_bytes(MAGIC[:3])
    log = StreamLog.open(tmp_path / "s", 1000)
    assert log.committed == 0
    fill(log, 2)
    assert read_all(log, 0) == [0, 1]


def test_read_descriptors_are_bounded(tmp_path: Path) -> None:
    from warrenmq.storage.stream import MAX_OPEN

    log = StreamLog.open(tmp_path / "s", 500)
    fill(log, 100)
    assert len(log.segments) > 3 * MAX_OPEN
    assert read_all(log, 0) == list(range(100))
    assert sum(1 for s in log.segments if s.fd >= 0) <= MAX_OPEN + 1
    log.close()
    again = StreamLog.open(tmp_path / "s", 500)
    assert sum(1 for s in again.segments if s.fd >= 0) == 1  # the newest only
    assert read_all(again, 0) == list(range(100))


def test_record_fields_round_trip_at_their_widths(tmp_path: Path) -> None:
    """Every field is read back exactly at the edges of its width: a 64-bit timestamp,
    a 255-byte filter value, a 65,535-byte route, properties past 64 KiB, an empty body."""
    log = StreamLog.open(tmp_path / "s", 64 * 1024 * 1024)
    cases = [
        (2**63 - 1, b"f" * 255, b"r" * 65_535, b"p" * 70_000, b""),
        (0, b"", b"", b"", b"\xff" * (READ_BLOCK + 3)),
        (1_733_000_000_123, b"\x00\x80\xff", b"\x01a\x02bb", b"\x90\x00", b"body"),
    ]
    for ts, filter_value, route, properties, body in cases:
        log.append(ts, filter_value, route, properties, body)
    commit(log)
    got = []
    where = log.position(0)
    for _ in range(10):  # a read returns about one block's worth
        records, where = log.read(where, 10)
        got += [(r.offset, r.timestamp, r.filter_value, r.route, r.properties, r.body)
                for r in records]
    assert got == [(i, *case) for i, case in enumerate(cases)]
