"""Server interceptors on the ASGI application (native server, h2c), under asyncio and trio.

The seed API's four per-kind protocols and ``MetadataInterceptor``: order, ``on_end`` on
errors and cancellation, headers, replaced and short-circuited calls, streams wrapped
message by message, one object of several kinds, and a chain composed once per endpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from _support.servers import run_server
from _support.service import EchoRequest, EchoResponse, EchoServiceImpl, Observations
from connectanyio.testing.v1 import testing_connect
from toolbox._interceptors import Around, Ctx, Events, LookupCounter, Meta, RecordingService

from connect_anyio import (
    Code,
    ConnectError,
    HTTPClient,
    HTTPVersion,
    ProtocolType,
    ResponseMetadata,
)
from connect_anyio.interceptor import (
    BidiStreamInterceptor,
    ClientStreamInterceptor,
    MetadataInterceptor,
    ServerStreamInterceptor,
    UnaryInterceptor,
)

pytestmark = pytest.mark.anyio

KINDS = ["unary", "client_stream", "server_stream", "bidi"]
WAIT = 10


@asynccontextmanager
async def serving(
    interceptors: list[Any],
    events: Events | None = None,
    *,
    protocol: ProtocolType = ProtocolType.CONNECT,
    observations: Observations | None = None,
    timeout_ms: int | None = None,
) -> AsyncIterator[testing_connect.EchoServiceClient]:
    service = RecordingService(events if events is not None else [], observations)
    app = testing_connect.EchoServiceASGIApplication(service, interceptors=interceptors)
    async with (
        run_server(app, server="native", transport="h2c") as srv,
        HTTPClient(http_version=HTTPVersion.HTTP2) as http,
        testing_connect.EchoServiceClient(
            srv.url, protocol=protocol, http_client=http, timeout_ms=timeout_ms
        ) as client,
    ):
        yield client


async def _requests(*texts: str) -> AsyncIterator[EchoRequest]:
    for text in texts:
        yield EchoRequest(text=text)


async def call(
    client: testing_connect.EchoServiceClient, kind: str, **fields: Any
) -> list[EchoResponse]:
    """One call of ``kind``; its responses."""
    if kind == "unary":
        return [await client.echo(EchoRequest(**fields))]
    if kind == "client_stream":

        async def requests() -> AsyncIterator[EchoRequest]:
            yield EchoRequest(text="one")
            yield EchoRequest(**fields)

        return [await client.client_stream(requests())]
    if kind == "server_stream":
        async with client.server_stream(EchoRequest(response_count=2, **fields)) as stream:
            return [r async for r in stream]

    async def bidi_requests() -> AsyncIterator[EchoRequest]:
        yield EchoRequest(**fields)

    async with client.bidi(bidi_requests()) as stream:
        return [r async for r in stream]


@pytest.mark.parametrize("protocol", list(ProtocolType))
@pytest.mark.parametrize("kind", KINDS)
async def test_metadata_interceptors_in_order(kind: str, protocol: ProtocolType) -> None:
    events: Events = []
    chain = [Meta("A", events), Meta("B", events), Meta("C", events)]
    async with serving(chain, events, protocol=protocol) as client:
        await call(client, kind)
    assert events == [
        "A.on_start",
        "B.on_start",
        "C.on_start",
        "handler",
        "C.on_end:token-C",
        "B.on_end:token-B",
        "A.on_end:token-A",
    ]


@pytest.mark.parametrize("kind", KINDS)
async def test_kinds_mixed_in_order_one_object_for_every_kind(kind: str) -> None:
    events: Events = []
    around = Around("B", events)
    # One object implements all four per-kind protocols.
    for protocol in (
        UnaryInterceptor,
        ClientStreamInterceptor,
        ServerStreamInterceptor,
        BidiStreamInterceptor,
    ):
        assert isinstance(around, protocol)
    assert isinstance(Meta("A", events), MetadataInterceptor)
    async with serving([Meta("A", events), around, Meta("C", events)], events) as client:
        await call(client, kind)
    assert events == [
        "A.on_start",
        "B>",
        "C.on_start",
        "handler",
        "C.on_end:token-C",
        "<B",
        "A.on_end:token-A",
    ]


@pytest.mark.parametrize("kind", KINDS)
async def test_on_end_runs_on_errors(kind: str) -> None:
    events: Events = []
    chain = [Meta("A", events), Around("B", events), Meta("C", events)]
    async with serving(chain, events) as client:
        with pytest.raises(ConnectError) as caught:
            await call(client, kind, fail={"code": "aborted", "message": "handler failed"})
    assert (caught.value.code, caught.value.message) == (Code.ABORTED, "handler failed")
    assert events == [
        "A.on_start",
        "B>",
        "C.on_start",
        "handler",
        "C.on_end:token-C",
        "<B",
        "A.on_end:token-A",
    ]


@pytest.mark.parametrize("kind", KINDS)
async def test_on_end_runs_on_cancellation(kind: str) -> None:
    """The client's deadline cancels the handler; every ``on_end`` still runs (and awaits)."""
    events: Events = []
    observations = Observations()
    ended = anyio.Event()
    chain = [Meta("A", events, ended), Around("B", events), Meta("C", events)]
    async with serving(chain, events, observations=observations, timeout_ms=200) as client:
        with pytest.raises(ConnectError) as caught:
            await call(client, kind, wait_for_cancel=True, tag=kind)
        assert caught.value.code is Code.DEADLINE_EXCEEDED
        await observations.wait_cancelled(kind)
        with anyio.fail_after(WAIT):
            await ended.wait()
    assert events[-3:] == ["C.on_end:token-C", "<B", "A.on_end:token-A"]


