"""The pure parts of x-delayed-message: ``delay_of`` (the plugin's reading of x-delay),
the ``DelayHeap`` (due order, then arrival; packed entries), and the fast slice of the
memory benchmark (``benchmarks/delayed_memory.py``): what a held message costs beyond
its body, measured with tracemalloc at 20,000 messages.
"""

from __future__ import annotations

import gc
import random
import tracemalloc
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from warrenmq.exchange.delayed import MAX_DELAY, DelayHeap, delay_of, pack, unpack
from warrenmq.protocol.fields import Timestamp, decode_table, encode_table


@pytest.mark.parametrize(("value", "delay"), [
    (None, 0), (0, 0), (-1, 0), (1, 1), (5000, 5000), (MAX_DELAY, MAX_DELAY),
    (MAX_DELAY + 1, 0), (2**63 - 1, 0),
    ("5000", 5000), ("+12", 12), ("-12", 0), ("", 0), ("12 ", 0), ("1e3", 0), ("abc", 0),
    (12.9, 12), (0.5, 0), (float("nan"), 0), (float("inf"), 0), (Decimal("7.9"), 7),
    (True, 0), (False, 0), (datetime(2030, 1, 1, tzinfo=UTC), 0), (Timestamp(10**12), 0),
    (bytearray(b"100"), 0), ([100], 0), ({"a": 1}, 0),
])
def test_delay_of(value: Any, delay: int) -> None:
    assert delay_of({"x-delay": value} if value is not None else {}) == delay


@pytest.mark.parametrize("encoded", [b"b\x05", b"s\x00\x05", b"I\x00\x00\x00\x05",
                                     b"l\x00\x00\x00\x00\x00\x00\x00\x05", b"B\x05",
                                     b"u\x00\x05", b"i\x00\x00\x00\x05"])
def test_every_integer_width_on_the_wire_is_a_delay(encoded: bytes) -> None:
    key = b"\x07x-delay"
    table = key + encoded
    headers, _ = decode_table(len(table).to_bytes(4, "big") + table, 0)
    assert delay_of(headers) == 5


def test_no_headers_means_no_delay() -> None:
    assert delay_of(None) == 0
    assert delay_of(decode_table(encode_table({"other": 5}), 0)[0]) == 0


def test_heap_releases_in_due_order_then_arrival_order() -> None:
    rng = random.Random(7)
    heap = DelayHeap()
    expected = []
    for seq in range(1, 2001):
        due = 1_000_000 + rng.randrange(0, 500)  # many equal due times
        body = b"%d" % seq
        heap.push(due, seq, seq % 3 == 0, b"\x01x\x01k", b"\x00\x00", body)
        expected.append((due, seq, body))
    assert len(heap) == 2000 and heap.body_bytes == sum(len(b) for _, _, b in expected)
    expected.sort()
    assert heap.next_due() == expected[0][0]
    assert [(h.due_ms, h.seq) for h in heap.earliest(5)] == [e[:2] for e in expected[:5]]
    out = []
    cutoff = expected[999][0]
    while batch := heap.pop_due(cutoff, 100):
        assert len(batch) <= 100
        out.extend(batch)
    assert all(h.due_ms <= cutoff for h in out)
    assert heap.next_due() > cutoff or heap.next_due() == 0
    out.extend(heap.pop_due(2**62, 10**6))
    assert [(h.due_ms, h.seq, h.body) for h in out] == expected
    assert [h.stored for h in out] == [e[1] % 3 == 0 for e in expected]
    assert len(heap) == 0 and heap.body_bytes == 0 and heap.next_due() == 0


def test_push_says_when_it_became_the_earliest() -> None:
    heap = DelayHeap()
    assert heap.push(500, 1, False, b"", b"", b"")
    assert not heap.push(600, 2, False, b"", b"", b"")
    assert heap.push(400, 3, False, b"", b"", b"")


def test_pack_unpack_round_trip() -> None:
    route = b"\x05later\x03a.b"
    entry = pack(2**40, 2**60, True, route, b"\x10\x00\x02", b"\x00body\xff")
    held = unpack(entry)
    assert held == (2**40, 2**60, True, route, b"\x10\x00\x02", b"\x00body\xff")
    heap = DelayHeap()
    heap.extend([entry, pack(5, 1, False, route, b"", b"xy")])
    assert heap.next_due() == 5 and heap.body_bytes == 8


def test_a_held_message_costs_little_beyond_its_body() -> None:
    """The benchmark's fast slice: 20,000 held 100-byte messages, counted by tracemalloc
    (the heap's list and entries: route, properties, 23-byte head, object header)."""
    count, size = 20_000, 100
    route = b"\x05later\x01k"
    properties = b"\x30\x00" + encode_table({"x-delay": -60000}) + b"\x02"
    gc.collect()
    tracemalloc.start()
    try:
        heap = DelayHeap()
        for seq in range(count):
            heap.push(1_000_000 + seq % 977, seq, False, route, properties, bytes(size))
        allocated, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    beyond = allocated / count - size
    # 33 (bytes object) + 23 (head) + 9 (route) + 20 (properties) + ~9 (list slot)
    assert beyond < 110, beyond
