"""FrameReader and frame encoding (warrenmq.protocol.frames), sans-IO.

Every decoding property is checked three ways — the whole stream at once, one byte at a
time, and with trailing bytes of an incomplete frame — plus hypothesis: a stream of random
valid frames split at random points yields the same frames, and random bytes can only
raise the codec's own ``FrameError`` (never ``struct.error`` or ``IndexError``). Also:
bad frame-end byte, frame_max enforced from the 7-byte header alone (before the payload
arrives), unknown frame types, and buffer compaction over a stream larger than 64 KiB.
"""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands
from pamqp import frame as pframe

from warrenmq.errors import AMQPError, FrameError, ReplyCode
from warrenmq.protocol.frames import (
    FRAME_BODY,
    FRAME_END,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_OVERHEAD,
    HEARTBEAT,
    PROTOCOL_HEADER,
    FrameReader,
    encode_frame,
)

FRAME_MAX = 4096

frames_st = st.one_of(
    st.tuples(
        st.sampled_from([FRAME_METHOD, FRAME_HEADER, FRAME_BODY]),
        st.integers(0, 65535),
        st.binary(max_size=300),
    ),
    st.tuples(st.just(FRAME_HEARTBEAT), st.integers(0, 65535), st.just(b"")),
)


@pytest.mark.parametrize("channel", [0, 1])
def test_heartbeat_with_a_payload_is_a_frame_error(channel: int) -> None:
    """It must not swallow the next frame as its payload (RabbitMQ: 501)."""
    reader = FrameReader(FRAME_MAX)
    with pytest.raises(FrameError) as info:
        reader.feed(encode_frame(FRAME_HEARTBEAT, channel, b"\x01" * 13))
    assert info.value.reply_code == 501


def stream_of(frames: list[tuple[int, int, bytes]]) -> bytes:
    return b"".join(encode_frame(t, c, p) for t, c, p in frames)


def feed_all(reader: FrameReader, pieces: list[bytes]) -> list[tuple[int, int, bytes]]:
    out: list[tuple[int, int, bytes]] = []
    for piece in pieces:
        out.extend(reader.feed(piece))
    return out


SAMPLE = [
    (FRAME_METHOD, 0, b"\x00\x0a\x00\x0b" + b"x" * 20),
    (FRAME_HEADER, 1, b"\x00\x3c\x00\x00" + b"\x00" * 8 + b"\x00\x00"),
    (FRAME_BODY, 1, b"hello body"),
    (FRAME_HEARTBEAT, 0, b""),
    (FRAME_BODY, 65535, b"\xce" * 5),  # payload full of frame-end bytes
    (FRAME_METHOD, 7, b""),
]


# ------------------------------------------------------------------ encoding


def test_encode_frame_layout() -> None:
    raw = encode_frame(FRAME_BODY, 0x0102, b"abc")
    assert raw == b"\x03\x01\x02\x00\x00\x00\x03abc\xce"
    assert len(raw) == len(b"abc") + FRAME_OVERHEAD


def test_constants_match_the_spec() -> None:
    assert PROTOCOL_HEADER == b"AMQP\x00\x00\x09\x01"
    assert HEARTBEAT == encode_frame(FRAME_HEARTBEAT, 0, b"")
    assert FRAME_END == 0xCE


def test_encode_frame_matches_pamqp() -> None:
    method = commands.Basic.Ack(delivery_tag=42, multiple=True)
    ours = encode_frame(FRAME_METHOD, 3, pframe.marshal(method, 3)[7:-1])
    assert ours == pframe.marshal(method, 3)


# ------------------------------------------------------------------ three ways


def test_whole_stream_gives_every_frame() -> None:
    reader = FrameReader(FRAME_MAX)
    assert reader.feed(stream_of(SAMPLE)) == SAMPLE
    assert reader.buffered == 0


def test_byte_by_byte_gives_the_same_frames() -> None:
    reader = FrameReader(FRAME_MAX)
    data = stream_of(SAMPLE)
    out = feed_all(reader, [data[i : i + 1] for i in range(len(data))])
    assert out == SAMPLE
    assert reader.buffered == 0


