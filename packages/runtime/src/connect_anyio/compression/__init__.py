"""Message compression: the ``Compression`` protocol and the built-in algorithms.

gzip, br (brotli) and zstd are built in (``GzipCompression``, ``BrotliCompression``,
``ZstdCompression``); "identity" (no compression) is always accepted.
"""

from __future__ import annotations

__all__ = [
    "BrotliCompression",
    "Compression",
    "DecompressionLimitError",
    "GzipCompression",
    "ZstdCompression",
]

from typing import Protocol, runtime_checkable


class DecompressionLimitError(Exception):
    """Decompressed data would exceed the size the reader allows."""


@runtime_checkable
class Compression(Protocol):
    """A compression algorithm, named as in ``Content-Encoding``/``grpc-encoding``.

    ``decompress`` must stop and raise ``DecompressionLimitError`` as soon as the
    output would exceed ``max_bytes``: a small compressed "bomb" must never
    inflate past the limit in memory. Any other exception means corrupt input.
    """

    def name(self) -> str:
        """The algorithm's name on the wire, e.g. ``gzip``."""
        ...

    def compress(self, data: bytes) -> bytes:
        """Compresses ``data``."""
        ...

    def decompress(self, data: bytes | memoryview, max_bytes: int | None = None) -> bytes:
        """Decompresses ``data``, failing once the output passes ``max_bytes``."""
        ...


from .brotli import BrotliCompression  # noqa: E402
from .gzip import GzipCompression  # noqa: E402
from .zstd import ZstdCompression  # noqa: E402
