"""The runner's stdin/stdout framing: each message is a 4-byte big-endian length, then that
many bytes of a binary-encoded protobuf message.

Reads are blocking (the programs under test run them in a worker thread): the runner's
pipes are plain files, and a blocking read is the one way to read them that behaves the
same under asyncio and trio.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, TypeVar

from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

_PREFIX = struct.Struct(">I")

MAX_FRAME_BYTES = 64 * 1024 * 1024
"""Refuse a declared size above this: a corrupt prefix must not make us allocate gigabytes."""


class FramingError(Exception):
    """The input is not a sequence of size-delimited messages (truncated or oversized)."""


def encode_frame(message: Message) -> bytes:
    """The size prefix followed by the serialized message."""
    data = message.SerializeToString()
    return _PREFIX.pack(len(data)) + data


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(stream: BinaryIO) -> bytes | None:
    """The next message's bytes; ``None`` at a clean end of input (EOF at a boundary).

    Raises ``FramingError`` when the input ends inside a frame or declares an absurd size.
    """
    prefix = _read_exactly(stream, _PREFIX.size)
    if not prefix:
        return None
    if len(prefix) < _PREFIX.size:
        raise FramingError(f"input ended inside a size prefix ({len(prefix)} of 4 bytes)")
    (size,) = _PREFIX.unpack(prefix)
    if size > MAX_FRAME_BYTES:
        raise FramingError(f"frame declares {size} bytes, more than {MAX_FRAME_BYTES}")
    data = _read_exactly(stream, size)
    if len(data) < size:
        raise FramingError(f"input ended inside a message ({len(data)} of {size} bytes)")
    return data


def read_message(stream: BinaryIO, message_type: type[M]) -> M | None:
    """The next message parsed as ``message_type``; ``None`` at the end of input."""
    data = read_frame(stream)
    if data is None:
        return None
    return message_type.FromString(data)


def write_message(stream: BinaryIO, message: Message) -> None:
    """Writes one frame in a single call and flushes it, so frames never interleave."""
    stream.write(encode_frame(message))
    stream.flush()