@pytest.mark.parametrize("cut", [1, 6, 7, 8, 12, 20])
def test_trailing_partial_frame_stays_buffered_until_completed(cut: int) -> None:
    reader = FrameReader(FRAME_MAX)
    tail = encode_frame(FRAME_BODY, 9, b"0123456789abcdef")
    assert cut < len(tail)
    got = reader.feed(stream_of(SAMPLE) + tail[:cut])
    assert got == SAMPLE
    assert reader.buffered == cut
    assert reader.feed(tail[cut:]) == [(FRAME_BODY, 9, b"0123456789abcdef")]
    assert reader.buffered == 0


def test_frame_without_its_end_byte_is_not_returned_yet() -> None:
    reader = FrameReader(FRAME_MAX)
    raw = encode_frame(FRAME_METHOD, 1, b"abcd")
    assert reader.feed(raw[:-1]) == []
    assert reader.buffered == len(raw) - 1
    assert reader.feed(raw[-1:]) == [(FRAME_METHOD, 1, b"abcd")]


def test_empty_feed_is_harmless() -> None:
    reader = FrameReader(FRAME_MAX)
    assert reader.feed(b"") == []
    reader.feed(HEARTBEAT[:3])
    assert reader.feed(b"") == []
    assert reader.buffered == 3
    assert reader.feed(HEARTBEAT[3:]) == [(FRAME_HEARTBEAT, 0, b"")]


def test_payload_is_bytes_not_a_view_of_the_buffer() -> None:
    reader = FrameReader(FRAME_MAX)
    ((_, _, payload),) = reader.feed(encode_frame(FRAME_BODY, 1, b"keep me"))
    reader.feed(encode_frame(FRAME_BODY, 1, b"overwrite"))
    assert type(payload) is bytes
    assert payload == b"keep me"


# ------------------------------------------------------------------ hypothesis


@settings(max_examples=200, deadline=None)
@given(
    frames=st.lists(frames_st, max_size=12),
    cuts=st.lists(st.integers(0, 5000), max_size=12),
)
def test_random_split_points_give_the_same_frames(
    frames: list[tuple[int, int, bytes]], cuts: list[int]
) -> None:
    data = stream_of(frames)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    pieces = [data[a:b] for a, b in itertools.pairwise(points)]
    reader = FrameReader(FRAME_MAX)
    assert feed_all(reader, pieces) == frames
    assert reader.buffered == 0


@settings(max_examples=100, deadline=None)
@given(frames=st.lists(frames_st, min_size=1, max_size=8), extra=st.integers(1, 7))
def test_trailing_bytes_hypothesis(frames: list[tuple[int, int, bytes]], extra: int) -> None:
    # The stream plus the first `extra` bytes of another frame (never a whole one).
    tail = encode_frame(FRAME_BODY, 1, b"z")
    reader = FrameReader(FRAME_MAX)
    assert reader.feed(stream_of(frames) + tail[:extra]) == frames
    assert reader.buffered == extra


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400), piece=st.integers(1, 64))
def test_random_bytes_raise_only_frame_error(data: bytes, piece: int) -> None:
    reader = FrameReader(256)
    try:
        for i in range(0, len(data), piece):
            reader.feed(data[i : i + piece])
    except FrameError as exc:
        assert exc.reply_code == ReplyCode.FRAME_ERROR


@settings(max_examples=200, deadline=None)
@given(
    frame=frames_st,
    junk=st.binary(min_size=1, max_size=40),
)
def test_valid_frame_followed_by_random_bytes(frame: tuple[int, int, bytes], junk: bytes) -> None:
    reader = FrameReader(FRAME_MAX)
    try:
        got = reader.feed(encode_frame(*frame) + junk)
    except FrameError:
        return
    # Junk that doesn't break framing yields the first frame, maybe more, never less.
    assert got[0] == frame


# ------------------------------------------------------------------ errors


def test_bad_frame_end_is_501() -> None:
    raw = bytearray(encode_frame(FRAME_METHOD, 1, b"abcd"))
    raw[-1] = 0x00
    with pytest.raises(FrameError) as info:
        FrameReader(FRAME_MAX).feed(bytes(raw))
    assert info.value.reply_code == ReplyCode.FRAME_ERROR == 501
    assert "0xce" in str(info.value)


