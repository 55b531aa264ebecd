"""The client transport on the wire: GOAWAY mid-flight, connection reuse and clean close,
connections the server closed while idle, and early cancellation as RST_STREAM / close.

What travels is observed by a relay that counts connections and parses HTTP/2 frames,
or by a raw HTTP/2 server (``h2``) that the test drives frame by frame.
"""

from __future__ import annotations

import gc
import itertools
import warnings
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from _support.servers import SERVERS, protocol_transports, run_server
from _support.service import EchoRequest, EchoResponse, EchoServiceImpl, Observations, echo_app
from _support.tls import TLSFiles
from connectanyio.testing.v1 import testing_connect
from e2e._servers import custom_server
from e2e._wire import GOAWAY, HEADERS, RST_STREAM, RawRequest, raw_h2_server, relay, until
from h2.errors import ErrorCodes

from connect_anyio import Code, ConnectError, HTTPClient, HTTPVersion, ProtocolType
from connect_anyio._http2 import H2Connection

pytestmark = pytest.mark.anyio

Client = testing_connect.EchoServiceClient
_tags = itertools.count()
PROTOCOLS = list(ProtocolType)
PROTOCOL_IDS = [p.name.lower() for p in PROTOCOLS]


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def h2_connections(http: HTTPClient) -> list[H2Connection]:
    """The HTTP/2 connections the client holds."""
    return [conn for pool in http._http2._pools.values() for conn in pool]


