"""Plain ASGI apps on the native server: a hand-written one (scope, streaming bodies both
ways, trailers, disconnects, errors, lifespan) and Starlette with a generated Connect
application mounted beside a plain route; and the fast path: a Connect application passed
to ``serve()`` itself is served without the ASGI layer.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpcore
import pytest
from _support.service import EchoRequest
from connectanyio.testing.v1 import testing_connect
from native._helpers import WAIT, GatedEcho, gated_app, native, raw_h1, raw_h2, request_head
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from connect_anyio import HTTPClient, HTTPVersion, ProtocolType, serve
from connect_anyio import _server_asgi as server_asgi

pytestmark = pytest.mark.anyio

TRANSPORTS = ["h1", "h2c"]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class HandWritten:
    """A small ASGI app, with lifespan, that records what happened."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.disconnected = anyio.Event()
        self.waiting = anyio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.events.append("startup")
                    await send({"type": "lifespan.startup.complete"})
                else:
                    self.events.append("shutdown")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert scope["type"] == "http"
        assert self.events == ["startup"]  # requests only after the startup
        path = scope["path"]
        if path == "/scope":
            body = json.dumps(
                {
                    "method": scope["method"],
                    "path": scope["path"],
                    "raw_path": scope["raw_path"].decode(),
                    "query": scope["query_string"].decode(),
                    "http_version": scope["http_version"],
                    "scheme": scope["scheme"],
                    "client": list(scope["client"]),
                    "server": list(scope["server"]),
                    "x-test": dict(scope["headers"]).get(b"x-test", b"").decode(),
                }
            ).encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
        elif path == "/echo":
            # Streams the request body back, a chunk per chunk, upper-cased.
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/plain")],
                }
            )
            while True:
                message = await receive()
                assert message["type"] == "http.request"
                await send(
                    {
                        "type": "http.response.body",
                        "body": message.get("body", b"").upper(),
                        "more_body": True,
                    }
                )
                if not message.get("more_body"):
                    break
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        elif path == "/trailers":
            await send(
                {"type": "http.response.start", "status": 200, "headers": [], "trailers": True}
            )
            await send({"type": "http.response.body", "body": b"with trailers"})
            await send({"type": "http.response.trailers", "headers": [(b"x-trailer", b"yes")]})
        elif path == "/wait-for-disconnect":
            self.waiting.set()
            while (await receive())["type"] != "http.disconnect":
                pass
            self.disconnected.set()
        elif path == "/boom":
            raise RuntimeError("boom")
        elif path == "/boom-late":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"half", "more_body": True})
            raise RuntimeError("boom, mid-response")
        else:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"not here"})


@asynccontextmanager
async def pool(transport: str) -> AsyncIterator[httpcore.AsyncConnectionPool]:
    async with httpcore.AsyncConnectionPool(http1=transport == "h1", http2=transport == "h2c") as p:
        yield p


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_hand_written_asgi_app(transport: str) -> None:
    app = HandWritten()
    async with native(app) as srv, pool(transport) as http:
        base = f"http://127.0.0.1:{srv.port}"
        assert app.events == ["startup"]

        response = await http.request(
            "GET", base + "/scope?a=1&b=%20", headers=[(b"x-test", b"seen")]
        )
        assert response.status == 200
        scope = json.loads(response.content)
        assert scope == {
            "method": "GET",
            "path": "/scope",
            "raw_path": "/scope",
            "query": "a=1&b=%20",
            "http_version": "1.1" if transport == "h1" else "2",
            "scheme": "http",
            "client": ["127.0.0.1", scope["client"][1]],
            "server": ["127.0.0.1", srv.port],
            "x-test": "seen",
        }

        async def body() -> AsyncIterator[bytes]:
            for piece in (b"one ", b"two ", b"three"):
                yield piece

        response = await http.request("POST", base + "/echo", content=body())
        assert response.status == 200
        assert response.content == b"ONE TWO THREE"

        response = await http.request("GET", base + "/boom")
        assert response.status == 500
        # Failing mid-response: the response is cut off, not left hanging or passed as whole.
        with pytest.raises(httpcore.RemoteProtocolError):
            await http.request("GET", base + "/boom-late")
        response = await http.request("GET", base + "/elsewhere")
        assert response.status == 404
        assert response.content == b"not here"
    assert app.events == ["startup", "shutdown"]


async def test_asgi_trailers_over_http2() -> None:
    async with native(HandWritten()) as srv, raw_h2(srv.port) as client:
        stream_id = client.request("/trailers", None)
        await client.flush()
        await client.wait_ended(stream_id)
        assert client.status(stream_id) == 200
        assert client.body(stream_id) == b"with trailers"
        assert client.trailers(stream_id) == {b"x-trailer": b"yes"}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_asgi_app_sees_the_client_leave(transport: str) -> None:
    app = HandWritten()
    async with native(app) as srv:
        if transport == "h1":
            async with raw_h1(srv.port) as conn:
                await conn.send(request_head("GET", "/wait-for-disconnect"))
                with anyio.fail_after(WAIT):
                    await app.waiting.wait()
            # The connection is closed.
            with anyio.fail_after(WAIT):
                await app.disconnected.wait()
        else:
            async with raw_h2(srv.port) as client:
                stream_id = client.request("/wait-for-disconnect", None)
                await client.flush()
                with anyio.fail_after(WAIT):
                    await app.waiting.wait()
                client.h2.reset_stream(stream_id)
                await client.flush()
                # The stream is reset; the connection stays.
                with anyio.fail_after(WAIT):
                    await app.disconnected.wait()


