"""HTTP/2 flow control on the client, measured in bytes, not time.

A server offers 64 MiB (1 MiB messages) to a client that reads slowly, then leaves:
what the client buffers stays within its stream window, and what the server could
send is what the client consumed plus that window (counted by a relay on the wire).
The other way, a client uploads 24 MiB to a handler that does not read yet: the
client's send blocks on the window instead of buffering.

"Slowly" is not a sleep: after each message the test waits until the server may send
no more on the stream (the client's receive window is used up) and every task in the
process (client, relay, server) is blocked, then measures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from _support.servers import SERVERS, run_server
from _support.service import EchoRequest, EchoResponse, EchoServiceImpl, Observations, echo_app
from _support.tls import TLSFiles
from connectanyio.testing.v1 import testing_connect
from e2e._wire import relay, settle, until

from connect_anyio import HTTPClient, HTTPVersion, ProtocolType
from connect_anyio._http2 import DEFAULT_CONNECTION_WINDOW, DEFAULT_STREAM_WINDOW, H2Connection

pytestmark = pytest.mark.anyio

MIB = 1 << 20
COUNT = 64
"""Messages of 1 MiB offered by the server: far more than the stream (1 MiB) and
connection (16 MiB) windows."""
UPLOAD_COUNT = 24
"""Messages of 1 MiB the client uploads: far more than the server's windows."""
SLOW_ROUNDS = 4
FAST_ROUNDS = 12
PER_MESSAGE_OVERHEAD = 4096
"""Envelope, protobuf fields, HTTP/2 frame headers and TLS records of one 1 MiB message."""

Client = testing_connect.EchoServiceClient


def _client(url: str, http: HTTPClient) -> testing_connect.EchoServiceClient:
    # Uncompressed, so the bytes on the wire are the bytes of the messages.
    return Client(
        url,
        protocol=ProtocolType.CONNECT,
        http_client=http,
        send_compression=None,
        accept_compression=[],
    )


def _via(srv_url: str, port: int) -> str:
    return f"{srv_url.split(':', 1)[0]}://127.0.0.1:{port}"


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _only_connection(http: HTTPClient) -> H2Connection:
    (conn,) = [c for pool in http._http2._pools.values() for c in pool]
    return conn


async def _hold_the_reader(client: testing_connect.EchoServiceClient, tag: str) -> None:
    """A call whose handler never answers: while it waits, its task reads the connection
    for every stream on it (the engine's reader election), so frames for the slow stream
    are taken in even while the test does not read that stream."""
    async with client.server_stream(EchoRequest(tag=tag, wait_for_cancel=True)) as stream:
        async for _ in stream:
            raise AssertionError("the holder got a response")


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("transport", ["h2c", "tls"])
async def test_a_slow_reader_bounds_what_the_server_can_send(
    transport: str, server: str, tls_files: TLSFiles
) -> None:
    obs = Observations()
    async with (
        run_server(echo_app(obs), server=server, transport=transport, tls=tls_files) as srv,
        relay(_port(srv.url)) as wire,
        srv.http_client(version=HTTPVersion.HTTP2) as http,
        _client(_via(srv.url, wire.port), http) as client,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(_hold_the_reader, client, "holder")
        with anyio.fail_after(10):
            await obs.started["holder"].wait()
        request = EchoRequest(tag="slow", response_count=COUNT, response_payload_size=MIB)
        with anyio.fail_after(60):
            async with client.server_stream(request) as stream:
                conn = _only_connection(http)
                for k in range(1, SLOW_ROUNDS + 1):
                    message = await stream.__anext__()
                    slow = conn._streams[max(conn._streams)]  # opened after the holder
                    assert (message.index, len(message.payload)) == (k - 1, MIB)
                    # The server sends all it may: the stream's receive window is used up...
                    await until(lambda: slow.receive_window == 0)  # noqa: B023
                    await settle()
                    # ...what it sent waits in the stream's buffer, within the window...
                    assert DEFAULT_STREAM_WINDOW // 2 < slow.buffered <= DEFAULT_STREAM_WINDOW
                    # ...and that is all it sent beyond what was consumed (of 64 MiB).
                    sent = wire.downstream_bytes
                    assert sent <= (k + 1) * (MIB + PER_MESSAGE_OVERHEAD) + 128 * 1024, (k, sent)
                # Then at full speed: the bounds hold after every message.
                for k in range(SLOW_ROUNDS, SLOW_ROUNDS + FAST_ROUNDS):
                    message = await stream.__anext__()
                    assert (message.index, len(message.payload)) == (k, MIB)
                    assert slow.buffered <= DEFAULT_STREAM_WINDOW
                    assert conn.buffered <= DEFAULT_CONNECTION_WINDOW
            # Left early: the server stops, having sent what was read and one window more.
            with anyio.fail_after(10):
                await obs.finished["slow"].wait()
            await settle()
            read = SLOW_ROUNDS + FAST_ROUNDS
            assert read * MIB <= wire.downstream_bytes
            assert wire.downstream_bytes <= (read + 1) * (MIB + PER_MESSAGE_OVERHEAD) + 128 * 1024
        tg.cancel_scope.cancel()


class HoldingEcho(EchoServiceImpl):
    """Client streams: the handler reads nothing until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = anyio.Event()

    async def client_stream(self, request: AsyncIterator[EchoRequest], ctx: Any) -> EchoResponse:
        await self.gate.wait()
        return await super().client_stream(request, ctx)


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("transport", ["h2c", "tls"])
async def test_sending_to_a_handler_that_does_not_read_blocks_the_sender(
    transport: str, server: str, tls_files: TLSFiles
) -> None:
    service = HoldingEcho()
    app = testing_connect.EchoServiceASGIApplication(service)
    pulled = 0
    payload = b"p" * MIB

    async def requests() -> AsyncIterator[EchoRequest]:
        nonlocal pulled
        for i in range(UPLOAD_COUNT):
            pulled += 1
            yield EchoRequest(text=str(i), payload=payload)

    result: list[EchoResponse] = []
    async with (
        run_server(app, server=server, transport=transport, tls=tls_files) as srv,
        relay(_port(srv.url)) as wire,
        srv.http_client(version=HTTPVersion.HTTP2) as http,
        _client(_via(srv.url, wire.port), http) as client,
    ):

        async def upload() -> None:
            result.append(await client.client_stream(requests()))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(upload)
                await until(lambda: bool(http._http2._pools))
                conn = _only_connection(http)
                await until(lambda: bool(conn._streams))
                (sending,) = conn._streams.values()
                await until(lambda: sending.window_waiting)
                await settle()
                # Blocked on the server's window, holding at most the message being sent...
                assert sending.window_waiting
                assert pulled * MIB - wire.upstream_bytes <= MIB
                # ...after a few messages out of 24: what the server's windows admit.
                assert pulled <= 4, pulled
                assert wire.upstream_bytes <= 4 * (MIB + PER_MESSAGE_OVERHEAD)
                service.gate.set()
        (response,) = result
        assert list(response.request_texts) == [str(i) for i in range(UPLOAD_COUNT)]
        assert pulled == UPLOAD_COUNT
        assert wire.upstream_bytes >= UPLOAD_COUNT * MIB