def test_bad_frame_end_after_good_frames_byte_by_byte() -> None:
    raw = bytearray(encode_frame(FRAME_BODY, 2, b"x"))
    raw[-1] = 0xCD
    data = stream_of(SAMPLE) + bytes(raw)
    reader = FrameReader(FRAME_MAX)
    got: list[tuple[int, int, bytes]] = []
    with pytest.raises(FrameError) as info:
        for i in range(len(data)):
            got.extend(reader.feed(data[i : i + 1]))
    assert got == SAMPLE
    assert info.value.reply_code == 501


def test_frame_of_exactly_frame_max_is_accepted() -> None:
    payload = b"p" * (FRAME_MAX - FRAME_OVERHEAD)
    raw = encode_frame(FRAME_BODY, 1, payload)
    assert len(raw) == FRAME_MAX
    assert FrameReader(FRAME_MAX).feed(raw) == [(FRAME_BODY, 1, payload)]


def test_frame_over_frame_max_is_refused_from_the_header_alone() -> None:
    size = FRAME_MAX - FRAME_OVERHEAD + 1
    head = struct.pack(">BHI", FRAME_BODY, 1, size)
    reader = FrameReader(FRAME_MAX)
    with pytest.raises(FrameError) as info:
        reader.feed(head)  # no payload byte has arrived yet
    assert info.value.reply_code == 501
    assert str(FRAME_MAX) in str(info.value)


def test_huge_announced_size_is_refused_byte_by_byte() -> None:
    head = struct.pack(">BHI", FRAME_METHOD, 0, 0xFFFFFFFF)
    reader = FrameReader(131072)
    for b in head[:-1]:
        assert reader.feed(bytes([b])) == []
    with pytest.raises(FrameError):
        reader.feed(head[-1:])


@pytest.mark.parametrize("frame_type", [0, 4, 5, 7, 9, 0x41, 0xFF])
def test_unknown_frame_type_is_501(frame_type: int) -> None:
    raw = struct.pack(">BHI", frame_type, 0, 1) + b"x\xce"
    with pytest.raises(FrameError) as info:
        FrameReader(FRAME_MAX).feed(raw)
    assert info.value.reply_code == 501
    assert str(frame_type) in str(info.value)


def test_protocol_header_fed_as_frames_is_a_frame_error() -> None:
    # "AMQP" starts with 'A' (0x41): not a frame type.
    with pytest.raises(FrameError):
        FrameReader(FRAME_MAX).feed(PROTOCOL_HEADER)


def test_frame_error_is_an_amqp_connection_error() -> None:
    err = FrameError("x")
    assert isinstance(err, AMQPError)
    assert not err.is_channel_error


# ------------------------------------------------------------------ compaction


@pytest.mark.parametrize("piece", [1000, 4093])
def test_large_stream_in_small_pieces_keeps_only_a_bounded_tail(piece: int) -> None:
    frames = [(FRAME_BODY, i % 5 + 1, bytes([i % 251]) * (100 + i % 300)) for i in range(800)]
    data = stream_of(frames)
    assert len(data) > 2 * 65536
    reader = FrameReader(FRAME_MAX)
    got: list[tuple[int, int, bytes]] = []
    for i in range(0, len(data), piece):
        got.extend(reader.feed(data[i : i + piece]))
        # Consumed bytes are dropped: at most one incomplete frame is ever held.
        assert reader.buffered < FRAME_MAX
    assert got == frames
    assert reader.buffered == 0


def test_compaction_keeps_a_partial_frame_intact() -> None:
    frames = [(FRAME_BODY, 1, b"a" * 1000)] * 70  # ~70 KiB, past the compaction mark
    tail = encode_frame(FRAME_METHOD, 2, b"partial-frame-payload")
    reader = FrameReader(FRAME_MAX)
    assert reader.feed(stream_of(frames) + tail[:10]) == frames
    assert reader.buffered == 10
    assert reader.feed(tail[10:]) == [(FRAME_METHOD, 2, b"partial-frame-payload")]
    assert reader.buffered == 0