class GatedEcho(EchoServiceImpl):
    """Server streams send one response, then wait for the test to open their gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: dict[str, anyio.Event] = defaultdict(anyio.Event)

    async def server_stream(self, request: EchoRequest, ctx: Any) -> AsyncIterator[EchoResponse]:
        yield EchoResponse(text=request.text, index=0)
        await self.gates[request.tag].wait()
        yield EchoResponse(text=request.text, index=1)


def _request_text(request: RawRequest) -> str:
    body = bytes(request.body)
    if request.content_type.startswith("application/grpc"):
        body = body[5:]  # one enveloped message
    return EchoRequest.FromString(body).text


# -- GOAWAY ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=PROTOCOL_IDS)
async def test_goaway_in_flight_streams_finish_later_ones_are_refused(
    protocol: ProtocolType,
) -> None:
    """A raw server takes four calls (streams 1, 3, 5, 7), then sends GOAWAY(last=3)."""
    async with (
        raw_h2_server() as server,
        HTTPClient(http_version=HTTPVersion.HTTP2) as http,
        Client(server.url, protocol=protocol, http_client=http) as client,
    ):
        results: dict[int, str | ConnectError] = {}
        done: dict[int, anyio.Event] = defaultdict(anyio.Event)

        async def call(i: int) -> None:
            try:
                results[i] = (await client.echo(EchoRequest(text=str(i)))).text
            except ConnectError as e:
                results[i] = e
            done[i].set()

        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(call, i)
            requests = [await server.next_request() for _ in range(4)]
            assert sorted(r.stream_id for r in requests) == [1, 3, 5, 7]
            assert {r.conn.index for r in requests} == {0}
            with anyio.fail_after(10):
                for r in requests:
                    await r.ended.wait()  # the whole request is in
            by_stream = {r.stream_id: int(_request_text(r)) for r in requests}
            old = requests[0].conn
            await old.goaway(last_stream_id=3)

            # Above the last stream id: refused at once, as unavailable (safe to retry).
            refused = [r for r in requests if r.stream_id > 3]
            in_flight = [r for r in requests if r.stream_id <= 3]
            with anyio.fail_after(10):
                for r in refused:
                    await done[by_stream[r.stream_id]].wait()
            for r in refused:
                error = results[by_stream[r.stream_id]]
                assert isinstance(error, ConnectError), error
                assert error.code is Code.UNAVAILABLE

            # A new call goes to a new connection while the old one drains.
            tg.start_soon(call, 4)
            fresh = await server.next_request()
            assert (fresh.conn.index, fresh.stream_id) == (1, 1)
            await fresh.respond(EchoResponse(text="fresh").SerializeToString())
            with anyio.fail_after(10):
                await done[4].wait()
            assert results[4] == "fresh"

            # The streams the GOAWAY let through finish normally on the old connection.
            for r in in_flight:
                await r.respond(EchoResponse(text=f"stream {r.stream_id}").SerializeToString())
            with anyio.fail_after(10):
                for r in in_flight:
                    await done[by_stream[r.stream_id]].wait()
            for r in in_flight:
                assert results[by_stream[r.stream_id]] == f"stream {r.stream_id}"

        # Drained, the old connection is closed by the client; nothing more was sent on it.
        with anyio.fail_after(10):
            await old.client_eof.wait()
        assert old.after_goaway == []
        assert len(server.connections) == 2
        assert not server.connections[1].client_eof.is_set()


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=PROTOCOL_IDS)
async def test_native_graceful_shutdown_goaway_mid_flight(protocol: ProtocolType) -> None:
    """Server A shuts down gracefully with a stream in flight; a relay sends the first
    connection to A and later ones to server B."""
    service = GatedEcho()
    app_a = testing_connect.EchoServiceASGIApplication(service)
    async with (
        custom_server(app_a, server="native", graceful_timeout=30) as a,
        custom_server(echo_app(), server="native") as b,
        relay(a.port, b.port) as wire,
        HTTPClient(http_version=HTTPVersion.HTTP2) as http,
        Client(wire.url, protocol=protocol, http_client=http) as client,
    ):
        tag = f"goaway-{next(_tags)}"
        rest: list[EchoResponse] = []
        async with client.server_stream(EchoRequest(text="in flight", tag=tag)) as stream:
            first = await stream.__anext__()
            assert first.index == 0

            async def read_rest() -> None:
                rest.extend([r async for r in stream])

            async with anyio.create_task_group() as tg:
                tg.start_soon(read_rest)  # waits on the gate, reading the connection
                a.shutdown()
                downstream = wire.connections[0].downstream
                await downstream.wait_for(lambda: bool(downstream.of_type(GOAWAY)))
                (goaway,) = downstream.of_type(GOAWAY)
                assert (goaway.last_stream_id, goaway.error_code) == (1, ErrorCodes.NO_ERROR)
                (old,) = h2_connections(http)
                await until(lambda: old.goaway_received)  # the client has read it
                assert not old.accepting

                # New calls go to a new connection, the stream in flight goes on.
                with anyio.fail_after(10):
                    assert (await client.echo(EchoRequest(text="new"))).text == "new"
                assert wire.accepted == 2
                assert wire.connections[1].upstream.of_type(HEADERS)
                service.gates[tag].set()
        assert [(r.text, r.index) for r in rest] == [("in flight", 1)]

        # A finishes its shutdown; the drained connection is closed by both sides.
        with anyio.fail_after(10):
            await a.stopped.wait()
            await wire.connections[0].client_eof.wait()
        assert not any(f.type == RST_STREAM for f in wire.connections[0].upstream.frames)
        assert (await client.echo(EchoRequest(text="still"))).text == "still"
        assert wire.accepted == 2


# -- connection reuse and clean close ---------------------------------------------------


async def _requests(*texts: str) -> AsyncIterator[EchoRequest]:
    for text in texts:
        yield EchoRequest(text=text)


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(
    ("protocol", "transport"),
    protocol_transports(),
    ids=[f"{p.name.lower()}-{t}" for p, t in protocol_transports()],
)
async def test_sequential_calls_share_one_connection_and_aclose_closes_it(
    protocol: ProtocolType, transport: str, server: str, tls_files: TLSFiles
) -> None:
    async with (
        run_server(echo_app(), server=server, transport=transport, tls=tls_files) as srv,
        relay(_port(srv.url)) as wire,
    ):
        scheme = "https" if transport == "tls" else "http"
        http = srv.http_client()
        client = Client(f"{scheme}://127.0.0.1:{wire.port}", protocol=protocol, http_client=http)
        for i in range(5):
            assert (await client.echo(EchoRequest(text=str(i)))).text == str(i)
        async with client.server_stream(EchoRequest(text="s", response_count=3)) as stream:
            assert [r.index async for r in stream] == [0, 1, 2]
        response = await client.client_stream(_requests("a", "b"))
        assert list(response.request_texts) == ["a", "b"]
        async with client.bidi(_requests("x", "y")) as bidi:
            assert [r.text async for r in bidi] == ["x", "y"]
        assert (await client.echo(EchoRequest(text="last"))).text == "last"
        assert wire.accepted == 1

        await client.close()  # a shared HTTPClient stays open
        assert (await client.echo(EchoRequest(text="shared"))).text == "shared"
        assert wire.accepted == 1
        assert wire.closed_by_client() == 0

        await http.aclose()
        await wire.wait_for(lambda: wire.closed_by_client() == wire.accepted)
        # Nothing was left for the garbage collector to close.
        del client, http, stream, bidi
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gc.collect()
        assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("transport", ["h1", "h2c"])
async def test_a_connection_the_server_closed_while_idle_is_not_reused(
    server: str, transport: str, anyio_backend: str
) -> None:
    if server == "hypercorn" and anyio_backend == "trio":
        pytest.skip("hypercorn's trio worker does not close idle connections (keep_alive_timeout)")
    version = HTTPVersion.HTTP1 if transport == "h1" else HTTPVersion.HTTP2
    async with (
        custom_server(echo_app(), server=server, idle_timeout=0.1) as srv,
        relay(srv.port) as wire,
        HTTPClient(http_version=version) as http,
        Client(wire.url, http_client=http) as client,
    ):
        assert (await client.echo(EchoRequest(text="one"))).text == "one"
        # The server's idle timeout closes the connection while the client holds it.
        with anyio.fail_after(10):
            await wire.connections[0].server_eof.wait()
        with anyio.fail_after(10):
            assert (await client.echo(EchoRequest(text="two"))).text == "two"
        assert wire.accepted == 2
        await wire.wait_for(lambda: wire.connections[0].client_eof.is_set())


# -- early cancel on the wire ------------------------------------------------------------


class WalkedAway(Exception):
    pass


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(
    ("protocol", "transport"),
    [(p, t) for p, t in protocol_transports() if t != "tls"],
    ids=[f"{p.name.lower()}-{t}" for p, t in protocol_transports() if t != "tls"],
)
@pytest.mark.parametrize("kind", ["server_stream", "bidi"])
async def test_leaving_a_stream_early_cancels_it_on_the_wire(
    kind: str, protocol: ProtocolType, transport: str, server: str
) -> None:
    """HTTP/2: RST_STREAM(CANCEL) on the call's stream, the connection stays.
    HTTP/1.1: the connection is closed (the only way to abort an exchange)."""
    obs = Observations()
    tag = f"wire-{next(_tags)}"
    async with (
        run_server(echo_app(obs), server=server, transport=transport) as srv,
        relay(_port(srv.url)) as wire,
        srv.http_client() as http,
        Client(wire.url, protocol=protocol, http_client=http) as client,
    ):
        assert (await client.echo(EchoRequest(text="warm"))).text == "warm"
        blocker = EchoRequest(tag=tag, wait_for_cancel=True, response_count=1)
        if kind == "server_stream":
            call = client.server_stream(blocker)
        else:
            call = client.bidi(_one(EchoRequest(text="first", response_count=1), blocker))
        with pytest.raises(WalkedAway):
            async with call as stream:
                first = await stream.__anext__()
                assert first.index == 0
                with anyio.fail_after(10):
                    await obs.started[tag].wait()
                raise WalkedAway
        conn = wire.connections[0]
        if transport == "h2c":
            call_stream = conn.upstream.of_type(HEADERS)[-1].stream_id

            def reset_seen() -> bool:
                return any(
                    f.stream_id == call_stream and f.error_code == ErrorCodes.CANCEL
                    for f in conn.upstream.of_type(RST_STREAM)
                )

            await conn.upstream.wait_for(reset_seen)
            assert not conn.client_eof.is_set()
        else:
            with anyio.fail_after(10):
                await conn.client_eof.wait()
        await obs.wait_cancelled(tag)
        # The next call: the same connection over HTTP/2, a new one over HTTP/1.1.
        assert (await client.echo(EchoRequest(text="after"))).text == "after"
        assert wire.accepted == (1 if transport == "h2c" else 2)


async def _one(*messages: EchoRequest) -> AsyncIterator[EchoRequest]:
    for message in messages:
        yield message


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=PROTOCOL_IDS)
async def test_cancelled_unary_call_resets_its_stream(protocol: ProtocolType) -> None:
    """Seen by a raw server: the request arrives, the caller is cancelled, RST_STREAM(CANCEL)."""
    async with (
        raw_h2_server() as server,
        HTTPClient(http_version=HTTPVersion.HTTP2) as http,
        Client(server.url, protocol=protocol, http_client=http) as client,
    ):
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.echo, EchoRequest(text="never answered"))
            request = await server.next_request()
            with anyio.fail_after(10):
                await request.ended.wait()
            tg.cancel_scope.cancel()
        with anyio.fail_after(10):
            await request.reset.wait()
        assert request.reset_code == ErrorCodes.CANCEL
        # The connection goes on serving.
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.echo, EchoRequest(text="answered"))
            again = await server.next_request()
            assert (again.conn.index, again.stream_id) == (0, 3)
            await again.respond(EchoResponse(text="ok").SerializeToString())
