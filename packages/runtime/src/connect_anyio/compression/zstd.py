"""Zstandard compression (``zstd``), from the ``zstandard`` package."""

from __future__ import annotations

__all__ = ["ZstdCompression"]

import io

import zstandard as _zstd

from . import DecompressionLimitError


class ZstdCompression:
    """Zstandard; ``level`` 1 (fast) to 22 (small)."""

    __slots__ = ("_compressor", "_decompressor", "_level")

    def __init__(self, level: int = 3) -> None:
        self._level = level
        self._compressor = _zstd.ZstdCompressor(level=level)
        self._decompressor = _zstd.ZstdDecompressor()

    def name(self) -> str:
        return "zstd"

    def compress(self, data: bytes) -> bytes:
        return self._compressor.compress(data)

    def decompress(self, data: bytes | memoryview, max_bytes: int | None = None) -> bytes:
        if not data:
            return b""
        declared = _zstd.frame_content_size(data)
        if declared >= 0:
            # The frame states its size: check it before allocating anything.
            if max_bytes is not None and declared > max_bytes:
                raise DecompressionLimitError
            return self._decompressor.decompress(data)
        if max_bytes is not None:
            # No stated size: read at most one byte past the limit to tell.
            reader = self._decompressor.stream_reader(io.BytesIO(data))
            with reader:
                if len(reader.read(max_bytes + 1)) > max_bytes:
                    raise DecompressionLimitError
        # Now bounded; the object API reports a truncated frame through ``eof``.
        obj = self._decompressor.decompressobj()
        out = obj.decompress(data)
        if not obj.eof:
            raise _zstd.ZstdError("truncated zstd data")
        return out
