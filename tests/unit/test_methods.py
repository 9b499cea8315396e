"""AMQP method codec (warrenmq.protocol.methods) against spec.METHODS and pamqp.

For every method in ``spec.METHODS``: a fixed non-default instance and hypothesis
instances round-trip through ``encode_method``/``decode_method``; our bytes equal pamqp's
marshal where both must pick the same encoding (tables without numbers, sorted keys);
pamqp-encoded payloads decode with ours to equal values, and ours decode with pamqp.
Every method truncated at every cut point, or followed by a trailing byte, is 502; unknown
class/method ids are 503; random payloads raise only AMQPError subclasses.

Hot path: the hand-written basic.publish/ack/nack/reject decoders agree with the generic
decoder (also on random payloads), ``parse_publish``'s route slices exactly the exchange and
routing-key short strings, and the hand-written deliver/get-ok/return/confirm frames parse
with pamqp with bodies split at frame_max - 8 and no body frame for an empty body.

Documented divergences (not bugs): the hot basic.publish decoder does not read the
reserved ``ticket`` short (always 0, as RabbitMQ ignores it); pamqp decodes a longstr as
``str`` when it is valid UTF-8, we keep ``bytes``; pamqp treats the ``longlong`` domain
(delivery tags) as signed 64-bit, the spec and we as unsigned.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands
from pamqp import frame as pframe
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from warrenmq.errors import AMQPError, CommandInvalid, FrameError, ReplyCode, SyntaxError_
from warrenmq.protocol.content import (
    DeliverEncoder,
    encode_confirm,
    encode_deliver,
    encode_get_ok,
    encode_return,
)
from warrenmq.protocol.fields import MalformedUtf8, encode_shortstr
from warrenmq.protocol.frames import FrameReader
from warrenmq.protocol.methods import (
    BY_INDEX,
    BY_NAME,
    Method,
    _decode_generic,
    decode_method,
    encode_method,
    method_frame,
    parse_publish,
)
from warrenmq.protocol.properties import encode_properties
from warrenmq.protocol.spec import CONTENT_METHODS, METHODS

pytestmark = pytest.mark.filterwarnings(
    "ignore:This command is deprecated:DeprecationWarning"  # pamqp on basic.recover-async
)

NAMES = [name for _, _, name, _ in METHODS]
PUBLISH = BY_NAME["BasicPublish"]

# ------------------------------------------------------------------ helpers


def pamqp_class(name: str) -> Any:
    for group in ("Connection", "Channel", "Exchange", "Queue", "Basic", "Confirm", "Tx"):
        if name.startswith(group):
            return getattr(getattr(commands, group), name[len(group) :])
    raise AssertionError(name)


def pamqp_attr(field: str) -> str:
    return "exchange_type" if field == "type" else field


def to_pamqp(method: Method) -> Any:
    kwargs = {}
    for field, kind in zip(method.FIELDS, method.TYPES, strict=True):
        value = getattr(method, field)
        if kind == "longstr":
            value = value.decode("utf-8")  # pamqp's longstr encoder takes str only
        kwargs[pamqp_attr(field)] = value
    return pamqp_class(method.NAME)(**kwargs)


def from_pamqp_values(cls: type[Method], pm: Any) -> dict[str, Any]:
    out = {}
    for field, kind in zip(cls.FIELDS, cls.TYPES, strict=True):
        value = getattr(pm, pamqp_attr(field))
        if kind == "longstr" and isinstance(value, str):
            value = value.encode("utf-8")
        if kind == "longlong" and value < 0:
            value += 2**64  # pamqp reads longlong as signed; the spec's is unsigned
        out[field] = value
    return out


def values_of(method: Method) -> dict[str, Any]:
    return {f: getattr(method, f) for f in method.FIELDS}


def as_decoded(method: Method) -> Method:
    """What decode_method returns for it: the hot publish decoder leaves ticket at 0."""
    if type(method) is PUBLISH:
        values = values_of(method)
        values["ticket"] = 0
        return PUBLISH(**values)
    return method


def pamqp_unmarshal_all(data: bytes) -> list[tuple[int, Any]]:
    out = []
    while data:
        consumed, channel, frame = pframe.unmarshal(data)
        out.append((channel, frame))
        data = data[consumed:]
    return out


# ------------------------------------------------------------------ strategies

SHORT_RANGES = {"octet": 2**8, "short": 2**16, "long": 2**32, "longlong": 2**64}
shortstrs = st.text(max_size=40)
NAME_ALPHABET = "abcXYZ0189-_.:@#,/+ "
names = st.text(alphabet=NAME_ALPHABET, max_size=40)  # pamqp's exchange/queue name regex

_leaf_plain = st.one_of(
    st.text(max_size=10), st.booleans(), st.none(), st.binary(max_size=8).map(bytearray)
)
_leaf_numbers = st.one_of(
    _leaf_plain,
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, width=32),
    st.builds(lambda u, s: Decimal(u).scaleb(-s), st.integers(-(2**31), 2**31 - 1),
              st.integers(0, 6)),
)


def _tables(leaf: st.SearchStrategy[Any], *, sort: bool) -> st.SearchStrategy[Any]:
    def table(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        t = st.dictionaries(st.text(max_size=8), children, max_size=3)
        return t.map(lambda d: dict(sorted(d.items()))) if sort else t

    return table(st.recursive(leaf, lambda c: st.one_of(st.lists(c, max_size=3), table(c)),
                              max_leaves=6))


tables_plain = _tables(_leaf_plain, sort=True)
tables_numbers = _tables(_leaf_numbers, sort=False)


def field_strategy(kind: str, *, table: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    if kind in SHORT_RANGES:
        return st.integers(0, SHORT_RANGES[kind] - 1)
    if kind == "shortstr":
        return shortstrs
    if kind == "longstr":
        return st.binary(max_size=40)
    if kind == "bit":
        return st.booleans()
    assert kind == "table"
    return table


# pamqp's validate() insists on these values for deprecated fields.
PAMQP_FIXED = {
    ("ConnectionOpen", "capabilities"): "",
    ("ConnectionOpen", "insist"): False,
    ("ConnectionOpenOk", "known_hosts"): "",
    ("ChannelOpen", "out_of_band"): "0",
    ("ChannelOpenOk", "channel_id"): b"0",
    ("BasicGetEmpty", "cluster_id"): "",
}


def pamqp_safe_strategy(
    kind: str, cls: type[Method], field: str, table: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    if (cls.NAME, field) in PAMQP_FIXED:
        return st.just(PAMQP_FIXED[cls.NAME, field])
    if field == "ticket":
        return st.just(0)
    if kind == "longlong":
        return st.integers(0, 2**63 - 1)  # pamqp's longlong encoder is signed
    if kind == "shortstr":
        return names
    if kind == "longstr":
        return st.text(max_size=40).map(lambda s: s.encode("utf-8"))
    return field_strategy(kind, table=table)


def build(cls: type[Method], data: st.DataObject, *, pamqp_safe: bool, table: Any) -> Method:
    kwargs = {}
    for field, kind in zip(cls.FIELDS, cls.TYPES, strict=True):
        strategy = (
            pamqp_safe_strategy(kind, cls, field, table)
            if pamqp_safe
            else field_strategy(kind, table=table)
        )
        kwargs[field] = data.draw(strategy, label=field)
    return cls(**kwargs)


# Non-default values per type; bits alternate so that both bit values appear in a group.
NON_DEFAULT = {
    "octet": 7,
    "short": 0x1234,
    "long": 0x89ABCDEF,
    "longlong": 2**63 + 5,
    "shortstr": "né-x.y",
    "longstr": b"\x00\xffdata",
    "table": {"k": "v", "n": -1, "big": 2**40, "f": 1.5, "nested": {"a": [1, "b", None]}},
}


def non_default(cls: type[Method]) -> Method:
    kwargs = {}
    bit = 0
    for field, kind in zip(cls.FIELDS, cls.TYPES, strict=True):
        if kind == "bit":
            kwargs[field] = bit % 2 == 0
            bit += 1
        else:
            kwargs[field] = NON_DEFAULT[kind]
    return cls(**kwargs)


# ------------------------------------------------------------------ the table


def test_every_spec_method_has_a_class() -> None:
    assert len(BY_INDEX) == len(METHODS) == len(BY_NAME)
    for class_id, method_id, name, _ in METHODS:
        cls = BY_NAME[name]
        assert (cls.CLASS_ID, cls.METHOD_ID) == (class_id, method_id)
        assert BY_INDEX[(class_id << 16) | method_id] is cls
        assert cls.HAS_CONTENT == ((class_id, method_id) in CONTENT_METHODS)


@pytest.mark.parametrize("name", NAMES)
def test_spec_agrees_with_pamqp(name: str) -> None:
    cls = BY_NAME[name]
    pm = pamqp_class(name)
    assert pm.index == (cls.CLASS_ID << 16) | cls.METHOD_ID
    pamqp_fields = tuple(a for a in pm.__slots__)
    assert pamqp_fields == tuple(pamqp_attr(f) for f in cls.FIELDS)
    for field, kind in zip(cls.FIELDS, cls.TYPES, strict=True):
        assert pm.amqp_type(pamqp_attr(field)) == kind


def test_constructor_defaults_and_errors() -> None:
    m = BY_NAME["BasicConsume"](queue="q")
    assert (m.queue, m.consumer_tag, m.no_ack, m.arguments, m.ticket) == ("q", "", False, {}, 0)
    with pytest.raises(TypeError):
        BY_NAME["BasicAck"](1, True, "extra")
    with pytest.raises(TypeError):
        BY_NAME["BasicAck"](nope=1)


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("name", NAMES)
def test_non_default_round_trip(name: str) -> None:
    cls = BY_NAME[name]
    method = non_default(cls)
    default = cls()
    for field, kind in zip(cls.FIELDS, cls.TYPES, strict=True):
        if kind != "bit":
            assert getattr(method, field) != getattr(default, field), field
    payload = encode_method(method)
    assert payload[:4] == bytes([cls.CLASS_ID >> 8, cls.CLASS_ID & 255, 0, cls.METHOD_ID])
    decoded = decode_method(payload)
    assert type(decoded) is cls
    assert decoded == as_decoded(method)
    assert values_of(decoded) == values_of(as_decoded(method))
    assert _decode_generic(cls, payload) == method


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_hypothesis_round_trip(name: str, data: st.DataObject) -> None:
    cls = BY_NAME[name]
    method = build(cls, data, pamqp_safe=False, table=tables_numbers)
    assert decode_method(encode_method(method)) == as_decoded(method)
    assert _decode_generic(cls, encode_method(method)) == method


def test_bits_pack_lsb_first_in_one_octet() -> None:
    m = BY_NAME["ExchangeDeclare"](exchange="x", type="direct", passive=True, internal=True)
    assert encode_method(m).endswith(b"\x09\x00\x00\x00\x00")  # bits 0 and 3, empty table
    n = BY_NAME["BasicNack"](delivery_tag=1, multiple=False, requeue=True)
    assert encode_method(n)[-1] == 0b10


def test_method_frame_wraps_the_payload() -> None:
    m = BY_NAME["ChannelOpen"]()
    frame = method_frame(5, m)
    assert frame[:3] == b"\x01\x00\x05"
    assert frame[7:-1] == encode_method(m)
    assert frame[-1] == 0xCE


# ------------------------------------------------------------------ pamqp as the oracle


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_bytes_equal_pamqp_marshal(name: str, data: st.DataObject) -> None:
    cls = BY_NAME[name]
    method = build(cls, data, pamqp_safe=True, table=tables_plain)
    assert encode_method(method) == pframe.marshal(to_pamqp(method), 1)[7:-1]


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_pamqp_payloads_decode_with_ours(name: str, data: st.DataObject) -> None:
    # Tables with numbers: pamqp picks other integer tags and 32-bit floats, so the bytes
    # differ; the decoded values must not.
    cls = BY_NAME[name]
    method = build(cls, data, pamqp_safe=True, table=tables_numbers)
    payload = pframe.marshal(to_pamqp(method), 1)[7:-1]
    assert decode_method(payload) == method


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_our_payloads_decode_with_pamqp(name: str, data: st.DataObject) -> None:
    cls = BY_NAME[name]
    method = build(cls, data, pamqp_safe=False, table=tables_numbers)
    _, channel, pm = pframe.unmarshal(method_frame(3, method))
    assert channel == 3
    assert type(pm) is pamqp_class(name)
    assert from_pamqp_values(cls, pm) == values_of(method)


# ------------------------------------------------------------------ hot path decoders

HOT = ["BasicPublish", "BasicAck", "BasicNack", "BasicReject"]


@pytest.mark.parametrize("name", HOT)
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_hot_decoders_equal_the_generic_decoder(name: str, data: st.DataObject) -> None:
    cls = BY_NAME[name]
    method = build(cls, data, pamqp_safe=False, table=tables_plain)
    if name == "BasicPublish":
        object.__setattr__(method, "ticket", 0)
    payload = encode_method(method)
    hot = decode_method(payload)
    assert hot == _decode_generic(cls, payload) == method


def _generic_or_none(cls: type[Method], payload: bytes) -> Method | None:
    try:
        return _decode_generic(cls, payload)
    except (ValueError, IndexError):
        return None


@pytest.mark.parametrize("name", HOT)
@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=30))
def test_hot_decoders_agree_with_generic_on_random_payloads(name: str, body: bytes) -> None:
    cls = BY_NAME[name]
    payload = encode_method(cls())[:4] + body
    expected = _generic_or_none(cls, payload)
    try:
        got = decode_method(payload)
    except SyntaxError_ as exc:
        assert expected is None, f"hot decoder refused what the generic one accepts: {exc}"
        assert (exc.class_id, exc.method_id) == (cls.CLASS_ID, cls.METHOD_ID)
        return
    if expected is None and name == "BasicPublish":
        # basic.publish's exchange and routing key pass through whatever their bytes
        # (RabbitMQ does not check them); the generic decoder checks UTF-8 (501)
        with pytest.raises(MalformedUtf8):
            _decode_generic(cls, payload)
        return
    assert expected is not None, f"hot decoder accepted {got!r}, generic refuses"
    if name == "BasicPublish":
        object.__setattr__(expected, "ticket", 0)
    assert got == expected


def test_hot_publish_ignores_the_reserved_ticket() -> None:
    payload = encode_method(PUBLISH(ticket=77, exchange="x", routing_key="k", mandatory=True))
    assert _decode_generic(PUBLISH, payload).ticket == 77
    decoded = decode_method(payload)
    assert decoded.ticket == 0
    assert (decoded.exchange, decoded.routing_key, decoded.mandatory) == ("x", "k", True)


@settings(max_examples=200, deadline=None)
@given(exchange=shortstrs, routing_key=st.text(max_size=60), bits=st.booleans())
def test_publish_route_is_exactly_the_two_shortstrs(
    exchange: str, routing_key: str, bits: bool
) -> None:
    payload = encode_method(PUBLISH(exchange=exchange, routing_key=routing_key, immediate=bits))
    assert parse_publish(payload)[3] == encode_shortstr(exchange) + encode_shortstr(routing_key)


def test_publish_route_from_a_pamqp_publish() -> None:
    pm = commands.Basic.Publish(exchange="amq.topic", routing_key="a.b.c", mandatory=True)
    payload = pframe.marshal(pm, 1)[7:-1]
    assert parse_publish(payload)[3] == b"\x09amq.topic\x05a.b.c"


# ------------------------------------------------------------------ hot path encoders

PROPS = encode_properties({"content_type": "text/plain", "delivery_mode": 2,
                           "headers": {"h": "v"}, "message_id": "m-1"})
ROUTE = encode_shortstr("amq.direct") + encode_shortstr("rk.1")


def check_content(frames: list[tuple[int, Any]], channel: int, body: bytes,
                  frame_max: int) -> None:
    header_channel, header = frames[1]
    assert header_channel == channel
    assert isinstance(header, ContentHeader)
    assert header.body_size == len(body)
    props = header.properties
    assert (props.content_type, props.delivery_mode, props.headers, props.message_id) == (
        "text/plain", 2, {"h": "v"}, "m-1")
    bodies = frames[2:]
    assert all(isinstance(b, ContentBody) and c == channel for c, b in bodies)
    assert b"".join(b.value for _, b in bodies) == body
    chunk = frame_max - 8
    assert len(bodies) == -(-len(body) // chunk)
    assert all(len(b.value) == chunk for _, b in bodies[:-1])


@pytest.mark.parametrize("size", [0, 1, 4088, 4089, 10000, 3 * 4088])
def test_encode_deliver_parses_with_pamqp(size: int) -> None:
    body = bytes(i % 256 for i in range(size))
    parts = encode_deliver(7, encode_shortstr("ctag-1"), 2**40 + 3, True, ROUTE, PROPS, body,
                           4096)
    raw = b"".join(parts)
    frames = pamqp_unmarshal_all(raw)
    channel, deliver = frames[0]
    assert channel == 7
    assert isinstance(deliver, commands.Basic.Deliver)
    assert (deliver.consumer_tag, deliver.delivery_tag, deliver.redelivered,
            deliver.exchange, deliver.routing_key) == ("ctag-1", 2**40 + 3, True,
                                                       "amq.direct", "rk.1")
    check_content(frames, 7, body, 4096)
    if size == 0:
        assert len(frames) == 2  # method + header, no body frame
    # our own reader, with the same frame_max, accepts every frame and agrees on them
    ours = FrameReader(4096).feed(raw)
    assert [t for t, _, _ in ours] == [1, 2] + [3] * (len(frames) - 2)
    decoded = decode_method(raw[7 : 7 + int.from_bytes(raw[3:7], "big")])
    assert decoded == BY_NAME["BasicDeliver"]("ctag-1", 2**40 + 3, True, "amq.direct", "rk.1")


def test_deliver_encoder_matches_encode_deliver_through_its_caches() -> None:
    """The per-consumer encoder (cached heads) gives the same bytes as encode_deliver for
    every route, property and body length, including after its caches were cleared."""
    ctag = encode_shortstr("ctag-9")
    encoder = DeliverEncoder(5, ctag)
    rng = random.Random(3)
    for n in range(1200):
        route = encode_shortstr("x" * rng.randint(0, 20)) + encode_shortstr("k" * (n % 300 // 2))
        props = rng.choice([b"\x00\x00", PROPS])
        body = b"b" * rng.choice([0, 1, 100, n, 4088])
        tag = rng.randint(1, 2**63)
        expected = b"".join(encode_deliver(5, ctag, tag, n % 2 == 1, route, props, body, 4096))
        assert encoder.frames(tag, n % 2 == 1, route, props, body) == expected


@pytest.mark.parametrize("size", [0, 5, 600, 1500])
def test_encode_get_ok_parses_with_pamqp(size: int) -> None:
    body = b"g" * size
    parts = encode_get_ok(2, 9, False, ROUTE, 4242, PROPS, body, 512)
    frames = pamqp_unmarshal_all(b"".join(parts))
    channel, get_ok = frames[0]
    assert channel == 2
    assert isinstance(get_ok, commands.Basic.GetOk)
    assert (get_ok.delivery_tag, get_ok.redelivered, get_ok.exchange, get_ok.routing_key,
            get_ok.message_count) == (9, False, "amq.direct", "rk.1", 4242)
    check_content(frames, 2, body, 512)


@pytest.mark.parametrize("size", [0, 17, 2000])
def test_encode_return_parses_with_pamqp(size: int) -> None:
    body = b"r" * size
    parts = encode_return(3, 312, "NO_ROUTE", ROUTE, PROPS, body, 1024)
    frames = pamqp_unmarshal_all(b"".join(parts))
    channel, ret = frames[0]
    assert channel == 3
    assert isinstance(ret, commands.Basic.Return)
    assert (ret.reply_code, ret.reply_text, ret.exchange, ret.routing_key) == (
        312, "NO_ROUTE", "amq.direct", "rk.1")
    check_content(frames, 3, body, 1024)


@settings(max_examples=50, deadline=None)
@given(size=st.integers(0, 3000), frame_max=st.integers(9, 700))
def test_body_split_hypothesis(size: int, frame_max: int) -> None:
    body = bytes(range(256)) * (size // 256) + bytes(size % 256)
    parts = encode_deliver(1, b"\x01t", 1, False, ROUTE, PROPS, body, frame_max)
    frames = pamqp_unmarshal_all(b"".join(parts))
    bodies = [b.value for _, b in frames[2:]]
    assert b"".join(bodies) == body
    assert all(0 < len(b) <= frame_max - 8 for b in bodies)


@pytest.mark.parametrize(("ack", "multiple"), [(True, False), (True, True), (False, False),
                                               (False, True)])
def test_encode_confirm_parses_with_pamqp(ack: bool, multiple: bool) -> None:
    raw = encode_confirm(4, 2**33 + 1, multiple, ack)
    consumed, channel, frame = pframe.unmarshal(raw)
    assert consumed == len(raw)
    assert channel == 4
    if ack:
        assert isinstance(frame, commands.Basic.Ack)
    else:
        assert isinstance(frame, commands.Basic.Nack)
        assert frame.requeue is False
    assert (frame.delivery_tag, frame.multiple) == (2**33 + 1, multiple)


# ------------------------------------------------------------------ malformed payloads


@pytest.mark.parametrize("name", NAMES)
def test_truncated_at_every_cut_point_is_502(name: str) -> None:
    cls = BY_NAME[name]
    payload = encode_method(non_default(cls))
    for cut in range(len(payload)):
        with pytest.raises(SyntaxError_) as info:
            decode_method(payload[:cut])
        assert info.value.reply_code == ReplyCode.SYNTAX_ERROR == 502
        if cut >= 4:
            assert (info.value.class_id, info.value.method_id) == (cls.CLASS_ID, cls.METHOD_ID)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("extra", [b"\x00", b"\xce", b"junk"])
def test_trailing_bytes_are_502(name: str, extra: bytes) -> None:
    cls = BY_NAME[name]
    with pytest.raises(SyntaxError_) as info:
        decode_method(encode_method(non_default(cls)) + extra)
    assert info.value.reply_code == 502


@pytest.mark.parametrize("name", ["ConnectionOpen", "QueueDeclare", "BasicConsume"])
def test_invalid_utf8_shortstr_is_501_as_rabbitmq(name: str) -> None:
    """RabbitMQ 3.10.8: connection.close 501 "Malformed UTF-8 in shortstr"."""
    cls = BY_NAME[name]
    index = cls.TYPES.index("shortstr")
    prefix = encode_method(cls(**{cls.FIELDS[index]: "ab"}))
    raw = prefix.replace(b"\x02ab", b"\x02\xff\xfe", 1)
    with pytest.raises(FrameError) as info:
        decode_method(raw)
    assert info.value.reply_code == 501


def test_publish_with_invalid_utf8_routing_key_passes_through() -> None:
    """RabbitMQ routes basic.publish without checking its short strings' UTF-8."""
    raw = encode_method(BY_NAME["BasicPublish"](exchange="ab", routing_key="cd"))
    raw = raw.replace(b"\x02cd", b"\x02\xff\xfe", 1)
    method = decode_method(raw)
    assert method.routing_key.encode("utf-8", "surrogateescape") == b"\xff\xfe"


