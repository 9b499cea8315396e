"""``properties.validate`` checks without decoding; it must accept exactly what
``decode_properties`` accepts (timestamps out of datetime's range aside: those are valid
AMQP, only not representable as a Python datetime)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from warrenmq.protocol.fields import FieldError
from warrenmq.protocol.properties import decode_properties, encode_properties, validate

SAMPLE = encode_properties(
    {
        "content_type": "application/json",
        "headers": {"a": 1, "b": [1, "x", {"c": None}], "d": b"raw", "e": 1.5},
        "delivery_mode": 2,
        "message_id": "m-1",
        "timestamp": 1_700_000_000,
    }
)


def _outcome(func, raw: bytes) -> str:  # type: ignore[no-untyped-def]
    try:
        func(raw)
    except FieldError as exc:
        return "timestamp" if "timestamp" in str(exc) else "error"
    return "ok"


def _agree(raw: bytes) -> None:
    decoded = _outcome(decode_properties, raw)
    checked = _outcome(validate, raw)
    if decoded == "timestamp":
        return
    assert checked == decoded, (raw, checked, decoded)


def test_sample_is_valid() -> None:
    validate(SAMPLE)


def test_every_truncation_and_extension_agrees() -> None:
    for cut in range(len(SAMPLE) + 1):
        _agree(SAMPLE[:cut])
    _agree(SAMPLE + b"\x00")


@settings(max_examples=400)
@given(st.binary(max_size=64))
def test_random_bytes_agree(raw: bytes) -> None:
    _agree(raw)


@settings(max_examples=400)
@given(st.integers(0, len(SAMPLE) - 1), st.integers(0, 255))
def test_single_byte_mutations_agree(position: int, value: int) -> None:
    mutated = bytearray(SAMPLE)
    mutated[position] = value
    _agree(bytes(mutated))
