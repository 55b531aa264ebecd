"""Brotli compression (``br``), from the ``brotli`` package."""

from __future__ import annotations

__all__ = ["BrotliCompression"]

import brotli as _brotli

from . import DecompressionLimitError


class BrotliCompression:
    """Brotli; ``quality`` 0 (fast) to 11 (small)."""

    __slots__ = ("_quality",)

    def __init__(self, quality: int = 3) -> None:
        self._quality = quality

    def name(self) -> str:
        return "br"

    def compress(self, data: bytes) -> bytes:
        return bytes(_brotli.compress(data, quality=self._quality))

    def decompress(self, data: bytes | memoryview, max_bytes: int | None = None) -> bytes:
        d = _brotli.Decompressor()
        if max_bytes is None:
            out = bytes(d.process(bytes(data)))
        else:
            out = bytes(d.process(bytes(data), output_buffer_limit=max_bytes + 1))
            if len(out) > max_bytes or not d.can_accept_more_data():
                # Output stopped at the limit with input still pending: too big.
                raise DecompressionLimitError
        if not d.is_finished():
            raise _brotli.error("truncated brotli data")
        return out
