"""The 5-byte envelope shared by Connect streaming, gRPC and gRPC-Web.

An envelope is one flags byte, a 4-byte big-endian length, then that many bytes.
``EnvelopeDecoder`` is fed the body in whatever chunks the transport delivers and
yields whole envelopes; it never holds more than one partial envelope, and it
refuses a declared length above the limit before buffering it.
"""

from __future__ import annotations

import struct

FLAG_COMPRESSED = 0x01
FLAG_CONNECT_END_STREAM = 0x02
FLAG_GRPC_WEB_TRAILERS = 0x80

_HEADER = struct.Struct(">BI")
HEADER_SIZE = 5


def encode_envelope(flags: int, data: bytes) -> bytes:
    """One envelope: header then payload."""
    return _HEADER.pack(flags, len(data)) + data


class EnvelopeTooLargeError(Exception):
    """An envelope declares a payload longer than the reader accepts."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(size, limit)
        self.size = size
        self.limit = limit


class EnvelopeDecoder:
    """Incremental envelope parser: ``feed`` chunks, collect ``(flags, payload)`` pairs.

    Payloads are ``bytes`` or ``memoryview`` slices of a fed chunk (no copy when an
    envelope lies inside one chunk). A memoryview stays valid: chunks are never
    mutated after they are fed.
    """

    __slots__ = ("_buf", "_max", "_need")

    def __init__(self, max_bytes: int | None = None) -> None:
        self._buf = bytearray()
        self._max = max_bytes
        self._need = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes | memoryview]]:
        """Adds a chunk; returns the envelopes it completes, in order.

        Raises ``EnvelopeTooLargeError`` when a header declares more than the limit.
        """
        out: list[tuple[int, bytes | memoryview]] = []
        buf = self._buf
        if buf:
            buf += data
            pos = self._drain(buf, out)
            if pos:
                del buf[:pos]
            return out
        # Fast path: parse straight from the chunk and keep only its tail.
        view = memoryview(data)
        pos = self._drain(view, out)
        if pos < len(data):
            buf += view[pos:]
        return out

    def _drain(
        self, data: bytearray | memoryview, out: list[tuple[int, bytes | memoryview]]
    ) -> int:
        pos = 0
        end = len(data)
        limit = self._max
        while end - pos >= HEADER_SIZE:
            flags, size = _HEADER.unpack_from(data, pos)
            if limit is not None and size > limit:
                raise EnvelopeTooLargeError(size, limit)
            start = pos + HEADER_SIZE
            if end - start < size:
                self._need = start + size - end
                return pos
            if isinstance(data, bytearray):
                out.append((flags, bytes(data[start : start + size])))
            else:
                out.append((flags, data[start : start + size]))
            pos = start + size
        self._need = HEADER_SIZE - (end - pos) if end > pos else 0
        return pos

    @property
    def pending(self) -> int:
        """Bytes held of an incomplete envelope (0 at a boundary)."""
        return len(self._buf)

    @property
    def needed(self) -> int:
        """Bytes still missing from the envelope being read (a header's worth at a boundary)."""
        return self._need or HEADER_SIZE
