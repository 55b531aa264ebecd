"""gzip, br and zstd: round trips, the size limit (exact at the boundary), bombs that must
not inflate in memory, corrupt input, and negotiation helpers."""

from __future__ import annotations

import functools
import io
import tracemalloc
import zlib
from collections.abc import Callable

import brotli
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from connect_anyio import Code
from connect_anyio import _protocol as p
from connect_anyio.compression import (
    BrotliCompression,
    Compression,
    DecompressionLimitError,
    GzipCompression,
    ZstdCompression,
)

SETTINGS = settings(deadline=None, database=None, derandomize=True, max_examples=50)
ALGORITHMS: dict[str, Callable[[], Compression]] = {
    "gzip": GzipCompression,
    "br": BrotliCompression,
    "zstd": ZstdCompression,
}
BOMB_SIZE = 64 << 20
LIMIT = 1 << 20
_CHUNK = b"\0" * (1 << 20)


@pytest.fixture(params=list(ALGORITHMS))
def algorithm(request: pytest.FixtureRequest) -> Compression:
    return ALGORITHMS[request.param]()


def test_names() -> None:
    assert [ALGORITHMS[n]().name() for n in ALGORITHMS] == ["gzip", "br", "zstd"]
    for factory in ALGORITHMS.values():
        assert isinstance(factory(), Compression)


@SETTINGS
@given(data=st.binary(max_size=5000))
def test_round_trip(data: bytes) -> None:
    for factory in ALGORITHMS.values():
        c = factory()
        packed = c.compress(data)
        assert c.decompress(packed) == data
        assert c.decompress(memoryview(packed), len(data)) == data


def test_compresses_repetitive_data(algorithm: Compression) -> None:
    data = b"connect-anyio " * 1000
    assert len(algorithm.compress(data)) < len(data) // 10


@pytest.mark.parametrize("size", [0, 1, 1000, 65536])
def test_limit_is_exact(algorithm: Compression, size: int) -> None:
    packed = algorithm.compress(b"q" * size)
    assert algorithm.decompress(packed, size) == b"q" * size
    assert algorithm.decompress(packed, size + 1) == b"q" * size
    if size:
        with pytest.raises(DecompressionLimitError):
            algorithm.decompress(packed, size - 1)


def test_zero_limit(algorithm: Compression) -> None:
    assert algorithm.decompress(algorithm.compress(b""), 0) == b""
    with pytest.raises(DecompressionLimitError):
        algorithm.decompress(algorithm.compress(b"x"), 0)


# -- bombs: small inputs that inflate to 64 MiB --------------------------------


@functools.cache
def _bomb(kind: str) -> bytes:
    """64 MiB of zeros, compressed without ever holding the 64 MiB."""
    chunks = BOMB_SIZE // len(_CHUNK)
    if kind == "gzip":
        c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return b"".join(c.compress(_CHUNK) for _ in range(chunks)) + c.flush()
    if kind == "br":
        b = brotli.Compressor(quality=1)
        return b"".join(b.process(_CHUNK) for _ in range(chunks)) + b.finish()
    out = io.BytesIO()
    # "zstd": the frame declares its size; "zstd-unsized": it does not.
    size = BOMB_SIZE if kind == "zstd" else -1
    cctx = zstandard.ZstdCompressor(write_content_size=kind == "zstd")
    with cctx.stream_writer(out, size=size, closefd=False) as writer:
        for _ in range(chunks):
            writer.write(_CHUNK)
    return out.getvalue()


@pytest.mark.parametrize("kind", ["gzip", "br", "zstd", "zstd-unsized"])
def test_bomb_stops_at_the_limit_without_inflating(kind: str) -> None:
    bomb = _bomb(kind)
    assert len(bomb) < 200_000  # small on the wire ...
    c = ALGORITHMS[kind.split("-")[0]]()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with pytest.raises(DecompressionLimitError):
            c.decompress(bomb, LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # ... and never allocated anywhere near its 64 MiB.
    assert peak < 8 * LIMIT, f"peak {peak} bytes while decompressing"


@pytest.mark.parametrize("kind", ["gzip", "br", "zstd", "zstd-unsized"])
def test_bomb_through_the_protocol_helper_is_resource_exhausted(kind: str) -> None:
    c = ALGORITHMS[kind.split("-")[0]]()
    with pytest.raises(p.ConnectError) as info:
        p.decompress(c, _bomb(kind), LIMIT, Code.INVALID_ARGUMENT)
    assert info.value.code is Code.RESOURCE_EXHAUSTED
    assert str(LIMIT) in info.value.message


# -- corrupt and truncated input -----------------------------------------------


@pytest.mark.parametrize("limit", [None, 1 << 20])
def test_corrupt_input_raises_something_else_than_the_limit(
    algorithm: Compression, limit: int | None
) -> None:
    with pytest.raises(Exception) as info:
        algorithm.decompress(b"this is not compressed data at all", limit)
    assert not isinstance(info.value, DecompressionLimitError)


@pytest.mark.parametrize("limit", [None, 1 << 20])
def test_truncated_input_is_an_error(algorithm: Compression, limit: int | None) -> None:
    packed = algorithm.compress(bytes(range(256)) * 40)
    with pytest.raises(Exception) as info:
        algorithm.decompress(packed[: len(packed) // 2], limit)
    assert not isinstance(info.value, DecompressionLimitError)


@pytest.mark.parametrize("code", [Code.INVALID_ARGUMENT, Code.INTERNAL])
def test_protocol_helper_maps_corruption_to_the_given_code(
    algorithm: Compression, code: Code
) -> None:
    with pytest.raises(p.ConnectError) as info:
        p.decompress(algorithm, b"garbage!", None, code)
    assert info.value.code is code
    assert algorithm.name() in info.value.message


# -- negotiation helpers -------------------------------------------------------


def test_default_table_and_identity() -> None:
    assert list(p.compression_table(None)) == ["gzip", "br", "zstd"]
    assert list(p.compression_table([ZstdCompression()])) == ["zstd"]
    assert list(p.compression_table([])) == []


@pytest.mark.parametrize(
    ("value", "names"),
    [
        (None, []),
        ("", []),
        ("gzip", ["gzip"]),
        ("GZIP, br;q=0.5 ,, zstd", ["gzip", "br", "zstd"]),
        ("identity", ["identity"]),
    ],
)
def test_parse_encoding_list(value: str | None, names: list[str]) -> None:
    assert p.parse_encoding_list(value) == names


@pytest.mark.parametrize(
    ("accept", "sent", "chosen"),
    [
        ("br,gzip", None, "br"),
        ("snappy, zstd", None, "zstd"),
        ("snappy", None, None),
        (None, "gzip", "gzip"),  # no accept list: answer the way the request came
        (None, None, None),
        ("identity", "gzip", None),
    ],
)
def test_negotiate_response_compression(
    accept: str | None, sent: str | None, chosen: str | None
) -> None:
    table = p.compression_table(None)
    found = p.negotiate_response_compression(accept, sent, table)
    assert (found.name() if found else None) == chosen


def test_unsupported_encoding_lists_what_is_supported() -> None:
    error = p.unsupported_encoding("snappy", p.compression_table(None))
    assert error.code is Code.UNIMPLEMENTED
    assert "snappy" in error.message
    assert "identity, gzip, br, zstd" in error.message
