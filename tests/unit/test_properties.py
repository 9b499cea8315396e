"""Basic-class content properties over raw bytes (warrenmq.protocol.properties).

encode_properties/decode_properties round trip for every property, alone and in random
combinations; get_property reads each one without decoding the rest; pamqp is the oracle
in both directions (its ContentHeader payload from byte 12 on is the property list), with
byte equality where both must encode alike; validate() rejects truncation at every cut
point, trailing bytes, the continuation flag and the unused flag bit; random bytes make
validate raise only FieldError.

Known divergences from pamqp (documented, not bugs): pamqp leaves out empty-string
properties and refuses a non-empty cluster_id or a delivery_mode other than 1/2 when
encoding; it returns the timestamp as a datetime where we return the integer seconds.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands
from pamqp.header import ContentHeader

from warrenmq.protocol.fields import FieldError, encode_table
from warrenmq.protocol.properties import (
    PROPERTIES,
    decode_properties,
    encode_properties,
    get_property,
    validate,
)

NAMES = [name for name, _ in PROPERTIES]
PAMQP_NAME = {"type": "message_type"}

# ------------------------------------------------------------------ strategies

_leaf = st.one_of(
    st.text(max_size=10),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, width=32),
)
_tables = st.dictionaries(
    st.text(max_size=8),
    st.recursive(_leaf, lambda c: st.one_of(st.lists(c, max_size=3),
                                            st.dictionaries(st.text(max_size=5), c,
                                                            max_size=3)), max_leaves=5),
    max_size=4,
)

KIND_STRATEGY: dict[str, st.SearchStrategy[Any]] = {
    "shortstr": st.text(max_size=30),
    "table": _tables,
    "octet": st.integers(0, 255),
    "longlong": st.integers(0, 2**64 - 1),
}

props_st = st.fixed_dictionaries(
    {}, optional={name: KIND_STRATEGY[kind] for name, kind in PROPERTIES}
)

# pamqp-compatible: non-empty strings, delivery mode 1/2, no cluster id, 32-bit timestamps.
pamqp_props_st = st.fixed_dictionaries(
    {},
    optional={
        name: (
            st.text(min_size=1, max_size=30) if kind == "shortstr"
            else st.sampled_from([1, 2]) if name == "delivery_mode"
            else st.integers(0, 0xFFFFFFFF) if name == "timestamp"
            else KIND_STRATEGY[kind]
        )
        for name, kind in PROPERTIES
        if name != "cluster_id"
    },
)

# Non-default example per property.
EXAMPLE: dict[str, Any] = {
    "content_type": "application/json",
    "content_encoding": "gzip",
    "headers": {"x-a": 1, "x-b": "two", "x-c": [True, None], "x-d": {"n": 1.5}},
    "delivery_mode": 2,
    "priority": 9,
    "correlation_id": "corr-é",
    "reply_to": "amq.rabbitmq.reply-to",
    "expiration": "60000",
    "message_id": "m-1",
    "timestamp": 1_700_000_000,
    "type": "order.created",
    "user_id": "guest",
    "app_id": "warren-test",
    "cluster_id": "c1",
}


def pamqp_to_ours(pp: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in NAMES:
        value = getattr(pp, PAMQP_NAME.get(name, name))
        if value is None or value == "":
            continue
        if name == "timestamp":
            value = int(value.timestamp())
        out[name] = value
    return out


def ours_to_pamqp(props: dict[str, Any]) -> Any:
    kwargs = {}
    for name, value in props.items():
        if name == "timestamp":
            value = datetime.fromtimestamp(value, UTC)
        kwargs[PAMQP_NAME.get(name, name)] = value
    return commands.Basic.Properties(**kwargs)


def pamqp_unmarshal(raw: bytes) -> Any:
    header = ContentHeader()
    header.unmarshal(struct.pack(">HHQ", 60, 0, 0) + raw)
    return header.properties


def pamqp_marshal(props: dict[str, Any]) -> bytes:
    return ContentHeader(0, 0, ours_to_pamqp(props)).marshal()[12:]


# ------------------------------------------------------------------ round trips


def test_flag_order_matches_pamqp() -> None:
    for i, (name, _) in enumerate(PROPERTIES):
        assert commands.Basic.Properties.flags[PAMQP_NAME.get(name, name)] == 1 << (15 - i)


def test_empty_property_list() -> None:
    assert encode_properties({}) == b"\x00\x00"
    assert decode_properties(b"\x00\x00") == {}
    validate(b"\x00\x00")
    assert all(get_property(b"\x00\x00", name) is None for name in NAMES)
    assert get_property(b"", "headers") is None


@pytest.mark.parametrize("name", NAMES)
def test_each_property_alone(name: str) -> None:
    raw = encode_properties({name: EXAMPLE[name]})
    assert raw[:2] == struct.pack(">H", 1 << (15 - NAMES.index(name)))
    assert decode_properties(raw) == {name: EXAMPLE[name]}
    assert get_property(raw, name) == EXAMPLE[name]
    validate(raw)
    for other in NAMES:
        if other != name:
            assert get_property(raw, other) is None


@pytest.mark.parametrize("name", NAMES)
def test_get_property_skips_every_other_property(name: str) -> None:
    raw = encode_properties(EXAMPLE)
    assert get_property(raw, name) == EXAMPLE[name]
    assert decode_properties(raw) == EXAMPLE


def test_none_values_are_left_out_and_unknown_names_refused() -> None:
    assert encode_properties({"content_type": None, "priority": 1}) == b"\x08\x00\x01"
    with pytest.raises(FieldError):
        encode_properties({"colour": "red"})


def test_wire_layout_of_a_small_set() -> None:
    raw = encode_properties({"content_type": "t", "delivery_mode": 1, "timestamp": 5})
    assert raw == b"\x90\x40" + b"\x01t" + b"\x01" + struct.pack(">Q", 5)


@settings(max_examples=200, deadline=None)
@given(props_st)
def test_round_trip_hypothesis(props: dict[str, Any]) -> None:
    raw = encode_properties(props)
    validate(raw)
    assert decode_properties(raw) == props
    for name in NAMES:
        assert get_property(raw, name) == props.get(name)


# ------------------------------------------------------------------ pamqp as the oracle


@pytest.mark.parametrize("name", [n for n in NAMES if n != "cluster_id"])
def test_each_property_from_pamqp(name: str) -> None:
    props = {name: EXAMPLE[name]}
    raw = pamqp_marshal(props)
    assert decode_properties(raw) == props
    assert get_property(raw, name) == EXAMPLE[name]


@settings(max_examples=150, deadline=None)
@given(pamqp_props_st)
def test_pamqp_encoded_properties_decode_with_ours(props: dict[str, Any]) -> None:
    raw = pamqp_marshal(props)
    validate(raw)
    assert decode_properties(raw) == props


@settings(max_examples=150, deadline=None)
@given(props_st)
def test_our_properties_decode_with_pamqp(props: dict[str, Any]) -> None:
    if props.get("timestamp", 0) > 0xFFFFFFFF:
        props["timestamp"] = 0xFFFFFFFF  # pamqp reads larger values as milliseconds
    raw = encode_properties(props)
    expected = {k: v for k, v in props.items() if v != ""}
    assert pamqp_to_ours(pamqp_unmarshal(raw)) == expected


_plain_table = st.dictionaries(
    st.text(max_size=8), st.one_of(st.text(max_size=8), st.booleans(), st.none()), max_size=4
).map(lambda d: dict(sorted(d.items())))


@settings(max_examples=150, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            name: (
                _plain_table if kind == "table"
                else st.text(min_size=1, max_size=20) if kind == "shortstr"
                else st.sampled_from([1, 2]) if name == "delivery_mode"
                else st.integers(0, 0xFFFFFFFF) if name == "timestamp"
                else KIND_STRATEGY[kind]
            )
            for name, kind in PROPERTIES
            if name != "cluster_id"
        },
    )
)
def test_bytes_identical_to_pamqp(props: dict[str, Any]) -> None:
    # Tables without numbers and with sorted keys: the one case both must encode alike.
    assert encode_properties(props) == pamqp_marshal(props)


# ------------------------------------------------------------------ validate()


@settings(max_examples=100, deadline=None)
@given(props_st.filter(bool))
def test_truncated_at_every_cut_point_is_refused(props: dict[str, Any]) -> None:
    raw = encode_properties(props)
    for cut in range(len(raw)):
        with pytest.raises(FieldError):
            validate(raw[:cut])


@settings(max_examples=100, deadline=None)
@given(props_st, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_refused(props: dict[str, Any], extra: bytes) -> None:
    with pytest.raises(FieldError):
        validate(encode_properties(props) + extra)


@pytest.mark.parametrize("bit", [0x0001, 0x0002])
def test_continuation_and_unused_flag_bits_are_refused(bit: int) -> None:
    raw = encode_properties({"content_type": "x"})
    flags = struct.unpack(">H", raw[:2])[0] | bit
    with pytest.raises(FieldError):
        validate(struct.pack(">H", flags) + raw[2:])
    with pytest.raises(FieldError):
        validate(struct.pack(">H", bit))


def test_continuation_with_a_second_flag_word_is_refused() -> None:
    # What a sender using property flag continuation would send: not valid for basic.
    with pytest.raises(FieldError):
        validate(b"\x80\x01\x00\x00\x01x")


def test_invalid_utf8_passes_and_bad_table_is_refused() -> None:
    validate(b"\x80\x00\x02\xff\xfe")  # content_type not UTF-8: passed on, as RabbitMQ
    with pytest.raises(FieldError):
        validate(b"\x20\x00" + encode_table({"k": 1})[:-1])  # headers table truncated
    with pytest.raises(FieldError):
        validate(b"\x20\x00\x00\x00\x00\x02\x01k")  # headers entry with no value


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_random_bytes_raise_only_field_error(raw: bytes) -> None:
    try:
        validate(raw)
    except FieldError:
        return
    # Whatever validates decodes, and get_property agrees with decode_properties.
    decoded = decode_properties(raw)
    for name in NAMES:
        assert get_property(raw, name) == decoded.get(name)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 0xFFFC).map(lambda f: f & 0xFFFC), st.binary(max_size=60))
def test_random_flags_and_body_raise_only_field_error(flags: int, body: bytes) -> None:
    raw = struct.pack(">H", flags) + body
    try:
        validate(raw)
    except FieldError:
        return
    assert set(decode_properties(raw)) == {
        name for i, name in enumerate(NAMES) if flags & (1 << (15 - i))
    }
