"""One real call before a server is loaded: the load generator checks status codes only."""

from __future__ import annotations

from functools import partial

import anyio
from connectanyio.bench.v1 import bench_pb2
from connectanyio.bench.v1.bench_connect import BenchServiceClient

from connect_anyio import HTTPClient, HTTPVersion, ProtocolType

from ._common import PAYLOAD, UNARY_REQUEST


class WrongAnswer(Exception):
    pass


async def _probe(url: str, http1: bool, protocol: str, stream: bool) -> None:
    version = HTTPVersion.HTTP1 if http1 else HTTPVersion.HTTP2
    kind = ProtocolType.GRPC if protocol == "grpc" else ProtocolType.CONNECT
    with anyio.fail_after(10):
        async with (
            HTTPClient(http_version=version) as http_client,
            BenchServiceClient(
                url, protocol=kind, send_compression=None, http_client=http_client
            ) as client,
        ):
            if not stream:
                response = await client.unary(UNARY_REQUEST)
                if response.payload != PAYLOAD:
                    raise WrongAnswer(f"unary answered {response!r}")
                return
            count = 0
            request = bench_pb2.ServerStreamRequest(count=3, payload=PAYLOAD)
            async with client.server_stream(request) as responses:
                async for message in responses:
                    if message.payload != PAYLOAD:
                        raise WrongAnswer(f"stream answered {message!r}")
                    count += 1
            if count == 0:
                raise WrongAnswer("stream answered no message")


def probe(url: str, *, http1: bool, protocol: str, stream: bool) -> None:
    """Raises unless the server answers one call correctly."""
    anyio.run(partial(_probe, url, http1, protocol, stream))