@pytest.mark.parametrize(("class_id", "method_id"), [(60, 999), (99, 10), (10, 12), (0, 0),
                                                     (90, 40), (65535, 65535)])
def test_unknown_method_is_503(class_id: int, method_id: int) -> None:
    payload = class_id.to_bytes(2, "big") + method_id.to_bytes(2, "big") + b"\x00" * 8
    with pytest.raises(CommandInvalid) as info:
        decode_method(payload)
    assert info.value.reply_code == ReplyCode.COMMAND_INVALID == 503
    assert (info.value.class_id, info.value.method_id) == (class_id, method_id)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60))
def test_random_payloads_raise_only_amqp_errors(payload: bytes) -> None:
    try:
        decode_method(payload)
    except AMQPError as exc:
        assert exc.reply_code in (501, 502, 503)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(NAMES), body=st.binary(max_size=60))
def test_random_arguments_of_known_methods_raise_only_502(name: str, body: bytes) -> None:
    """502, or 501 for a short string argument that is not UTF-8 (RabbitMQ's answer)."""
    cls = BY_NAME[name]
    try:
        decoded = decode_method(encode_method(cls())[:4] + body)
    except SyntaxError_:
        return
    except FrameError as exc:
        assert "Malformed UTF-8" in exc.text
        return
    # Whatever decodes must re-encode to a payload that decodes to the same method.
    assert decode_method(encode_method(decoded)) == decoded


def test_deeply_nested_arguments_table_is_502_not_an_internal_error() -> None:
    # ~5 bytes per level: 3000 levels fit in one default-size frame.
    value = b"V"
    for _ in range(3000):
        value = b"A" + len(value).to_bytes(4, "big") + value
    entry = b"\x01k" + value
    table = len(entry).to_bytes(4, "big") + entry
    payload = encode_method(BY_NAME["QueueDeclare"](queue="q"))[:-4] + table
    with pytest.raises(SyntaxError_) as info:
        decode_method(payload)
    assert info.value.reply_code == 502
    assert (info.value.class_id, info.value.method_id) == (50, 10)
