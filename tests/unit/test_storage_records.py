"""Record format and segment scanning (warrenmq.storage.records, warrenmq.storage.segment).

Exact frame layout (magic, type, length, CRC over type+length+payload), encode/decode
round trips of every record type (hypothesis for PUBLISH), limits refused at encode time,
scanning a valid stream whole, scanning random bytes (never raises, yields only records
that validate), resync after damage, and segment naming/listing.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from warrenmq.storage.records import (
    HEADER_SIZE,
    MAGIC,
    RecordType,
    decode_ack_many,
    decode_drop_queue,
    decode_failures,
    decode_publish,
    decode_queue_msg,
    encode_ack,
    encode_ack_many,
    encode_delivered,
    encode_drop_queue,
    encode_failures,
    encode_publish,
)
from warrenmq.storage.segment import list_segments, scan, segment_name

P = Path("seg")


def publish_bytes(*args: object) -> bytes:
    return b"".join(encode_publish(*args))  # type: ignore[arg-type]


def records(buf: bytes) -> list[tuple[int, int, int, int]]:
    return list(scan(buf, P))


def test_frame_layout_is_magic_type_length_crc_payload() -> None:
    rec = encode_ack("v\x00q", 258)
    payload = b"\x00\x03v\x00q" + (258).to_bytes(8, "big")
    type_len = bytes([RecordType.ACK]) + len(payload).to_bytes(4, "big")
    assert rec == MAGIC + type_len + zlib.crc32(type_len + payload).to_bytes(4, "big") + payload
    assert HEADER_SIZE == 13


def test_publish_layout_puts_the_body_last() -> None:
    parts = encode_publish(5, ("q",), "ex", "rk", b"PP", b"BODY", published_ms=1234)
    rec = b"".join(parts)
    assert rec.endswith(b"BODY")
    payload = rec[HEADER_SIZE:]
    assert payload == (
        struct.pack(">QH", 5, 1)
        + b"\x00\x01q"
        + b"\x02ex"
        + b"\x02rk"
        + struct.pack(">Q", 1234)
        + b"\x00\x00\x00\x02PP"
        + b"BODY"
    )
    assert parts[-1] == b"BODY"  # passed through as its own part (no copy while encoding)


@given(
    msg_id=st.integers(0, 2**64 - 1),
    queues=st.lists(st.text(max_size=40), min_size=1, max_size=5),
    exchange=st.text(max_size=60).filter(lambda s: len(s.encode()) <= 255),
    routing_key=st.text(max_size=60).filter(lambda s: len(s.encode()) <= 255),
    properties=st.binary(max_size=300),
    body=st.binary(max_size=2000),
)
def test_publish_round_trip(
    msg_id: int,
    queues: list[str],
    exchange: str,
    routing_key: str,
    properties: bytes,
    body: bytes,
) -> None:
    buf = b"junk" + publish_bytes(msg_id, queues, exchange, routing_key, properties, body)
    ((rtype, rstart, start, end),) = records(buf[4:])
    assert (rtype, rstart, end) == (RecordType.PUBLISH, 0, len(buf) - 4)
    rec = decode_publish(buf, start + 4, end + 4)
    assert (rec.msg_id, rec.queues, rec.exchange, rec.routing_key, rec.properties) == (
        msg_id,
        tuple(queues),
        exchange,
        routing_key,
        properties,
    )
    assert buf[rec.body_start : rec.body_end] == body
    assert rec.published_ms == 0


def test_small_record_round_trips() -> None:
    buf = (
        encode_ack("a\x00b", 1)
        + encode_delivered("ü", 2**64 - 1)
        + encode_failures("q", 3, 2**32 - 1)
        + encode_drop_queue("x\x00y")
    )
    found = records(buf)
    assert [r[0] for r in found] == [
        RecordType.ACK,
        RecordType.DELIVERED,
        RecordType.FAILURES,
        RecordType.DROP_QUEUE,
    ]
    (_, _, s1, e1), (_, _, s2, e2), (_, _, s3, e3), (_, _, s4, e4) = found
    assert decode_queue_msg(buf, s1, e1) == ("a\x00b", 1)
    assert decode_queue_msg(buf, s2, e2) == ("ü", 2**64 - 1)
    assert decode_failures(buf, s3, e3) == ("q", 3, 2**32 - 1)
    assert decode_drop_queue(buf, s4, e4) == "x\x00y"


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: encode_publish(1, (), "", "", b"", b""), "at least one queue"),
        (lambda: encode_publish(1, ("q",), "x" * 256, "", b"", b""), "short string"),
        (lambda: encode_publish(1, ("q",), "", "é" * 128, b"", b""), "short string"),
        (lambda: encode_publish(-1, ("q",), "", "", b"", b""), "64 bits"),
        (lambda: encode_ack("q" * 70000, 1), "queue key"),
    ],
)
def test_encode_refuses_what_cannot_be_framed(call: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        call()  # type: ignore[operator]


def test_decoders_reject_malformed_payloads() -> None:
    with pytest.raises(ValueError):
        decode_queue_msg(b"\x00\x05ab", 0, 4)
    with pytest.raises(ValueError):
        decode_failures(b"\x00\x01q" + b"\x00" * 8, 0, 11)
    with pytest.raises(ValueError):
        decode_drop_queue(b"\x00\x01qq", 0, 4)
    with pytest.raises(ValueError):
        decode_publish(b"\x00" * 10, 0, 10)  # no queue
    with pytest.raises(ValueError):
        decode_publish(b"\x00" * 8 + b"\x00\x01\x00\x01q\x05", 0, 14)  # exchange overruns


@given(st.binary(max_size=400))
def test_scanning_random_bytes_never_raises(data: bytes) -> None:
    with capture_logs():
        for rtype, rstart, start, end in scan(data, P):
            assert data[rstart : rstart + 4] == MAGIC and start == rstart + HEADER_SIZE
            assert end <= len(data) and rtype in set(RecordType)


@given(
    st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=8),
    st.binary(min_size=1, max_size=30),
    st.data(),
)
def test_scan_resyncs_after_garbage_anywhere(
    ids: list[int], garbage: bytes, data: st.DataObject
) -> None:
    recs = [encode_ack("q", i) for i in ids]
    at = data.draw(st.integers(0, len(recs)))
    buf = b"".join(recs[:at]) + garbage + b"".join(recs[at:])
    with capture_logs() as logs:
        found = [decode_queue_msg(buf, s, e)[1] for _, _, s, e in scan(buf, P)]
    # Every intact record is found (garbage can only hide itself, never a valid record).
    assert found == ids
    assert all(e["event"] == "storage_corrupt_record" for e in logs)
    assert len(logs) <= 1


def test_scan_reports_offsets_of_each_damaged_region() -> None:
    a, b, c = (encode_ack("q", i) for i in (1, 2, 3))
    buf = a + b"\x00" * 7 + b + b"XY" + c + b"WMQr"
    damaged: list[tuple[str, int]] = []
    with capture_logs() as logs:
        found = records_with(buf, damaged)
    assert found == [1, 2, 3]
    starts = [len(a), len(a) + 7 + len(b), len(buf) - 4]
    assert [e["offset"] for e in logs] == starts
    assert [e["skipped"] for e in logs] == [7, 2, 4]
    assert [e["torn_tail"] for e in logs] == [False, False, True]
    assert damaged == [(str(P), s) for s in starts]


def records_with(buf: bytes, damaged: list[tuple[str, int]]) -> list[int]:
    return [decode_queue_msg(buf, s, e)[1] for _, _, s, e in scan(buf, P, damaged)]


def test_segment_names_sort_in_log_order_and_listing_ignores_others(tmp_path: Path) -> None:
    assert segment_name(1) == "0000000000000001.seg"
    assert segment_name(10**15) == "1000000000000000.seg"
    for seq in (10, 2, 1):
        (tmp_path / segment_name(seq)).write_bytes(b"")
    (tmp_path / "notes.txt").write_bytes(b"")
    (tmp_path / "12.seg").write_bytes(b"")
    (tmp_path / segment_name(3)).mkdir()
    assert list_segments(tmp_path) == [1, 2, 10]


def test_ack_many_round_trip_and_malformed_payloads() -> None:
    rec = encode_ack_many("v\x00q", [1, 2**64 - 1, 7])
    ((rtype, _, start, end),) = records(rec)
    assert rtype == RecordType.ACK_MANY
    assert decode_ack_many(rec, start, end) == ("v\x00q", (1, 2**64 - 1, 7))
    with pytest.raises(ValueError):
        decode_ack_many(b"\x00\x01q" + b"\x00" * 7, 0, 10)  # not whole ids
    with pytest.raises(ValueError):
        decode_ack_many(b"\x00\x01q", 0, 3)  # no id at all
