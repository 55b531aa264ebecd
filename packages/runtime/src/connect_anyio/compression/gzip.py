"""gzip compression (zlib's gzip container)."""

from __future__ import annotations

__all__ = ["GzipCompression"]

import zlib

from . import DecompressionLimitError

_GZIP_WBITS = 16 + zlib.MAX_WBITS


class GzipCompression:
    """gzip; ``level`` 1 (fast) to 9 (small)."""

    __slots__ = ("_level",)

    def __init__(self, level: int = 6) -> None:
        self._level = level

    def name(self) -> str:
        return "gzip"

    def compress(self, data: bytes) -> bytes:
        c = zlib.compressobj(self._level, zlib.DEFLATED, _GZIP_WBITS)
        return c.compress(data) + c.flush()

    def decompress(self, data: bytes | memoryview, max_bytes: int | None = None) -> bytes:
        d = zlib.decompressobj(_GZIP_WBITS)
        if max_bytes is None:
            out = d.decompress(data)
        else:
            out = d.decompress(data, max_bytes + 1)
            if len(out) > max_bytes:
                raise DecompressionLimitError
        if not d.eof:
            raise zlib.error("truncated gzip data")
        return out
