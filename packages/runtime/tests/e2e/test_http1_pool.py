"""The client's own HTTP/1.1 pool and codec.

The pool: concurrent calls each get a connection (up to ``max_connections``, then
they queue), idle connections are reused until ``keepalive_expiry``, a caller that
gives up waiting passes its turn on, and ``aclose`` ends calls in flight. The codec,
against a raw server that writes exactly the bytes a test needs: chunked bodies,
informational responses, bodies that end with the connection, folded headers;
every malformed or cut-short response is ``unavailable``, a request that HTTP/1.1
cannot carry never leaves, and a request the server dropped is not sent again.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

import anyio
import pytest
from _support.servers import SERVERS
from _support.service import EchoRequest, EchoResponse, EchoServiceImpl, echo_app
from _support.tls import TLSFiles
from anyio.abc import SocketAttribute, SocketStream
from connectanyio.testing.v1 import testing_connect
from e2e._servers import custom_server
from e2e._wire import Waitable, relay, settle

from connect_anyio import Code, ConnectError, HTTPClient, HTTPVersion, ProtocolType

pytestmark = pytest.mark.anyio

Client = testing_connect.EchoServiceClient


def http1(**options: object) -> HTTPClient:
    return HTTPClient(http_version=HTTPVersion.HTTP1, **options)  # type: ignore[arg-type]


class GatedEcho(EchoServiceImpl):
    """Unary calls wait at a gate the test opens; ``arrived`` counts the ones waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = 0
        self.changes = Waitable()
        self.gate = anyio.Event()

    async def echo(self, request: EchoRequest, ctx: object) -> EchoResponse:
        self.arrived += 1
        self.changes.changed()
        await self.gate.wait()
        return EchoResponse(text=request.text)


def gated_app(service: GatedEcho) -> testing_connect.EchoServiceASGIApplication:
    return testing_connect.EchoServiceASGIApplication(service)


# -- the pool ---------------------------------------------------------------------------


@pytest.mark.parametrize("server", SERVERS)
async def test_concurrent_calls_each_get_a_connection_then_reuse_them(server: str) -> None:
    service = GatedEcho()
    async with (
        custom_server(gated_app(service), server=server) as srv,
        relay(srv.port) as wire,
        http1() as http,
        Client(wire.url, http_client=http) as client,
    ):
        results: dict[int, str] = {}

        async def call(i: int) -> None:
            results[i] = (await client.echo(EchoRequest(text=str(i)))).text

        async with anyio.create_task_group() as tg:
            for i in range(16):
                tg.start_soon(call, i)
            # All 16 handlers run at once: 16 exchanges in flight, one per connection.
            await service.changes.wait_for(lambda: service.arrived == 16)
            assert wire.accepted == 16
            service.gate.set()
        assert results == {i: str(i) for i in range(16)}

        async with anyio.create_task_group() as tg:
            for i in range(16, 32):
                tg.start_soon(call, i)
        assert len(results) == 32
        assert wire.accepted == 16  # the idle connections served the next calls
        assert wire.closed_by_client() == 0


@pytest.mark.parametrize("server", SERVERS)
async def test_max_connections_queues_the_other_calls(server: str) -> None:
    service = GatedEcho()
    async with (
        custom_server(gated_app(service), server=server) as srv,
        relay(srv.port) as wire,
        http1(max_connections=3) as http,
        Client(wire.url, http_client=http) as client,
    ):
        done: list[str] = []

        async def call(i: int) -> None:
            done.append((await client.echo(EchoRequest(text=str(i)))).text)

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(call, i)
            await service.changes.wait_for(lambda: service.arrived == 3)
            await settle()  # everyone else is blocked: waiting for a connection
            assert (service.arrived, wire.accepted, done) == (3, 3, [])
            service.gate.set()
        assert sorted(done, key=int) == [str(i) for i in range(8)]
        assert wire.accepted == 3


