"""AMQP field values and tables (warrenmq.protocol.fields).

Round trips of nested tables and arrays under hypothesis; pamqp as an oracle in both
directions (pamqp-encoded tables decode with ours to equal values, ours decode with
pamqp); every RabbitMQ table type tag decoded from fixed bytes; truncation at every cut
point, random bytes and absurd nesting raise only ``FieldError``; encoding refuses short
strings over 255 bytes and values a table cannot carry.

Known, intended divergences from pamqp (documented, not bugs):
- integers: pamqp picks the smallest tag (b/s/u/I/i/l); we always write I or l;
- floats: pamqp writes ``f`` (32-bit, lossy); we write ``d`` (64-bit);
- table keys: pamqp sorts them; we keep insertion order.
So byte equality is only expected for tables without numbers and with sorted keys;
elsewhere the decoded values are compared.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import decode as pdecode
from pamqp import encode as pencode

from warrenmq.protocol.fields import (
    MAX_NESTING,
    FieldError,
    MalformedUtf8,
    Timestamp,
    check_table_body,
    decode_longstr_bytes,
    decode_shortstr,
    decode_table,
    encode_longstr,
    encode_shortstr,
    encode_table,
    encode_value,
)

# ------------------------------------------------------------------ strategies

keys = st.text(max_size=12)
int64 = st.integers(-(2**63), 2**63 - 1)
decimals = st.builds(
    lambda unscaled, scale: Decimal(unscaled).scaleb(-scale),
    st.integers(-(2**31), 2**31 - 1),
    st.integers(0, 12),
)
# UTC, whole seconds, below 2**32 (pamqp reads larger values as milliseconds).
timestamps = st.integers(0, 4_102_444_800).map(lambda s: datetime.fromtimestamp(s, UTC))


def _leaves(floats: st.SearchStrategy[float]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.text(max_size=20),
        int64,
        floats,
        st.booleans(),
        st.none(),
        decimals,
        timestamps,
        st.binary(max_size=20).map(bytearray),
    )


def _values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(keys, children, max_size=4),
        ),
        max_leaves=12,
    )


values = _values(_leaves(st.floats(allow_nan=False)))
tables = st.dictionaries(keys, values, max_size=6)
# pamqp writes floats as 32-bit: only floats exactly representable survive its encoder.
pamqp_values = _values(_leaves(st.floats(allow_nan=False, width=32)))
pamqp_tables = st.dictionaries(keys, pamqp_values, max_size=6)


def decode_whole(data: bytes) -> dict[str, Any]:
    table, end = decode_table(data, 0)
    assert end == len(data)
    return table


# ------------------------------------------------------------------ round trips


@settings(max_examples=100, deadline=None)
@given(tables)
def test_table_round_trip(table: dict[str, Any]) -> None:
    assert decode_whole(encode_table(table)) == table


@settings(max_examples=100, deadline=None)
@given(tables, st.binary(min_size=1, max_size=10), st.binary(max_size=10))
def test_table_decodes_at_an_offset_and_leaves_trailing_bytes(
    table: dict[str, Any], prefix: bytes, suffix: bytes
) -> None:
    raw = encode_table(table)
    decoded, end = decode_table(prefix + raw + suffix, len(prefix))
    assert decoded == table
    assert end == len(prefix) + len(raw)


@settings(max_examples=100, deadline=None)
@given(values)
def test_value_types_survive_the_round_trip(value: Any) -> None:
    decoded = decode_whole(encode_table({"v": value}))["v"]
    assert decoded == value
    assert type(decoded) is type(value)


def test_empty_table_is_four_zero_bytes() -> None:
    assert encode_table({}) == b"\x00\x00\x00\x00"
    assert encode_table(None) == b"\x00\x00\x00\x00"
    assert decode_table(b"\x00\x00\x00\x00", 0) == ({}, 4)


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        (None, b"V"),
        (True, b"t"),
        (False, b"t"),
        (0, b"I"),
        (-(2**31), b"I"),
        (2**31 - 1, b"I"),
        (2**31, b"l"),
        (-(2**31) - 1, b"l"),
        (1.5, b"d"),
        ("s", b"S"),
        (b"raw", b"S"),
        (bytearray(b"x"), b"x"),
        (Decimal("1.25"), b"D"),
        (datetime(2020, 1, 1, tzinfo=UTC), b"T"),
        ({"a": 1}, b"F"),
        ([1, 2], b"A"),
    ],
)
def test_encoder_type_tags(value: Any, tag: bytes) -> None:
    assert encode_value(value)[:1] == tag


def test_bytes_longstr_decodes_to_str_when_utf8_and_bytes_otherwise() -> None:
    table = decode_whole(encode_table({"a": b"text", "b": b"\xff\xfe"}))
    assert table == {"a": "text", "b": b"\xff\xfe"}


def test_decimal_wire_format() -> None:
    assert encode_value(Decimal("-1.25")) == b"D\x02" + struct.pack(">i", -125)
    assert encode_value(Decimal("1E+2")) == b"D\x00" + struct.pack(">i", 100)


# ------------------------------------------------------------------ every tag, fixed bytes


def _entry(tag: bytes, payload: bytes) -> bytes:
    body = b"\x01k" + tag + payload
    return struct.pack(">I", len(body)) + body


@pytest.mark.parametrize(
    ("tag", "payload", "expected"),
    [
        (b"t", b"\x00", False),
        (b"t", b"\x02", True),
        (b"b", b"\xff", -1),
        (b"B", b"\xff", 255),
        (b"s", b"\xff\xfe", -2),
        (b"u", b"\xff\xff", 65535),
        (b"I", b"\xff\xff\xff\xfd", -3),
        (b"i", b"\xff\xff\xff\xff", 4294967295),
        (b"l", b"\xff" * 8, -1),
        (b"f", struct.pack(">f", 0.5), 0.5),
        (b"d", struct.pack(">d", -2.25), -2.25),
        (b"D", b"\x03" + struct.pack(">i", -12345), Decimal("-12.345")),
        (b"S", b"\x00\x00\x00\x03abc", "abc"),
        (b"x", b"\x00\x00\x00\x02\x00\xff", bytearray(b"\x00\xff")),
        (b"A", b"\x00\x00\x00\x04V\x62\x07V", [None, 7, None]),
        (b"T", struct.pack(">Q", 1_600_000_000), datetime.fromtimestamp(1_600_000_000, UTC)),
        (b"F", b"\x00\x00\x00\x03\x01zV", {"z": None}),
        (b"V", b"", None),
    ],
)
def test_every_rabbitmq_tag_decodes(tag: bytes, payload: bytes, expected: Any) -> None:
    assert decode_whole(_entry(tag, payload)) == {"k": expected}


@pytest.mark.parametrize("tag", [b"L", b"U", b"\x00", b"c", b"Z", b"\xff"])
def test_unknown_tag_is_field_error(tag: bytes) -> None:
    with pytest.raises(FieldError):
        decode_table(_entry(tag, b"\x00" * 8), 0)


@pytest.mark.parametrize("seconds", [253402300800, 2**64 - 1])
def test_timestamp_past_year_9999_round_trips_as_a_number(seconds: int) -> None:
    """RabbitMQ accepts any 64-bit 'T' in method tables; so do we, and re-encode it as
    a timestamp."""
    data = _entry(b"T", struct.pack(">Q", seconds))
    table, _ = decode_table(data, 0)
    assert table == {"k": seconds}
    assert isinstance(table["k"], Timestamp)
    assert encode_table(table) == data


def test_table_whose_entries_overrun_its_length_is_field_error() -> None:
    # declared 4 bytes, but the entry needs 4 + a 4-byte int
    body = b"\x01kI\x00\x00\x00\x01"
    with pytest.raises(FieldError):
        decode_table(struct.pack(">I", 4) + body, 0)


def test_array_whose_items_overrun_its_length_is_field_error() -> None:
    array = b"A" + struct.pack(">I", 2) + b"I\x00\x00\x00\x01"
    body = b"\x01k" + array
    with pytest.raises(FieldError):
        decode_table(struct.pack(">I", len(body)) + body, 0)


# ------------------------------------------------------------------ pamqp oracle


def _normalise(value: Any) -> Any:
    """pamqp and we agree on value types; this only flattens containers for comparison."""
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


@settings(max_examples=100, deadline=None)
@given(pamqp_tables)
def test_pamqp_encoded_tables_decode_with_ours(table: dict[str, Any]) -> None:
    raw = pencode.field_table(table)
    assert _normalise(decode_whole(raw)) == _normalise(table)


@settings(max_examples=100, deadline=None)
@given(tables)
def test_our_tables_decode_with_pamqp(table: dict[str, Any]) -> None:
    raw = encode_table(table)
    consumed, decoded = pdecode.field_table(raw)
    assert consumed == len(raw)
    assert _normalise(decoded) == _normalise(table)


_no_numbers = st.recursive(
    st.one_of(
        st.text(max_size=20),
        st.booleans(),
        st.none(),
        decimals,
        timestamps,
        st.binary(max_size=10).map(bytearray),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(keys, children, max_size=3).map(lambda d: dict(sorted(d.items()))),
    ),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, _no_numbers, max_size=5).map(lambda d: dict(sorted(d.items()))))
def test_bytes_identical_to_pamqp_without_numbers(table: dict[str, Any]) -> None:
    assert encode_table(table) == pencode.field_table(table)


def test_pamqp_small_int_tags_decode_to_the_same_ints() -> None:
    table = {"b": -5, "s": -300, "u": 40000, "I": -70000, "i": 3_000_000_000, "l": -(2**40)}
    raw = pencode.field_table(table)
    # pamqp chose b, s, u, I, i, l: all of them differ from our I/l choice except two
    assert raw != encode_table(dict(sorted(table.items())))
    assert decode_whole(raw) == table


# ------------------------------------------------------------------ malformed input


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(keys, values, min_size=1, max_size=4))
def test_truncated_at_every_cut_point_raises_field_error(table: dict[str, Any]) -> None:
    raw = encode_table(table)
    for cut in range(len(raw)):
        with pytest.raises(FieldError):
            decode_table(raw[:cut], 0)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(keys, values, min_size=1, max_size=4))
def test_truncated_body_with_a_consistent_length_prefix(table: dict[str, Any]) -> None:
    """Cut the body anywhere and fix up the length: either FieldError or a valid prefix."""
    body = encode_table(table)[4:]
    items = list(table.items())
    for cut in range(len(body)):
        data = struct.pack(">I", cut) + body[:cut]
        try:
            decoded = decode_whole(data)
        except FieldError:
            continue
        # A cut exactly between entries is a smaller, valid table.
        assert list(decoded.items()) == items[: len(decoded)]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_field_error(data: bytes) -> None:
    try:
        decode_table(data, 0)
    except FieldError:
        pass


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_table_body_raises_only_field_error(body: bytes) -> None:
    # A correct length prefix gets the random bytes past the first check.
    try:
        decode_table(struct.pack(">I", len(body)) + body, 0)
    except FieldError:
        pass


@pytest.mark.parametrize("depth", [50, 200, 256, 257, 3000])
@pytest.mark.parametrize("container", ["A", "F"])
def test_deep_nesting_never_escapes_as_recursion_error(container: str, depth: int) -> None:
    """About 5-7 bytes per level: a 131 KiB frame could nest 20,000 levels deep."""
    value = b"V"
    for _ in range(depth):
        if container == "A":
            value = b"A" + struct.pack(">I", len(value)) + value
        else:
            entry = b"\x01k" + value
            value = b"F" + struct.pack(">I", len(entry)) + entry
    data = _entry(value[:1], value[1:])
    try:
        table, _ = decode_table(data, 0)
    except FieldError:
        assert depth > MAX_NESTING
        return
    assert depth <= MAX_NESTING
    assert "k" in table


def test_shortstr_round_trip_and_limits() -> None:
    assert encode_shortstr("") == b"\x00"
    assert encode_shortstr("é") == b"\x02\xc3\xa9"
    assert decode_shortstr(encode_shortstr("x" * 255), 0) == ("x" * 255, 256)
    with pytest.raises(FieldError):
        encode_shortstr("x" * 256)
    with pytest.raises(FieldError):
        encode_shortstr("é" * 128)  # 128 characters, 256 bytes


def test_table_key_over_255_bytes_is_refused_on_encode() -> None:
    with pytest.raises(FieldError):
        encode_table({"k" * 256: 1})


@pytest.mark.parametrize("raw", [b"\x02\xff\xfe", b"\x01\x80", b"\x02\xe2\x82"])
def test_invalid_utf8_method_shortstr_is_malformed_utf8(raw: bytes) -> None:
    with pytest.raises(MalformedUtf8):
        decode_shortstr(raw, 0)


def test_invalid_utf8_table_key_passes_through() -> None:
    """RabbitMQ keeps a table key's bytes whatever they are; so do we, byte for byte."""
    body = b"\x02\xff\xfeV"
    data = struct.pack(">I", len(body)) + body
    table, _ = decode_table(data, 0)
    assert encode_table(table) == data
    check_table_body(data, 4, len(data))


