"""Streams end to end: full-duplex ping-pong, empty streams, response headers before the
first message, 16 MiB messages both ways, 1,000 concurrent calls on one HTTP/2 client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from _support.recording import CallRecorder
from _support.servers import SERVERS, protocol_transports, run_server
from _support.service import EchoRequest, EchoResponse, echo_app
from _support.tls import TLSFiles
from connectanyio.testing.v1 import testing_connect

from connect_anyio import ProtocolType, ResponseMetadata

pytestmark = pytest.mark.anyio

PAIRS = protocol_transports()
PAIR_IDS = [f"{p.name.lower()}-{t}" for p, t in PAIRS]
HTTP2_PAIRS = [(p, t) for p, t in PAIRS if t != "h1"]
HTTP2_IDS = [f"{p.name.lower()}-{t}" for p, t in HTTP2_PAIRS]


def _client(
    srv_url: str, protocol: ProtocolType, http: object, **options: object
) -> testing_connect.EchoServiceClient:
    return testing_connect.EchoServiceClient(
        srv_url,
        protocol=protocol,
        http_client=http,  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(("protocol", "transport"), HTTP2_PAIRS, ids=HTTP2_IDS)
async def test_full_duplex_ping_pong(
    protocol: ProtocolType, transport: str, server: str, tls_files: TLSFiles
) -> None:
    """The client sends request N+1 only after reading response N: 100 rounds."""
    app = echo_app()
    async with (
        run_server(app, server=server, transport=transport, tls=tls_files) as srv,
        srv.http_client() as http,
        _client(srv.url, protocol, http) as client,
    ):
        # One slot: the first request waits there until the call starts.
        send, receive = anyio.create_memory_object_stream[EchoRequest](1)
        with anyio.fail_after(30), receive:  # a half-duplex implementation would hang here
            async with client.bidi(receive, headers={"x-test-pp": "1"}) as stream:
                async with send:
                    for i in range(100):
                        await send.send(EchoRequest(text=f"ping {i}"))
                        response = await stream.__anext__()
                        assert (response.text, response.index) == (f"ping {i}", i)
                        if i == 0:
                            headers = await stream.response_headers()
                            assert headers["x-test-pp"] == "1"
                # Closing the request stream ends the call cleanly.
                assert [r async for r in stream] == []
                assert stream.response_trailers()["x-test-pp-trailer"] == "1"


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(("protocol", "transport"), PAIRS, ids=PAIR_IDS)
async def test_empty_streams(
    protocol: ProtocolType, transport: str, server: str, tls_files: TLSFiles
) -> None:
    async def nothing() -> AsyncIterator[EchoRequest]:
        return
        yield  # pragma: no cover

    app = echo_app()
    async with (
        run_server(app, server=server, transport=transport, tls=tls_files) as srv,
        srv.http_client() as http,
        _client(srv.url, protocol, http) as client,
    ):
        headers = {"x-test-e": "e"}
        with ResponseMetadata() as meta:
            response = await client.client_stream(nothing(), headers=headers)
        assert list(response.request_texts) == []
        assert response.text == ""
        assert meta.trailers()["x-test-e-trailer"] == "e"

        with ResponseMetadata() as meta:
            async with client.bidi(nothing(), headers=headers) as stream:
                assert [r async for r in stream] == []
        assert meta.trailers()["x-test-e-trailer"] == "e"

        with ResponseMetadata() as meta:
            async with client.server_stream(EchoRequest(response_count=0), headers=headers) as s:
                assert [r async for r in s] == []
        assert meta.trailers()["x-test-e-trailer"] == "e"

        # Empty messages (zero bytes on the wire) are messages too.
        async def empties() -> AsyncIterator[EchoRequest]:
            for _ in range(3):
                yield EchoRequest()

        response = await client.client_stream(empties())
        assert list(response.request_texts) == ["", "", ""]
        assert await client.echo_post(EchoRequest()) == EchoResponse(timeout_ms=-1)


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(("protocol", "transport"), PAIRS, ids=PAIR_IDS)
async def test_response_headers_before_the_first_message(
    protocol: ProtocolType, transport: str, server: str, tls_files: TLSFiles
) -> None:
    app = echo_app()
    async with (
        run_server(app, server=server, transport=transport, tls=tls_files) as srv,
        srv.http_client() as http,
        _client(srv.url, protocol, http) as client,
    ):
        request = EchoRequest(text="h", response_count=2)
        with ResponseMetadata() as meta:
            async with client.server_stream(request, headers={"x-test-h": "v"}) as stream:
                headers = await stream.response_headers()
                assert headers["x-test-h"] == "v"
                assert meta.headers()["x-test-h"] == "v"
                assert [r.index async for r in stream] == [0, 1]
            assert meta.trailers()["x-test-h-trailer"] == "v"


SIXTEEN_MIB = 16 << 20


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(("protocol", "transport"), PAIRS, ids=PAIR_IDS)
async def test_sixteen_mib_each_way(
    protocol: ProtocolType, transport: str, server: str, tls_files: TLSFiles
) -> None:
    recorder = CallRecorder()
    app = echo_app(interceptors=[recorder])
    payload = bytes(range(256)) * (SIXTEEN_MIB // 256)
    async with (
        run_server(app, server=server, transport=transport, tls=tls_files) as srv,
        srv.http_client() as http,
        _client(srv.url, protocol, http, send_compression=None, accept_compression=[]) as client,
    ):
        response = await client.echo_post(
            EchoRequest(text="big", payload=payload, response_payload_size=SIXTEEN_MIB)
        )
        assert len(response.payload) == SIXTEEN_MIB
        assert response.payload == b"x" * SIXTEEN_MIB

        # The same through a stream, where flow control paces both directions.
        async def one() -> AsyncIterator[EchoRequest]:
            yield EchoRequest(text="big", payload=payload, response_payload_size=SIXTEEN_MIB)

        async with client.bidi(one()) as stream:
            sizes = [len(r.payload) async for r in stream]
        assert sizes == [SIXTEEN_MIB]


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("protocol", list(ProtocolType), ids=lambda p: p.name.lower())
async def test_thousand_concurrent_calls_on_one_http2_client(
    protocol: ProtocolType, server: str
) -> None:
    app = echo_app()
    results: dict[int, str] = {}
    async with (
        run_server(app, server=server, transport="h2c") as srv,
        srv.http_client() as http,
        _client(srv.url, protocol, http) as client,
    ):

        async def one(i: int) -> None:
            response = await client.echo_post(EchoRequest(text=str(i)))
            results[i] = response.text

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for i in range(1000):
                    tg.start_soon(one, i)
    assert results == {i: str(i) for i in range(1000)}