async def test_on_end_runs_when_the_client_goes_away() -> None:
    events: Events = []
    observations = Observations()
    ended = anyio.Event()
    async with serving([Meta("A", events, ended)], events, observations=observations) as client:
        async with client.server_stream(
            EchoRequest(response_count=1, wait_for_cancel=True, tag="gone")
        ) as stream:
            assert (await stream.__anext__()).index == 0
        await observations.wait_cancelled("gone")
        with anyio.fail_after(WAIT):
            await ended.wait()
    assert events == ["A.on_start", "handler", "A.on_end:token-A"]


class HeaderInterceptor:
    """Reads a request header, adds one for the handler, sets response headers and trailers."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    async def on_start(self, ctx: Ctx) -> None:
        self.seen.append(ctx.request_headers().get("x-test-in"))
        ctx.request_headers()["x-test-added"] = "by-interceptor"
        ctx.response_headers()["x-intercepted"] = "yes"

    async def on_end(self, token: None, ctx: Ctx) -> None:
        ctx.response_trailers()["x-intercepted-trailer"] = "done"


@pytest.mark.parametrize("kind", KINDS)
async def test_read_and_change_headers(kind: str) -> None:
    interceptor = HeaderInterceptor()
    async with serving([interceptor]) as client:
        with ResponseMetadata() as meta:
            if kind == "unary":
                response = await client.echo(EchoRequest(), headers={"x-test-in": "hello"})
            else:
                async with client.bidi(_requests("a"), headers={"x-test-in": "hello"}) as s:
                    response = await s.__anext__()
                    assert [r async for r in s] == []
    assert interceptor.seen == ["hello"]
    assert response.headers["x-test-added"] == "by-interceptor"
    assert meta.headers()["x-intercepted"] == "yes"
    assert meta.trailers()["x-intercepted-trailer"] == "done"


class Rewriter:
    """Replaces requests and responses, and wraps streams message by message."""

    async def intercept_unary(
        self, call_next: Callable[[Any, Ctx], Awaitable[Any]], request: Any, ctx: Ctx
    ) -> Any:
        response = await call_next(EchoRequest(text=request.text.upper()), ctx)
        return EchoResponse(text=response.text + "!")

    async def intercept_client_stream(
        self,
        call_next: Callable[[AsyncIterator[Any], Ctx], Awaitable[Any]],
        request: AsyncIterator[Any],
        ctx: Ctx,
    ) -> Any:
        async def upper() -> AsyncIterator[EchoRequest]:
            async for message in request:
                yield EchoRequest(text=message.text.upper())

        return await call_next(upper(), ctx)

    async def intercept_server_stream(
        self, call_next: Callable[[Any, Ctx], AsyncIterator[Any]], request: Any, ctx: Ctx
    ) -> AsyncIterator[Any]:
        async for message in call_next(request, ctx):
            yield EchoResponse(text=f"{message.text}#{message.index}")

    async def intercept_bidi_stream(
        self,
        call_next: Callable[[AsyncIterator[Any], Ctx], AsyncIterator[Any]],
        request: AsyncIterator[Any],
        ctx: Ctx,
    ) -> AsyncIterator[Any]:
        async def numbered() -> AsyncIterator[EchoRequest]:
            n = 0
            async for message in request:
                n += 1
                yield EchoRequest(text=f"{n}:{message.text}")

        async for message in call_next(numbered(), ctx):
            yield EchoResponse(text=message.text.upper())


async def test_replace_requests_responses_and_wrap_streams() -> None:
    async with serving([Rewriter()]) as client:
        assert (await client.echo(EchoRequest(text="hat"))).text == "HAT!"
        summary = await client.client_stream(_requests("a", "b"))
        assert list(summary.request_texts) == ["A", "B"]
        async with client.server_stream(EchoRequest(text="s", response_count=3)) as stream:
            assert [r.text async for r in stream] == ["s#0", "s#1", "s#2"]
        async with client.bidi(_requests("x", "y")) as stream:
            assert [r.text async for r in stream] == ["1:X", "2:Y"]


class ShortCircuit:
    """Answers without the handler: a response, or an error when asked."""

    async def intercept_unary(
        self, call_next: Callable[[Any, Ctx], Awaitable[Any]], request: Any, ctx: Ctx
    ) -> Any:
        if request.text == "deny":
            raise ConnectError(Code.PERMISSION_DENIED, "denied by interceptor")
        return EchoResponse(text="cached")

    async def intercept_client_stream(
        self,
        call_next: Callable[[AsyncIterator[Any], Ctx], Awaitable[Any]],
        request: AsyncIterator[Any],
        ctx: Ctx,
    ) -> Any:
        raise ConnectError(Code.PERMISSION_DENIED, "denied by interceptor")

    async def intercept_server_stream(
        self, call_next: Callable[[Any, Ctx], AsyncIterator[Any]], request: Any, ctx: Ctx
    ) -> AsyncIterator[Any]:
        yield EchoResponse(text="canned 1")
        yield EchoResponse(text="canned 2")

    async def intercept_bidi_stream(
        self,
        call_next: Callable[[AsyncIterator[Any], Ctx], AsyncIterator[Any]],
        request: AsyncIterator[Any],
        ctx: Ctx,
    ) -> AsyncIterator[Any]:
        raise ConnectError(Code.PERMISSION_DENIED, "denied by interceptor")
        yield  # an async generator that fails before its first message


async def test_short_circuit_with_a_response_or_an_error() -> None:
    events: Events = []
    async with serving([Meta("A", events), ShortCircuit()], events) as client:
        assert (await client.echo(EchoRequest(text="hi"))).text == "cached"
        async with client.server_stream(EchoRequest(response_count=5)) as stream:
            assert [r.text async for r in stream] == ["canned 1", "canned 2"]
        with pytest.raises(ConnectError) as unary:
            await client.echo(EchoRequest(text="deny"))
        with pytest.raises(ConnectError) as client_stream:
            await client.client_stream(_requests("a"))
        with pytest.raises(ConnectError) as bidi:
            async with client.bidi(_requests("a")) as stream:
                await stream.__anext__()
    for caught in (unary, client_stream, bidi):
        assert (caught.value.code, caught.value.message) == (
            Code.PERMISSION_DENIED,
            "denied by interceptor",
        )
    assert "handler" not in events
    assert events.count("A.on_start") == events.count("A.on_end:token-A") == 5


async def test_composed_once_per_endpoint() -> None:
    counter = LookupCounter()
    app = testing_connect.EchoServiceASGIApplication(EchoServiceImpl(), interceptors=[counter])
    endpoints = len(testing_connect._echo_service_endpoints(EchoServiceImpl()))
    # Composing looks up each endpoint's interceptor method once...
    assert sum(counter.lookups.values()) == endpoints
    composed = dict(counter.lookups)
    async with (
        run_server(app, server="native", transport="h2c") as srv,
        HTTPClient(http_version=HTTPVersion.HTTP2) as http,
        testing_connect.EchoServiceClient(srv.url, http_client=http) as client,
    ):
        for _ in range(3):
            for kind in KINDS:
                await call(client, kind)
    # ...and calls never compose again.
    assert dict(counter.lookups) == composed


async def test_lifespan_service_composed_once_at_startup() -> None:
    counter = LookupCounter()

    async def service() -> AsyncIterator[EchoServiceImpl]:
        yield EchoServiceImpl()

    app = testing_connect.EchoServiceASGIApplication(service(), interceptors=[counter])
    assert sum(counter.lookups.values()) == 0
    async with (
        run_server(app, server="native", transport="h2c") as srv,
        testing_connect.EchoServiceClient(srv.url) as client,
    ):
        composed = sum(counter.lookups.values())
        assert composed == 6
        for _ in range(3):
            await client.echo(EchoRequest())
        assert sum(counter.lookups.values()) == composed