@pytest.mark.parametrize("raw", [b"", b"\x05abc"])
def test_truncated_shortstr_is_field_error(raw: bytes) -> None:
    with pytest.raises(FieldError):
        decode_shortstr(raw, 0)


@pytest.mark.parametrize("raw", [b"", b"\x00\x00", b"\x00\x00\x00\x05abc"])
def test_truncated_longstr_is_field_error(raw: bytes) -> None:
    with pytest.raises(FieldError):
        decode_longstr_bytes(raw, 0)


def test_longstr_round_trip() -> None:
    assert decode_longstr_bytes(encode_longstr(b"\x00\xff"), 0) == (b"\x00\xff", 6)
    assert decode_longstr_bytes(encode_longstr("é"), 0) == ("é".encode(), 6)


@pytest.mark.parametrize(
    "value",
    [
        object(),
        {1, 2},
        2**63,
        -(2**63) - 1,
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal(2**31),  # mantissa beyond a signed 32-bit int
        Decimal("1E-300"),  # scale beyond an octet
        datetime(1960, 1, 1, tzinfo=UTC),  # before the epoch: not an unsigned timestamp
    ],
    ids=repr,
)
def test_unencodable_values_raise_field_error(value: Any) -> None:
    with pytest.raises(FieldError):
        encode_table({"k": value})