async def test_asgi_lifespan_startup_failure_stops_serve() -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    with pytest.raises(RuntimeError, match="no database"), anyio.fail_after(WAIT):
        await serve(failing, port=0)


async def test_apps_that_cannot_be_served_are_refused() -> None:
    with pytest.raises(ValueError):
        await serve(port=0)
    with pytest.raises(TypeError):
        await serve(object(), port=0)
    # Which of two plain ASGI apps would get a path? Refused rather than guessed.
    with pytest.raises(ValueError):
        await serve(HandWritten(), HandWritten(), port=0)


# ---------------------------------------------------------------------------
# Starlette


def starlette_app(
    connect_app: testing_connect.EchoServiceASGIApplication, events: list[str]
) -> Starlette:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"hello {request.query_params.get('name', '')}")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("starlette startup")
        yield
        events.append("starlette shutdown")

    return Starlette(
        routes=[Route("/hello", hello), Mount(connect_app.path, app=connect_app)],
        lifespan=lifespan,
    )


class ASGICalls:
    """Counts the Connect calls that went through the ASGI layer."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = server_asgi.serve_http

        async def counting(*args: Any) -> None:
            self.count += 1
            await original(*args)

        monkeypatch.setattr(server_asgi, "serve_http", counting)


async def _connect_calls(port: int, transport: str) -> None:
    version = HTTPVersion.HTTP1 if transport == "h1" else HTTPVersion.HTTP2
    protocols = [ProtocolType.CONNECT, ProtocolType.GRPC_WEB]
    if transport == "h2c":
        protocols.append(ProtocolType.GRPC)
    async with HTTPClient(http_version=version) as http:
        for protocol in protocols:
            async with testing_connect.EchoServiceClient(
                f"http://127.0.0.1:{port}", protocol=protocol, http_client=http
            ) as client:
                assert (await client.echo(EchoRequest(text="rpc"))).text == "rpc"
                stream = client.server_stream(EchoRequest(text="s", response_count=3))
                assert [r.index async for r in stream] == [0, 1, 2]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_starlette_with_a_mounted_connect_app_beside_a_route(
    transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asgi_calls = ASGICalls(monkeypatch)
    events: list[str] = []
    app = starlette_app(gated_app(GatedEcho()), events)
    async with native(app) as srv, pool(transport) as http:
        assert events == ["starlette startup"]
        response = await http.request("GET", f"http://127.0.0.1:{srv.port}/hello?name=you")
        assert response.status == 200
        assert response.content == b"hello you"
        await _connect_calls(srv.port, transport)
        # Mounted inside Starlette, the Connect app is reached through ASGI.
        assert asgi_calls.count > 0
    assert events == ["starlette startup", "starlette shutdown"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_connect_app_passed_to_serve_takes_the_fast_path(
    transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asgi_calls = ASGICalls(monkeypatch)
    events: list[str] = []
    connect_app = gated_app(GatedEcho())
    app = starlette_app(connect_app, events)
    # The same Connect app given to serve() too: its routes are served directly, the
    # Starlette app gets every other path.
    async with native(connect_app, app) as srv, pool(transport) as http:
        await _connect_calls(srv.port, transport)
        assert asgi_calls.count == 0
        response = await http.request("GET", f"http://127.0.0.1:{srv.port}/hello?name=again")
        assert response.content == b"hello again"
    assert events == ["starlette startup", "starlette shutdown"]


_SEEN: contextvars.ContextVar[str] = contextvars.ContextVar("_SEEN", default="fresh")


async def context_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the context variable as it found it, then sets it (and never resets)."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    seen = _SEEN.get()
    _SEEN.set("left behind by " + scope["path"])
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": seen.encode()})


async def test_each_request_runs_in_a_context_of_its_own() -> None:
    """Requests on one connection run in the connection's task while they do not wait; a
    context variable one of them sets must not reach the next, as with a task per request."""
    async with native(context_app) as srv:
        async with raw_h1(srv.port) as conn:
            # Three pipelined in one write, then one more.
            await conn.send(b"".join(request_head("GET", f"/h1-{i}") for i in range(3)))
            for _ in range(3):
                conn.expect("GET")
                assert (await conn.response()).body == b"fresh"
            await conn.send(request_head("GET", "/h1-again"))
            conn.expect("GET")
            assert (await conn.response()).body == b"fresh"
        async with raw_h2(srv.port) as client:
            ids = [client.request(f"/h2-{i}", b"") for i in range(3)]
            await client.flush()
            for stream_id in ids:
                await client.wait_ended(stream_id)
                assert client.body(stream_id) == b"fresh"
            again = client.request("/h2-again", b"")
            await client.flush()
            await client.wait_ended(again)
            assert client.body(again) == b"fresh"
    assert _SEEN.get() == "fresh"


@pytest.mark.parametrize("how", ["returns", "raises"])
async def test_asgi_app_without_lifespan_is_served(how: str) -> None:
    """An app that does not do lifespan returns (or raises) at once, maybe before the
    server has even asked it to start up: served all the same."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            if how == "raises":
                raise RuntimeError("no lifespan here")
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"served"})

    async with native(app) as srv, raw_h1(srv.port) as conn:
        await conn.send(request_head("GET", "/"))
        conn.expect("GET")
        assert (await conn.response()).body == b"served"
