"""Routing and browsers: ``examples/starlette_cors`` on real servers.

Two generated applications mounted at their ``path`` in one Starlette app behind
``CORSMiddleware``, served by hypercorn and by the native server (as a plain ASGI app),
under asyncio and trio: real CORS preflights (allowed and refused), and Connect, gRPC-Web
and gRPC calls carrying an ``Origin`` through the middleware.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio.to_thread
import pytest
from _support.servers import SERVERS, RunningServer, run_server
from connectanyio.example.v1.haberdasher_connect import HaberdasherClient
from connectanyio.example.v1.haberdasher_pb2 import Size
from connectanyio.testing.v1 import testing_connect
from connectanyio.testing.v1.testing_pb2 import EchoRequest
from toolbox._helpers import RawResponse, raw_request

from connect_anyio import ConnectError, ProtocolType, ResponseMetadata

pytestmark = pytest.mark.anyio

ORIGIN = "https://app.example.com"
HABERDASHER = "/connectanyio.example.v1.Haberdasher"
ECHO = "/connectanyio.testing.v1.EchoService"


@pytest.fixture
def example(examples_importable: Path) -> ModuleType:
    import examples.starlette_cors.app as module

    return module


@asynccontextmanager
async def serving(example: ModuleType, server: str, transport: str) -> AsyncIterator[RunningServer]:
    """The example app on ``server``; checks that Starlette's lifespan started the Echo
    service's (an async generator) before serving and finished it after."""
    app = example.build_app()
    echo = next(route.app for route in app.routes if route.path == ECHO)
    with pytest.raises(ConnectError):
        _ = echo.router  # not started
    async with run_server(app, server=server, transport=transport) as srv:
        yield srv
        assert echo.router.routes  # started (the test made calls)
    with pytest.raises(ConnectError):
        _ = echo.router  # shut down


async def request(srv: RunningServer, path: str, **options: Any) -> RawResponse:
    """One raw HTTP/1.1 request (what a browser sends, not what our clients send)."""
    return await anyio.to_thread.run_sync(functools.partial(raw_request, srv.url, path, **options))


def _listed(value: str | None) -> set[str]:
    return {item.strip().lower() for item in (value or "").split(",") if item.strip()}


def test_every_generated_application_has_its_path() -> None:
    from connectanyio.bench.v1 import bench_connect
    from connectanyio.example.v1 import haberdasher_connect

    for module, name, expected in [
        (haberdasher_connect, "Haberdasher", HABERDASHER),
        (testing_connect, "EchoService", ECHO),
        (bench_connect, "BenchService", "/connectanyio.bench.v1.BenchService"),
    ]:
        for kind in ("ASGIApplication", "WSGIApplication"):
            cls = getattr(module, name + kind)
            assert cls.path.fget(None) == expected, (name, kind)  # a property, no state needed


@pytest.mark.parametrize("server", SERVERS)
async def test_preflight(example: ModuleType, server: str) -> None:
    async with serving(example, server, "h1") as srv:
        for path, headers in [
            (f"{HABERDASHER}/MakeHat", "content-type,connect-protocol-version,connect-timeout-ms"),
            (f"{ECHO}/ServerStream", "content-type,x-grpc-web,x-user-agent,grpc-timeout"),
        ]:
            answer = await request(
                srv,
                path,
                method="OPTIONS",
                headers={
                    "origin": ORIGIN,
                    "access-control-request-method": "POST",
                    "access-control-request-headers": headers,
                },
            )
            assert answer.status == 200, answer.body
            assert answer.header("access-control-allow-origin") == ORIGIN
            assert _listed(answer.header("access-control-allow-methods")) == {"get", "post"}
            allowed = _listed(answer.header("access-control-allow-headers"))
            assert {h.lower() for h in example.CONNECT_ALLOWED_HEADERS} <= allowed
            assert answer.header("access-control-max-age") == "7200"

        # Refused: another origin, a method Connect does not use, a header not allowed.
        for origin, method, headers in [
            ("https://evil.example", "POST", "content-type"),
            (ORIGIN, "PUT", "content-type"),
            (ORIGIN, "POST", "content-type,x-secret"),
        ]:
            answer = await request(
                srv,
                f"{HABERDASHER}/MakeHat",
                method="OPTIONS",
                headers={
                    "origin": origin,
                    "access-control-request-method": method,
                    "access-control-request-headers": headers,
                },
            )
            assert answer.status == 400, (origin, method, headers)
            if origin != ORIGIN:
                assert answer.header("access-control-allow-origin") is None


@pytest.mark.parametrize("protocol", list(ProtocolType))
@pytest.mark.parametrize("server", SERVERS)
async def test_calls_through_cors(example: ModuleType, server: str, protocol: ProtocolType) -> None:
    transport = "h2c" if protocol is ProtocolType.GRPC else "h1"
    origin = {"origin": ORIGIN}
    async with (
        serving(example, server, transport) as srv,
        srv.http_client() as http,
        HaberdasherClient(srv.url, protocol=protocol, http_client=http) as haberdasher,
        testing_connect.EchoServiceClient(srv.url, protocol=protocol, http_client=http) as echo,
    ):
        with ResponseMetadata() as meta:
            hat = await haberdasher.make_hat(Size(inches=7), headers=origin)
        assert hat.size == 7
        assert meta.headers()["x-hat-maker"] == "connect-anyio"
        assert meta.headers()["access-control-allow-origin"] == ORIGIN
        exposed = _listed(meta.headers().get("access-control-expose-headers"))
        assert {"grpc-status", "grpc-message", "grpc-status-details-bin"} <= exposed
        assert {"x-hat-maker", "x-echo-count", "trailer-x-echo-count"} <= exposed

        # The second service, mounted beside the first (its lifespan ran under Starlette's).
        with ResponseMetadata() as meta:
            assert (await echo.echo(EchoRequest(text="hi"), headers=origin)).text == "hi"
        assert meta.headers()["access-control-allow-origin"] == ORIGIN
        assert meta.headers()["x-echo-count"] == "1"
        assert meta.trailers()["x-echo-count"] == "1"
        async with echo.server_stream(
            EchoRequest(text="s", response_count=3), headers=origin
        ) as stream:
            assert [r.index async for r in stream] == [0, 1, 2]

        # No Origin, no CORS headers.
        with ResponseMetadata() as meta:
            await haberdasher.make_hat(Size(inches=3))
        assert "access-control-allow-origin" not in meta.headers()


@pytest.mark.parametrize("server", SERVERS)
async def test_a_browser_style_connect_get(example: ModuleType, server: str) -> None:
    """What a browser's fetch() sends for a cacheable Connect GET, from an allowed origin."""
    async with serving(example, server, "h1") as srv:
        answer = await request(
            srv,
            f"{ECHO}/Echo?encoding=json&message=%7B%22text%22%3A%22q%22%7D",
            method="GET",
            headers={"origin": ORIGIN},
        )
        assert answer.status == 200
        assert answer.body == b'{"text":"q"}'
        assert answer.header("access-control-allow-origin") == ORIGIN
        # Starlette answers paths no service owns.
        assert (await request(srv, "/nowhere", method="GET")).status == 404
