"""The 5-byte envelope: one incremental decoder fed any chunking, limits checked on the header."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connect_anyio._envelope import (
    FLAG_COMPRESSED,
    FLAG_CONNECT_END_STREAM,
    FLAG_GRPC_WEB_TRAILERS,
    HEADER_SIZE,
    EnvelopeDecoder,
    EnvelopeTooLargeError,
    encode_envelope,
)

SETTINGS = settings(deadline=None, database=None, derandomize=True, max_examples=200)

envelopes = st.lists(
    st.tuples(
        st.sampled_from([0, FLAG_COMPRESSED, FLAG_CONNECT_END_STREAM, FLAG_GRPC_WEB_TRAILERS]),
        st.binary(max_size=300),
    ),
    max_size=8,
)


def _feed_all(decoder: EnvelopeDecoder, chunks: list[bytes]) -> list[tuple[int, bytes]]:
    out = []
    for chunk in chunks:
        out.extend((flags, bytes(payload)) for flags, payload in decoder.feed(chunk))
    return out


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def test_encode_layout() -> None:
    assert encode_envelope(0, b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert encode_envelope(FLAG_COMPRESSED, b"") == b"\x01\x00\x00\x00\x00"
    assert encode_envelope(0x82, b"x" * 300)[:5] == bytes([0x82]) + struct.pack(">I", 300)
    assert HEADER_SIZE == 5


def test_byte_by_byte() -> None:
    items = [(0, b"hello"), (FLAG_COMPRESSED, b""), (FLAG_CONNECT_END_STREAM, b"{}")]
    data = b"".join(encode_envelope(f, d) for f, d in items)
    decoder = EnvelopeDecoder()
    got = []
    for i in range(len(data)):
        got.extend((f, bytes(d)) for f, d in decoder.feed(data[i : i + 1]))
        # Never more than one partial envelope is held.
        assert decoder.pending <= HEADER_SIZE + 5
    assert got == items
    assert decoder.pending == 0


@SETTINGS
@given(items=envelopes, cuts=st.lists(st.integers(min_value=0), max_size=20))
def test_any_chunking_gives_the_same_envelopes(
    items: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    data = b"".join(encode_envelope(f, d) for f, d in items)
    decoder = EnvelopeDecoder()
    assert _feed_all(decoder, _split(data, cuts)) == items
    assert decoder.pending == 0


@SETTINGS
@given(items=envelopes.filter(bool), cut=st.integers(min_value=0))
def test_truncated_input_holds_exactly_the_partial_envelope(
    items: list[tuple[int, bytes]], cut: int
) -> None:
    frames = [encode_envelope(f, d) for f, d in items]
    data = b"".join(frames)
    keep = cut % (len(data) + 1)
    boundaries = [0]
    for frame in frames:
        boundaries.append(boundaries[-1] + len(frame))
    complete = sum(1 for b in boundaries[1:] if b <= keep)
    decoder = EnvelopeDecoder()
    assert len(decoder.feed(data[:keep])) == complete
    assert decoder.pending == keep - boundaries[complete]


def test_payloads_stay_valid_after_later_feeds() -> None:
    decoder = EnvelopeDecoder()
    two = encode_envelope(0, b"two")
    first = decoder.feed(encode_envelope(0, b"one") + two[:-1])
    second = decoder.feed(two[-1:] + encode_envelope(0, b"three"))
    assert [bytes(d) for _, d in first] == [b"one"]
    assert [bytes(d) for _, d in second] == [b"two", b"three"]
    assert bytes(first[0][1]) == b"one"


@pytest.mark.parametrize("chunked", [False, True])
def test_declared_length_over_limit_is_rejected_on_the_header(chunked: bool) -> None:
    decoder = EnvelopeDecoder(max_bytes=1024)
    header = b"\x00" + struct.pack(">I", 1025)
    if chunked:
        assert decoder.feed(header[:3]) == []
        header = header[3:]
    with pytest.raises(EnvelopeTooLargeError) as info:
        decoder.feed(header)
    assert (info.value.size, info.value.limit) == (1025, 1024)


def test_huge_declared_length_is_rejected_without_its_payload() -> None:
    decoder = EnvelopeDecoder(max_bytes=4 << 20)
    with pytest.raises(EnvelopeTooLargeError) as info:
        decoder.feed(b"\x00\xff\xff\xff\xff")
    assert info.value.size == 0xFFFFFFFF
    assert decoder.pending <= HEADER_SIZE


def test_limit_is_inclusive() -> None:
    decoder = EnvelopeDecoder(max_bytes=4)
    assert [bytes(d) for _, d in decoder.feed(encode_envelope(0, b"abcd"))] == [b"abcd"]


def test_second_envelope_over_limit_is_rejected_after_the_first() -> None:
    decoder = EnvelopeDecoder(max_bytes=4)
    data = encode_envelope(0, b"ok") + encode_envelope(0, b"too long")
    with pytest.raises(EnvelopeTooLargeError):
        decoder.feed(data)


def test_no_limit_accepts_large_envelopes() -> None:
    payload = b"z" * (1 << 20)
    decoder = EnvelopeDecoder()
    data = encode_envelope(0, payload)
    got = decoder.feed(data[:1000]) + decoder.feed(data[1000:])
    assert [bytes(d) for _, d in got] == [payload]
