"""The end-to-end matrix: stream type x codec x compression x protocol x transport x server
x backend, over real servers on 127.0.0.1.

Each case checks the messages, the metadata both ways (request headers seen by the
handler, response headers and trailers through ``ResponseMetadata``), and that the
codec and compression asked for are the ones used on the wire in both directions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from _support.recording import CallRecorder
from _support.servers import SERVERS, protocol_transports, run_server
from _support.service import EchoRequest, echo_app
from _support.tls import TLSFiles
from connectanyio.testing.v1 import testing_connect

from connect_anyio import (
    ProtocolType,
    ResponseMetadata,
    StreamType,
    proto_binary_codec,
    proto_json_codec,
)

pytestmark = pytest.mark.anyio

CODECS = {"proto": proto_binary_codec(), "json": proto_json_codec()}
COMPRESSIONS = ["identity", "gzip", "br", "zstd"]
PAYLOAD = bytes(range(256)) * 8  # compressible, and not text: a real test of both codecs
METADATA = {"x-test-a": "alpha", "x-test-b": "beta"}


def _encoding_headers(protocol: ProtocolType, stream_type: StreamType) -> tuple[str, str]:
    """(request encoding header, response encoding header) for this protocol and shape."""
    if protocol is ProtocolType.CONNECT:
        if stream_type is StreamType.UNARY:
            return "content-encoding", "content-encoding"
        return "connect-content-encoding", "connect-content-encoding"
    return "grpc-encoding", "grpc-encoding"


def _content_type(protocol: ProtocolType, stream_type: StreamType, codec: str) -> str:
    if protocol is ProtocolType.CONNECT:
        if stream_type is StreamType.UNARY:
            return f"application/{codec}"
        return f"application/connect+{codec}"
    if protocol is ProtocolType.GRPC:
        return f"application/grpc+{codec}"
    return f"application/grpc-web+{codec}"


async def _requests(count: int) -> AsyncIterator[EchoRequest]:
    for i in range(count):
        yield EchoRequest(text=f"request {i} \u2603", payload=PAYLOAD, response_payload_size=3000)


async def _call(client: testing_connect.EchoServiceClient, stream_type: StreamType) -> list[Any]:
    """Makes the call; checks what only the call itself knows; returns the responses."""
    if stream_type is StreamType.UNARY:
        request = EchoRequest(text="unary \u2603", payload=PAYLOAD, response_payload_size=3000)
        response = await client.echo_post(request, headers=METADATA)
        assert response.text == "unary \u2603"
        return [response]
    if stream_type is StreamType.SERVER_STREAM:
        request = EchoRequest(text="server", response_count=3, response_payload_size=3000)
        async with client.server_stream(request, headers=METADATA) as stream:
            responses = [r async for r in stream]
        assert [r.text for r in responses] == ["server"] * 3
        return responses
    if stream_type is StreamType.CLIENT_STREAM:
        response = await client.client_stream(_requests(3), headers=METADATA)
        assert list(response.request_texts) == [f"request {i} \u2603" for i in range(3)]
        return [response]
    async with client.bidi(_requests(3), headers=METADATA) as stream:
        responses = [r async for r in stream]
    assert [r.text for r in responses] == [f"request {i} \u2603" for i in range(3)]
    return responses


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(
    ("protocol", "transport"),
    protocol_transports(),
    ids=[f"{p.name.lower()}-{t}" for p, t in protocol_transports()],
)
@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("codec", list(CODECS))
@pytest.mark.parametrize("stream_type", list(StreamType), ids=lambda s: s.name.lower())
async def test_matrix(
    stream_type: StreamType,
    codec: str,
    compression: str,
    protocol: ProtocolType,
    transport: str,
    server: str,
    tls_files: TLSFiles,
) -> None:
    recorder = CallRecorder()
    app = echo_app(interceptors=[recorder], compress_min_bytes=0)
    compressed = compression != "identity"
    async with (
        run_server(app, server=server, transport=transport, tls=tls_files) as srv,
        srv.http_client() as http,
        testing_connect.EchoServiceClient(
            srv.url,
            protocol=protocol,
            codec=CODECS[codec],
            send_compression=compression if compressed else None,
            accept_compression=[compression] if compressed else [],
            compress_min_bytes=0,
            http_client=http,
        ) as client,
    ):
        with ResponseMetadata() as meta:
            responses = await _call(client, stream_type)

    # Messages: every response carries the payload size asked for, in order.
    assert [len(r.payload) for r in responses] == [3000] * len(responses)
    if stream_type.streams_responses:
        assert [r.index for r in responses] == list(range(len(responses)))
    # Request metadata reached the handler; it echoed it as a header and a trailer.
    assert all(dict(r.headers) == METADATA for r in responses)
    for key, value in METADATA.items():
        assert meta.headers().getall(key) == [value]
        assert meta.trailers().getall(key + "-trailer") == [value]
    # The wire used the codec and compressions asked for, both ways.
    seen = recorder.last.headers
    request_encoding, response_encoding = _encoding_headers(protocol, stream_type)
    assert seen["content-type"] == _content_type(protocol, stream_type, codec)
    assert seen.get(request_encoding) == (compression if compressed else None)
    assert meta.headers().get(response_encoding) == (compression if compressed else None)
    assert meta.headers()["content-type"] == _content_type(protocol, stream_type, codec)
    if protocol is not ProtocolType.CONNECT:
        assert meta.trailers()["grpc-status"] == "0"


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("transport", ["h1", "h2c", "tls"])
@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("codec", list(CODECS))
async def test_connect_get(
    codec: str, compression: str, transport: str, server: str, tls_files: TLSFiles
) -> None:
    """Connect GET for a NO_SIDE_EFFECTS method, every codec and compression."""
    recorder = CallRecorder()
    app = echo_app(interceptors=[recorder], compress_min_bytes=0)
    compressed = compression != "identity"
    request = EchoRequest(text="get me \u2603 &=?", payload=PAYLOAD, response_payload_size=100)
    async with (
        run_server(app, server=server, transport=transport, tls=tls_files) as srv,
        srv.http_client() as http,
        testing_connect.EchoServiceClient(
            srv.url,
            codec=CODECS[codec],
            send_compression=compression if compressed else None,
            accept_compression=[compression] if compressed else [],
            compress_min_bytes=0,
            http_client=http,
        ) as client,
    ):
        with ResponseMetadata() as meta:
            response = await client.echo(request, use_get=True, headers=METADATA)
    assert response.text == request.text
    assert len(response.payload) == 100
    assert dict(response.headers) == METADATA
    assert recorder.last.http_method == "GET"
    assert "content-type" not in recorder.last.headers
    assert meta.headers().get("content-encoding") == (compression if compressed else None)
    assert meta.trailers()["x-test-a-trailer"] == "alpha"
