"""``ConnectWSGIApplication`` called by the async client, under asyncio and trio.

werkzeug (HTTP/1.1) for every stream kind; hypercorn's WSGI mode for HTTP/2, where a
bidirectional call is full duplex and must be refused with a clear error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.to_thread
import pytest
from _support.service import EchoRequest
from connectanyio.testing.v1 import testing_connect, testing_pb2
from toolbox._helpers import EchoServiceSyncImpl, serve_wsgi, serve_wsgi_h2c

from connect_anyio import (
    Code,
    ConnectError,
    HTTPClient,
    HTTPVersion,
    ProtocolType,
    ResponseMetadata,
)
from connect_anyio._server_wsgi import FULL_DUPLEX_MESSAGE

pytestmark = pytest.mark.anyio

PROTOCOLS = [ProtocolType.CONNECT, ProtocolType.GRPC_WEB]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_wsgi(testing_connect.EchoServiceWSGIApplication(EchoServiceSyncImpl())) as running:
        yield running


async def _requests(count: int) -> AsyncIterator[EchoRequest]:
    for i in range(count):
        yield EchoRequest(text=f"m{i}")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_every_stream_kind(url: str, protocol: ProtocolType) -> None:
    async with testing_connect.EchoServiceClient(url, protocol=protocol) as client:
        with ResponseMetadata() as meta:
            response = await client.echo(EchoRequest(text="hi"), headers={"x-test-k": "v"})
        assert response.text == "hi"
        assert meta.trailers()["x-test-k-trailer"] == "v"

        async with client.server_stream(EchoRequest(response_count=3)) as stream:
            assert [r.index async for r in stream] == [0, 1, 2]

        summary = await client.client_stream(_requests(4))
        assert list(summary.request_texts) == ["m0", "m1", "m2", "m3"]

        async with client.bidi(_requests(3)) as stream:
            assert [r.text async for r in stream] == ["m0", "m1", "m2"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_errors(url: str, protocol: ProtocolType) -> None:
    failure = testing_pb2.Failure(code="failed_precondition", message="no")
    async with testing_connect.EchoServiceClient(url, protocol=protocol) as client:
        with pytest.raises(ConnectError) as unary:
            await client.echo(EchoRequest(fail=failure))
        assert (unary.value.code, unary.value.message) == (Code.FAILED_PRECONDITION, "no")
        async with client.server_stream(EchoRequest(response_count=2, fail=failure)) as s:
            assert [(await s.__anext__()).index, (await s.__anext__()).index] == [0, 1]
            with pytest.raises(ConnectError) as streamed:
                await s.__anext__()
        assert streamed.value.code is Code.FAILED_PRECONDITION


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_full_duplex_is_refused_over_http2(protocol: ProtocolType) -> None:
    """Under a WSGI server speaking h2c, unary and streams work; bidi says why it cannot."""
    app = testing_connect.EchoServiceWSGIApplication(EchoServiceSyncImpl())
    with serve_wsgi_h2c(app) as url:
        await _full_duplex_refused(url, protocol)


async def _full_duplex_refused(url: str, protocol: ProtocolType) -> None:
    async with (
        HTTPClient(http_version=HTTPVersion.HTTP2) as http,
        testing_connect.EchoServiceClient(url, protocol=protocol, http_client=http) as client,
    ):
        assert (await client.echo(EchoRequest(text="over h2"))).text == "over h2"
        summary = await client.client_stream(_requests(2))
        assert list(summary.request_texts) == ["m0", "m1"]
        async with client.server_stream(EchoRequest(response_count=2)) as stream:
            assert [r.index async for r in stream] == [0, 1]
        with pytest.raises(ConnectError) as caught:
            async with client.bidi(_requests(2)) as stream:
                await stream.__anext__()
        assert caught.value.code is Code.UNIMPLEMENTED
        assert caught.value.message == FULL_DUPLEX_MESSAGE


async def test_full_duplex_is_refused_to_the_sync_client() -> None:
    app = testing_connect.EchoServiceWSGIApplication(EchoServiceSyncImpl())

    def call(url: str) -> ConnectError:
        http = HTTPClient(http_version=HTTPVersion.HTTP2)
        with (
            testing_connect.EchoServiceClientSync(url, http_client=http) as client,
            pytest.raises(ConnectError) as caught,
            client.bidi([EchoRequest()]) as stream,
        ):
            next(stream)
        return caught.value

    with serve_wsgi_h2c(app) as url:
        error = await anyio.to_thread.run_sync(call, url)
    assert (error.code, error.message) == (Code.UNIMPLEMENTED, FULL_DUPLEX_MESSAGE)


async def test_grpc_is_refused() -> None:
    """gRPC needs HTTP trailers, which WSGI cannot send: refused even over HTTP/2."""
    app = testing_connect.EchoServiceWSGIApplication(EchoServiceSyncImpl())
    with serve_wsgi_h2c(app) as url:
        async with testing_connect.EchoServiceClient(url, protocol=ProtocolType.GRPC) as client:
            with pytest.raises(ConnectError) as caught:
                await client.echo(EchoRequest())
    assert "505" in caught.value.message
