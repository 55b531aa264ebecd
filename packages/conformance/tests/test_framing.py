"""The runner's stdin/stdout framing: 4-byte big-endian size, then the message."""

from __future__ import annotations

import io
import struct

import pytest
from connectrpc.conformance.v1 import client_compat_pb2, server_compat_pb2

from connect_anyio_conformance._framing import (
    MAX_FRAME_BYTES,
    FramingError,
    encode_frame,
    read_frame,
    read_message,
    write_message,
)


class _Trickle(io.RawIOBase):
    """A pipe that hands out at most ``step`` bytes per read, like a slow runner."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = data
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(self._step, len(buffer), len(self._data))
        buffer[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


def test_round_trip_of_several_messages_then_clean_eof() -> None:
    first = server_compat_pb2.ServerCompatResponse(host="127.0.0.1", port=1234)
    second = server_compat_pb2.ServerCompatResponse(host="::1", port=5, pem_cert=b"x" * 70_000)
    out = io.BytesIO()
    write_message(out, first)
    write_message(out, second)
    data = out.getvalue()
    assert data[:4] == struct.pack(">I", first.ByteSize())
    for step in (1, 3, 4096):
        stream = io.BufferedReader(_Trickle(data, step), buffer_size=1)
        assert read_message(stream, server_compat_pb2.ServerCompatResponse) == first
        assert read_message(stream, server_compat_pb2.ServerCompatResponse) == second
        assert read_message(stream, server_compat_pb2.ServerCompatResponse) is None


def test_empty_message_is_a_frame_not_eof() -> None:
    frame = encode_frame(client_compat_pb2.ClientCompatRequest())
    assert frame == b"\x00\x00\x00\x00"
    stream = io.BytesIO(frame)
    assert read_frame(stream) == b""
    assert read_frame(stream) is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00", "inside a size prefix"),
        (b"\x00\x00\x00\x05abc", "inside a message (3 of 5 bytes)"),
        (struct.pack(">I", MAX_FRAME_BYTES + 1), "more than"),
    ],
)
def test_truncated_or_absurd_frames_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(FramingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_frame(io.BytesIO(data))
