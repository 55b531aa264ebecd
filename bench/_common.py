"""Constants and wire bytes shared by every process of the benchmark.

Imports nothing of connect-anyio: the connect-python side runs in its own
virtualenv, where only the message classes (``bench_pb2``) are available.
"""

from __future__ import annotations

import struct

from connectanyio.bench.v1 import bench_pb2

SERVICE = "connectanyio.bench.v1.BenchService"
UNARY_PATH = f"/{SERVICE}/Unary"
STREAM_PATH = f"/{SERVICE}/ServerStream"

PAYLOAD = b"connect-anyio-16"
"""The tiny payload every request and response carries: the bench weighs the RPC machinery."""

STREAM_COUNT = 100
"""Messages per server-streaming call."""

UNARY_REQUEST = bench_pb2.UnaryRequest(payload=PAYLOAD)
UNARY_RESPONSE = bench_pb2.UnaryResponse(payload=PAYLOAD)
STREAM_REQUEST = bench_pb2.ServerStreamRequest(count=STREAM_COUNT, payload=PAYLOAD)
STREAM_RESPONSE = bench_pb2.ServerStreamResponse(payload=PAYLOAD)


def envelope(data: bytes, flags: int = 0) -> bytes:
    """The 5-byte prefix (flags, big-endian length) of gRPC and Connect streaming."""
    return struct.pack(">BI", flags, len(data)) + data


UNARY_REQUEST_BYTES = UNARY_REQUEST.SerializeToString()
UNARY_RESPONSE_BYTES = UNARY_RESPONSE.SerializeToString()
STREAM_REQUEST_BYTES = STREAM_REQUEST.SerializeToString()
STREAM_RESPONSE_BYTES = STREAM_RESPONSE.SerializeToString()

# Request bodies the load generator POSTs, per protocol.
CONNECT_UNARY_BODY = UNARY_REQUEST_BYTES
GRPC_UNARY_BODY = envelope(UNARY_REQUEST_BYTES)
CONNECT_STREAM_BODY = envelope(STREAM_REQUEST_BYTES)
GRPC_STREAM_BODY = envelope(STREAM_REQUEST_BYTES)

CONNECT_UNARY_HEADERS = {"content-type": "application/proto", "connect-protocol-version": "1"}
GRPC_HEADERS = {"content-type": "application/grpc", "te": "trailers"}
CONNECT_STREAM_HEADERS = {
    "content-type": "application/connect+proto",
    "connect-protocol-version": "1",
}

# What the minimal ASGI app answers, without decoding anything.
ENVELOPED_RESPONSE = envelope(UNARY_RESPONSE_BYTES)
STREAM_MESSAGE = envelope(STREAM_RESPONSE_BYTES)
CONNECT_END_STREAM = envelope(b"{}", flags=0x02)