async def test_a_caller_that_stops_waiting_passes_its_turn_on() -> None:
    service = GatedEcho()
    async with (
        custom_server(gated_app(service), server="native") as srv,
        relay(srv.port) as wire,
        http1(max_connections=1) as http,
        Client(wire.url, http_client=http) as client,
    ):
        done: list[str] = []

        async def call(text: str) -> None:
            done.append((await client.echo(EchoRequest(text=text))).text)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "holder")
            await service.changes.wait_for(lambda: service.arrived == 1)
            impatient = anyio.CancelScope()

            async def give_up_later() -> None:
                with impatient:
                    await call("impatient")

            tg.start_soon(give_up_later)
            tg.start_soon(call, "patient")
            await settle()
            impatient.cancel()
            await settle()
            service.gate.set()
        assert sorted(done) == ["holder", "patient"]
        assert wire.accepted == 1


@pytest.mark.parametrize(("expiry", "connections"), [(None, 1), (60.0, 1), (0.0, 3)])
async def test_keepalive_expiry(expiry: float | None, connections: int) -> None:
    async with (
        custom_server(echo_app(), server="native") as srv,
        relay(srv.port) as wire,
        http1(keepalive_expiry=expiry) as http,
        Client(wire.url, http_client=http) as client,
    ):
        for text in ("one", "two", "three"):
            assert (await client.echo(EchoRequest(text=text))).text == text
        assert wire.accepted == connections
        # An expired connection is closed by the client when it is next looked at.
        await wire.wait_for(lambda: wire.closed_by_client() == connections - 1)


async def test_expired_connections_to_other_origins_are_closed() -> None:
    async with (
        custom_server(echo_app(), server="native") as srv,
        relay(srv.port) as first,
        relay(srv.port) as second,
        http1(keepalive_expiry=0) as http,
        Client(first.url, http_client=http) as one,
        Client(second.url, http_client=http) as two,
    ):
        assert (await one.echo(EchoRequest(text="a"))).text == "a"
        assert first.closed_by_client() == 0
        assert (await two.echo(EchoRequest(text="b"))).text == "b"
        await first.wait_for(lambda: first.closed_by_client() == 1)


async def test_a_full_pool_closes_an_idle_connection_to_another_origin() -> None:
    async with (
        custom_server(echo_app(), server="native") as srv,
        relay(srv.port) as first,
        relay(srv.port) as second,
        http1(max_connections=1) as http,
        Client(first.url, http_client=http) as one,
        Client(second.url, http_client=http) as two,
    ):
        assert (await one.echo(EchoRequest(text="a"))).text == "a"
        assert (await two.echo(EchoRequest(text="b"))).text == "b"
        await first.wait_for(lambda: first.closed_by_client() == 1)
        assert (await one.echo(EchoRequest(text="c"))).text == "c"
        assert (first.accepted, second.accepted) == (2, 1)


async def test_aclose_ends_calls_in_flight_as_unavailable() -> None:
    service = GatedEcho()
    async with (
        custom_server(gated_app(service), server="native") as srv,
        relay(srv.port) as wire,
    ):
        http = http1()
        client = Client(wire.url, http_client=http)
        errors: list[ConnectError] = []

        async def call() -> None:
            try:
                await client.echo(EchoRequest(text="in flight"))
            except ConnectError as e:
                errors.append(e)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await service.changes.wait_for(lambda: service.arrived == 1)
            with anyio.fail_after(10):
                await http.aclose()
        assert [e.code for e in errors] == [Code.UNAVAILABLE]
        await wire.wait_for(lambda: wire.closed_by_client() == 1)
        service.gate.set()


# -- a raw HTTP/1.1 server ------------------------------------------------------------------


@dataclass
class RawH1Connection:
    stream: SocketStream
    buffer: bytes = b""
    requests: list[bytes] = field(default_factory=list)

    async def read_request(self) -> bytes | None:
        """The next request's head and body (Content-Length or chunked); None at the end."""
        while b"\r\n\r\n" not in self.buffer:
            try:
                self.buffer += await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return None
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        length = 0
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"transfer-encoding":
                chunked = True
        if chunked:
            while not self.buffer.endswith(b"0\r\n\r\n"):
                self.buffer += await self.stream.receive()
            body, self.buffer = self.buffer, b""
        else:
            while len(self.buffer) < length:
                self.buffer += await self.stream.receive()
            body, self.buffer = self.buffer[:length], self.buffer[length:]
        request = head + b"\r\n\r\n" + body
        self.requests.append(request)
        return request

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)


Script = Callable[[RawH1Connection], Awaitable[None]]


