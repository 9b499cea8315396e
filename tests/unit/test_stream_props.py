"""with_stream_offset: the x-stream-offset header spliced into raw properties equals
what the general rewrite produces, for every shape of properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warrenmq.protocol.fields import Long
from warrenmq.protocol.properties import decode_properties, encode_properties, validate
from warrenmq.queues.stream_props import with_stream_offset

CASES: list[dict[str, Any]] = [
    {},
    {"content_type": "text/plain"},
    {"content_type": "a", "content_encoding": "gzip", "delivery_mode": 2},
    {"headers": {"a": 1, "b": "x"}, "message_id": "m"},
    {"content_type": "t", "headers": {}, "priority": 3},
    {"headers": {"x-stream-offset": Long(5), "k": "v"}},  # replaced, not duplicated
]


def expected(props: dict[str, Any], offset: int) -> dict[str, Any]:
    return {**props, "headers": {**props.get("headers", {}), "x-stream-offset": offset}}


@pytest.mark.parametrize("props", CASES)
def test_cases(props: dict[str, Any]) -> None:
    raw = with_stream_offset(encode_properties(props), 42)
    validate(raw)
    assert decode_properties(raw) == expected(props, 42)


_text = st.text(max_size=20)


@given(content_type=st.none() | _text, encoding=st.none() | _text,
       headers=st.none() | st.dictionaries(st.text(min_size=1, max_size=10), _text,
                                           max_size=4),
       message_id=st.none() | _text, offset=st.integers(0, 2**63 - 1))
def test_any_properties(content_type: str | None, encoding: str | None,
                        headers: dict[str, str] | None, message_id: str | None,
                        offset: int) -> None:
    props: dict[str, Any] = {k: v for k, v in (
        ("content_type", content_type), ("content_encoding", encoding),
        ("headers", headers), ("message_id", message_id)) if v is not None}
    raw = with_stream_offset(encode_properties(props), offset)
    validate(raw)
    assert decode_properties(raw) == expected(props, offset)