@dataclass
class RawH1Server:
    port: int
    connections: list[RawH1Connection] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[bytes]:
        return [r for c in self.connections for r in c.requests]


@asynccontextmanager
async def raw_h1_server(script: Script) -> AsyncIterator[RawH1Server]:
    """Runs ``script`` on each accepted connection, then closes it."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    server = RawH1Server(listener.extra(SocketAttribute.local_port))

    async def handle(stream: SocketStream) -> None:
        conn = RawH1Connection(stream)
        server.connections.append(conn)
        async with stream:
            with suppress(anyio.BrokenResourceError, anyio.EndOfStream, OSError):
                await script(conn)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()


def _ok_body(text: str) -> bytes:
    return EchoResponse(text=text).SerializeToString()


def response(text: str, *, extra: bytes = b"") -> bytes:
    """A Connect unary response with Content-Length."""
    body = _ok_body(text)
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/proto\r\n%scontent-length: %d\r\n\r\n%s"
        % (extra, len(body), body)
    )


def answer_each(*responses: bytes) -> Script:
    """Answers the n-th request on a connection with ``responses[n]``; then closes."""

    async def script(conn: RawH1Connection) -> None:
        for data in responses:
            if await conn.read_request() is None:
                return
            await conn.send(data)

    return script


def chunked(body: bytes, *, sizes: list[int]) -> bytes:
    out = b""
    for size in sizes:
        piece, body = body[:size], body[size:]
        out += b"%x;ext=1\r\n%s\r\n" % (len(piece), piece)
    assert not body
    return out + b"0\r\nx-trailer: ignored\r\n\r\n"


GOOD = {
    "chunked": (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/proto\r\n"
        b"transfer-encoding: chunked\r\n\r\n" + chunked(_ok_body("good"), sizes=[1, 2, 3])
    ),
    "informational": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: x\r\n\r\n"
    + response("good"),
    "until-close": (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/proto\r\n\r\n" + _ok_body("good")
    ),
    "http/1.0": b"HTTP/1.0 200 OK\r\nContent-Type: application/proto\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_ok_body("good")), _ok_body("good")),
    "folded-header": response("good", extra=b"x-folded: one\r\n  two\r\n"),
    "bare-lf": response("good").replace(b"\r\n", b"\n"),
}


@pytest.mark.parametrize("case", list(GOOD))
async def test_responses_the_codec_reads(case: str) -> None:
    data = GOOD[case]
    reusable = case in ("chunked", "informational", "folded-header", "bare-lf")
    # A body that ends with the connection: the server answers once and closes.
    script = answer_each(data, data) if reusable else answer_each(data)
    async with (
        raw_h1_server(script) as server,
        http1() as http,
        Client(server.url, http_client=http) as client,
    ):
        with anyio.fail_after(10):
            assert (await client.echo(EchoRequest(text="x"))).text == "good"
            assert (await client.echo(EchoRequest(text="x"))).text == "good"
        assert len(server.connections) == (1 if reusable else 2)


async def test_a_streamed_response_in_chunks_and_a_streamed_request() -> None:
    def envelope(data: bytes, flags: int = 0) -> bytes:
        return bytes([flags]) + len(data).to_bytes(4, "big") + data

    stream_body = envelope(_ok_body("a")) + envelope(_ok_body("b")) + envelope(b"{}", flags=2)
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/connect+proto\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    data = head + chunked(stream_body, sizes=[3, 4, len(stream_body) - 7])
    async with (
        raw_h1_server(answer_each(data, data)) as server,
        http1() as http,
        Client(server.url, http_client=http) as client,
    ):

        async def requests() -> AsyncIterator[EchoRequest]:
            for text in ("one", "", "three"):
                yield EchoRequest(text=text)

        with anyio.fail_after(10):
            async with client.bidi(requests()) as stream:
                assert [r.text async for r in stream] == ["a", "b"]
            async with client.server_stream(EchoRequest(text="s")) as stream:
                assert [r.text async for r in stream] == ["a", "b"]
        first = server.connections[0].requests[0]
        assert b"transfer-encoding: chunked\r\n" in first
        assert first.endswith(b"\r\n0\r\n\r\n")
        assert len(server.connections) == 1


BAD = {
    "garbage": b"HELLO\r\n\r\n",
    "bad-status": b"HTTP/1.1 2000 OK\r\n\r\n",
    "http/2-status-line": b"HTTP/2 200\r\n\r\n",
    "bad-header": b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    "space-in-name": b"HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n",
    "nul": b"HTTP/1.1 200 OK\r\nx: a\x00b\r\n\r\n",
    "cut-head": b"HTTP/1.1 200 OK\r\ncontent-type: appl",
    "cut-body": b"HTTP/1.1 200 OK\r\ncontent-type: application/proto\r\n"
    b"content-length: 100\r\n\r\nshort",
    "cut-chunked": b"HTTP/1.1 200 OK\r\ncontent-type: application/proto\r\n"
    b"transfer-encoding: chunked\r\n\r\n10\r\nshort",
    "bad-chunk-size": b"HTTP/1.1 200 OK\r\ncontent-type: application/proto\r\n"
    b"transfer-encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
    "chunk-overrun": b"HTTP/1.1 200 OK\r\ncontent-type: application/proto\r\n"
    b"transfer-encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
    "both-lengths": b"HTTP/1.1 200 OK\r\ncontent-type: application/proto\r\n"
    b"content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    "conflicting-lengths": b"HTTP/1.1 200 OK\r\ncontent-type: application/proto\r\n"
    b"content-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
    "gzip-transfer": b"HTTP/1.1 200 OK\r\ncontent-type: application/proto\r\n"
    b"transfer-encoding: gzip\r\n\r\n",
    "switching-protocols": b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n",
    "huge-head": b"HTTP/1.1 200 OK\r\n" + b"x-filler: " + b"y" * (101 * 1024) + b"\r\n\r\n",
    "nothing": b"",
}


@pytest.mark.parametrize("case", list(BAD))
async def test_malformed_or_cut_short_responses_are_unavailable(case: str) -> None:
    async with (
        raw_h1_server(answer_each(BAD[case])) as server,
        http1() as http,
        Client(server.url, http_client=http) as client,
    ):
        for _ in range(2):  # the broken connection is not reused
            with anyio.fail_after(10), pytest.raises(ConnectError) as caught:
                await client.echo(EchoRequest(text="x"))
            assert caught.value.code is Code.UNAVAILABLE, caught.value
        assert len(server.connections) == 2


async def test_a_refused_connection_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with http1() as http, Client(f"http://127.0.0.1:{port}", http_client=http) as client:
        with anyio.fail_after(10), pytest.raises(ConnectError) as caught:
            await client.echo(EchoRequest(text="x"))
        assert caught.value.code is Code.UNAVAILABLE


@pytest.mark.parametrize("protocol", [ProtocolType.CONNECT, ProtocolType.GRPC_WEB])
async def test_a_kept_alive_connection_the_server_drops_mid_request_is_not_retried(
    protocol: ProtocolType,
) -> None:
    """The server answers the first request, then closes on reading the second: the
    second call fails (it may have been processed), it is not sent again."""

    async def script(conn: RawH1Connection) -> None:
        await conn.read_request()
        if protocol is ProtocolType.CONNECT:
            await conn.send(response("first"))
        else:
            body = bytes([0]) + len(_ok_body("first")).to_bytes(4, "big") + _ok_body("first")
            trailer = b"grpc-status: 0\r\n"
            frame = bytes([0x80]) + len(trailer).to_bytes(4, "big") + trailer
            await conn.send(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc-web+proto\r\n"
                b"content-length: %d\r\n\r\n%s%s" % (len(body) + len(frame), body, frame)
            )
        await conn.read_request()

    async with (
        raw_h1_server(script) as server,
        http1() as http,
        Client(server.url, protocol=protocol, http_client=http) as client,
    ):
        with anyio.fail_after(10):
            assert (await client.echo(EchoRequest(text="one"))).text == "first"
            with pytest.raises(ConnectError) as caught:
                await client.echo(EchoRequest(text="two"))
        assert caught.value.code is Code.UNAVAILABLE
        assert len(server.requests) == 2
        assert len(server.connections) == 1


async def test_connection_close_is_honoured() -> None:
    data = response("good", extra=b"connection: close\r\n")
    async with (
        raw_h1_server(answer_each(data, data)) as server,
        http1() as http,
        Client(server.url, http_client=http) as client,
    ):
        with anyio.fail_after(10):
            for _ in range(3):
                assert (await client.echo(EchoRequest(text="x"))).text == "good"
        assert len(server.connections) == 3


@pytest.mark.parametrize(
    "headers",
    [{"x-test": "a\r\nx-injected: 1"}, {"x-test": "a\nb"}, {"bad name": "x"}, {"x-nul": "a\x00"}],
    ids=["crlf", "lf", "space-in-name", "nul"],
)
async def test_a_request_http1_cannot_carry_never_leaves(headers: dict[str, str]) -> None:
    async with (
        raw_h1_server(answer_each(response("good"))) as server,
        http1() as http,
        Client(server.url, http_client=http) as client,
    ):
        with anyio.fail_after(10), pytest.raises(ConnectError) as caught:
            await client.echo(EchoRequest(text="x"), headers=headers)
        assert caught.value.code is Code.UNAVAILABLE
        assert server.requests == []
        # The pool is intact: a good request goes through.
        assert (await client.echo(EchoRequest(text="x"))).text == "good"


@pytest.mark.parametrize("server", SERVERS)
async def test_large_unary_bodies_both_ways(server: str) -> None:
    """A request body above the one-write size and a response over several reads."""
    payload = os.urandom(300 * 1024)  # incompressible
    async with (
        custom_server(echo_app(), server=server) as srv,
        relay(srv.port) as wire,
        http1() as http,
        # Uncompressed both ways: the sizes on the wire are the sizes in the messages.
        Client(wire.url, http_client=http, send_compression=None, accept_compression=()) as client,
    ):
        with anyio.fail_after(20):
            for _ in range(2):
                request = EchoRequest(text="big", payload=payload, response_payload_size=500_000)
                response = await client.echo_post(request)
                assert (response.text, len(response.payload)) == ("big", 500_000)
        assert wire.accepted == 1
        assert wire.upstream_bytes > 2 * len(payload)
        assert wire.downstream_bytes > 2 * 500_000


@asynccontextmanager
async def gated_proxy(
    target: int, gate: anyio.Event
) -> AsyncIterator[tuple[int, Waitable, list[bool]]]:
    """A TCP proxy that holds each connection until ``gate`` is set; yields its port, a
    Waitable that changes on every accept and end, and per connection whether the
    client has gone."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    changes = Waitable()
    gone: list[bool] = []

    async def pump(source: SocketStream, sink: SocketStream) -> None:
        with suppress(
            anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError
        ):
            while True:
                await sink.send(await source.receive())

    async def handle(client: SocketStream) -> None:
        index = len(gone)
        gone.append(False)
        changes.changed()
        async with client:
            await gate.wait()
            server = await anyio.connect_tcp("127.0.0.1", target)
            async with server, anyio.create_task_group() as tg:
                tg.start_soon(pump, server, client)
                await pump(client, server)
                tg.cancel_scope.cancel()
        gone[index] = True
        changes.changed()

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield listener.extra(SocketAttribute.local_port), changes, gone
        finally:
            tg.cancel_scope.cancel()


@pytest.mark.parametrize("version", [HTTPVersion.HTTP1, HTTPVersion.HTTP2])
async def test_aclose_while_a_call_connects(version: HTTPVersion, tls_files: TLSFiles) -> None:
    """The TLS handshake is held up; the HTTP client is closed meanwhile: once the
    handshake completes, the call fails as unavailable and the connection is closed,
    not left in a pool nobody will close."""
    gate = anyio.Event()
    async with (
        custom_server(echo_app(), server="native", tls=tls_files) as srv,
        gated_proxy(srv.port, gate) as (port, changes, gone),
    ):
        http = HTTPClient(http_version=version, ssl_context=tls_files.client_context())
        client = Client(f"https://127.0.0.1:{port}", http_client=http)
        errors: list[ConnectError] = []

        async def call() -> None:
            try:
                await client.echo(EchoRequest(text="x"))
            except ConnectError as e:
                errors.append(e)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await changes.wait_for(lambda: len(gone) == 1)
                await http.aclose()
                gate.set()
            assert [e.code for e in errors] == [Code.UNAVAILABLE]
            await changes.wait_for(lambda: gone == [True])
