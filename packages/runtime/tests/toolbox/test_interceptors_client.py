"""Client interceptors on ``ConnectClient`` (the generated ``EchoServiceClient``).

Our real client against real servers (hypercorn and native, h2c), under asyncio and trio,
over Connect, gRPC and gRPC-Web: the order for ``[A, B, C]``, ``on_end`` on errors, deadlines
and cancellation, headers read and changed, requests and responses replaced, calls
short-circuited with a response or an error, streams wrapped message by message, and a chain
composed once per client. The server's handler notes ``handler`` in the same list of events
as the client's interceptors (same process, same event loop), so the order is end to end.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from _support.servers import SERVERS, run_server
from _support.service import EchoRequest, EchoResponse, Observations
from connectanyio.testing.v1 import testing_connect
from toolbox._interceptors import Around, Ctx, Events, LookupCounter, Meta, RecordingService

from connect_anyio import (
    Code,
    ConnectClient,
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
Client = testing_connect.EchoServiceClient


@asynccontextmanager
async def serving(
    interceptors: list[Any],
    events: Events | None = None,
    *,
    server: str = "native",
    protocol: ProtocolType = ProtocolType.CONNECT,
    observations: Observations | None = None,
    timeout_ms: int | None = None,
) -> AsyncIterator[Client]:
    """A real server (h2c) for the recording EchoService, and a client with ``interceptors``."""
    app = testing_connect.EchoServiceASGIApplication(
        RecordingService(events if events is not None else [], observations)
    )
    async with (
        run_server(app, server=server, transport="h2c") as srv,
        HTTPClient(http_version=HTTPVersion.HTTP2) as http,
        Client(
            srv.url,
            protocol=protocol,
            http_client=http,
            timeout_ms=timeout_ms,
            interceptors=interceptors,
        ) as client,
    ):
        yield client


async def _requests(*texts: str) -> AsyncIterator[EchoRequest]:
    for text in texts:
        yield EchoRequest(text=text)


async def call(client: Client, kind: str, **fields: Any) -> list[EchoResponse]:
    """One call of ``kind`` whose last (or only) request carries ``fields``; its responses."""
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


class UnaryOnly:
    """Only a ``UnaryInterceptor``: streaming calls must pass it by."""

    def __init__(self, events: Events) -> None:
        self.events = events

    async def intercept_unary(
        self, call_next: Callable[[Any, Ctx], Awaitable[Any]], request: Any, ctx: Ctx
    ) -> Any:
        self.events.append("U>")
        try:
            return await call_next(request, ctx)
        finally:
            self.events.append("<U")


def _order(kind: str) -> list[str]:
    unary = kind == "unary"
    return [
        "A.on_start",
        *(["U>"] if unary else []),
        "B>",
        "C.on_start",
        "handler",
        "C.on_end:token-C",
        "<B",
        *(["<U"] if unary else []),
        "A.on_end:token-A",
    ]


@pytest.mark.parametrize("protocol", list(ProtocolType))
@pytest.mark.parametrize("server", SERVERS)
async def test_every_kind_in_order(server: str, protocol: ProtocolType) -> None:
    events: Events = []
    around = Around("B", events)
    for kind_protocol in (
        UnaryInterceptor,
        ClientStreamInterceptor,
        ServerStreamInterceptor,
        BidiStreamInterceptor,
    ):
        assert isinstance(around, kind_protocol)
    assert isinstance(Meta("A", events), MetadataInterceptor)
    assert not isinstance(UnaryOnly(events), ServerStreamInterceptor)
    chain = [Meta("A", events), UnaryOnly(events), around, Meta("C", events)]
    async with serving(chain, events, server=server, protocol=protocol) as client:
        for kind in KINDS:
            events.clear()
            responses = await call(client, kind, text=kind)
            assert [r.text for r in responses][-1:] == [kind]
            assert events == _order(kind), kind


@pytest.mark.parametrize("kind", KINDS)
async def test_metadata_interceptors_alone_in_order(kind: str) -> None:
    events: Events = []
    chain = [Meta("A", events), Meta("B", events), Meta("C", events)]
    async with serving(chain, events) as client:
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


@pytest.mark.parametrize("protocol", list(ProtocolType))
@pytest.mark.parametrize("kind", KINDS)
async def test_on_end_runs_on_errors(kind: str, protocol: ProtocolType) -> None:
    events: Events = []
    chain = [Meta("A", events), Around("B", events), Meta("C", events)]
    async with serving(chain, events, protocol=protocol) as client:
        with pytest.raises(ConnectError) as caught:
            await call(client, kind, fail={"code": "aborted", "message": "handler failed"})
    assert (caught.value.code, caught.value.message) == (Code.ABORTED, "handler failed")
    assert events == _order("stream")


@pytest.mark.parametrize("kind", KINDS)
async def test_on_end_runs_when_the_deadline_expires(kind: str) -> None:
    events: Events = []
    observations = Observations()
    chain = [Meta("A", events), Around("B", events), Meta("C", events)]
    async with serving(chain, events, observations=observations, timeout_ms=300) as client:
        with pytest.raises(ConnectError) as caught:
            await call(client, kind, wait_for_cancel=True, tag=kind)
        assert caught.value.code is Code.DEADLINE_EXCEEDED
        await observations.wait_cancelled(kind)
    assert events == _order("stream")


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("kind", KINDS)
async def test_on_end_runs_when_the_caller_is_cancelled(kind: str, server: str) -> None:
    """Cancelling the calling task mid-call: every ``on_end`` still runs, and it can await
    (``Meta.on_end`` does, so an unshielded one would be cancelled before recording)."""
    events: Events = []
    observations = Observations()
    ended = anyio.Event()
    chain = [Meta("A", events, ended), Around("B", events), Meta("C", events)]
    async with serving(chain, events, server=server, observations=observations) as client:
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(functools.partial(call, client, kind, wait_for_cancel=True, tag=kind))
                await observations.started[kind].wait()
                tg.cancel_scope.cancel()
            await ended.wait()
        # The server saw the client leave.
        await observations.wait_cancelled(kind)
    assert events == _order("stream")


class HeaderInterceptor:
    """Reads and changes request headers; reads the response headers and trailers."""

    def __init__(self) -> None:
        self.seen_request: list[str | None] = []
        self.seen_response: list[tuple[str | None, str | None]] = []

    async def on_start(self, ctx: Ctx) -> None:
        headers = ctx.request_headers()
        self.seen_request.append(headers.get("x-test-in"))
        headers["x-test-in"] = "changed"
        headers["x-test-added"] = "by-interceptor"

    async def on_end(self, token: None, ctx: Ctx) -> None:
        self.seen_response.append(
            (
                ctx.response_headers().get("x-test-added"),
                ctx.response_trailers().get("x-test-added-trailer"),
            )
        )


@pytest.mark.parametrize("protocol", list(ProtocolType))
@pytest.mark.parametrize("kind", KINDS)
async def test_read_and_change_headers(kind: str, protocol: ProtocolType) -> None:
    interceptor = HeaderInterceptor()
    headers = {"x-test-in": "hello"}
    async with serving([interceptor], protocol=protocol) as client:
        with ResponseMetadata() as meta:
            if kind == "unary":
                responses = [await client.echo(EchoRequest(), headers=headers)]
            elif kind == "client_stream":
                responses = [await client.client_stream(_requests("a"), headers=headers)]
            elif kind == "server_stream":
                async with client.server_stream(
                    EchoRequest(response_count=2), headers=headers
                ) as stream:
                    responses = [r async for r in stream]
            else:
                async with client.bidi(_requests("a", "b"), headers=headers) as stream:
                    responses = [r async for r in stream]
    assert interceptor.seen_request == ["hello"]
    # What the handler received (it echoes x-test-* request headers into each response).
    for response in responses:
        assert dict(response.headers) == {"x-test-in": "changed", "x-test-added": "by-interceptor"}
    assert interceptor.seen_response == [("by-interceptor", "by-interceptor")]
    # The caller's ResponseMetadata sees the same.
    assert meta.headers()["x-test-in"] == "changed"
    assert meta.trailers()["x-test-added-trailer"] == "by-interceptor"


class Rewriter:
    """Replaces requests and responses, and wraps streams message by message."""

    def __init__(self, events: Events) -> None:
        self.events = events

    async def intercept_unary(
        self, call_next: Callable[[Any, Ctx], Awaitable[Any]], request: Any, ctx: Ctx
    ) -> Any:
        response = await call_next(EchoRequest(text=request.text.upper()), ctx)
        return EchoResponse(text=response.text + "!")

    async def intercept_client_stream(
        self,
        call_next: Callable[[AsyncIterable[Any], Ctx], Awaitable[Any]],
        request: AsyncIterable[Any],
        ctx: Ctx,
    ) -> Any:
        async def upper() -> AsyncIterator[EchoRequest]:
            async for message in request:
                self.events.append(f"sent:{message.text}")
                yield EchoRequest(text=message.text.upper())

        response = await call_next(upper(), ctx)
        return EchoResponse(text="|".join(response.request_texts))

    async def intercept_server_stream(
        self, call_next: Callable[[Any, Ctx], AsyncIterator[Any]], request: Any, ctx: Ctx
    ) -> AsyncIterator[Any]:
        request = EchoRequest(text=request.text, response_count=request.response_count + 1)
        async for message in call_next(request, ctx):
            self.events.append(f"got:{message.index}")
            yield EchoResponse(text=f"{message.text}#{message.index}")

    async def intercept_bidi_stream(
        self,
        call_next: Callable[[AsyncIterable[Any], Ctx], AsyncIterator[Any]],
        request: AsyncIterable[Any],
        ctx: Ctx,
    ) -> AsyncIterator[Any]:
        async def numbered() -> AsyncIterator[EchoRequest]:
            n = 0
            async for message in request:
                n += 1
                yield EchoRequest(text=f"{n}:{message.text}")

        async for message in call_next(numbered(), ctx):
            self.events.append(f"got:{message.text}")
            yield EchoResponse(text=message.text.upper())


@pytest.mark.parametrize("protocol", list(ProtocolType))
async def test_replace_requests_responses_and_wrap_streams(protocol: ProtocolType) -> None:
    events: Events = []
    async with serving([Rewriter(events)], protocol=protocol) as client:
        assert (await client.echo(EchoRequest(text="hat"))).text == "HAT!"

        summary = await client.client_stream(_requests("a", "b"))
        assert summary.text == "A|B"
        assert events == ["sent:a", "sent:b"]

        # Each message passes through the interceptor as the caller receives it.
        events.clear()
        async with client.server_stream(EchoRequest(text="s", response_count=2)) as stream:
            async for response in stream:
                events.append(f"caller:{response.text}")
        assert events == ["got:0", "caller:s#0", "got:1", "caller:s#1", "got:2", "caller:s#2"]

        events.clear()
        async with client.bidi(_requests("x", "y")) as stream:
            async for response in stream:
                events.append(f"caller:{response.text}")
        assert events == ["got:1:x", "caller:1:X", "got:2:y", "caller:2:Y"]


class ShortCircuit:
    """Answers without calling the server: a response, or an error when asked."""

    async def intercept_unary(
        self, call_next: Callable[[Any, Ctx], Awaitable[Any]], request: Any, ctx: Ctx
    ) -> Any:
        if request.text == "deny":
            raise ConnectError(Code.PERMISSION_DENIED, "denied by interceptor")
        return EchoResponse(text="cached")

    async def intercept_client_stream(
        self,
        call_next: Callable[[AsyncIterable[Any], Ctx], Awaitable[Any]],
        request: AsyncIterable[Any],
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
        call_next: Callable[[AsyncIterable[Any], Ctx], AsyncIterator[Any]],
        request: AsyncIterable[Any],
        ctx: Ctx,
    ) -> AsyncIterator[Any]:
        raise ConnectError(Code.PERMISSION_DENIED, "denied by interceptor")
        yield  # an async generator that fails before its first message


@pytest.mark.parametrize("server", SERVERS)
async def test_short_circuit_with_a_response_or_an_error(server: str) -> None:
    events: Events = []
    async with serving([Meta("A", events), ShortCircuit()], events, server=server) as client:
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
    # Nothing reached the server, and the metadata interceptor saw every call end.
    assert "handler" not in events
    assert events.count("A.on_start") == events.count("A.on_end:token-A") == 5


async def test_composed_once_per_client() -> None:
    counter = LookupCounter()
    async with run_server(
        testing_connect.EchoServiceASGIApplication(RecordingService([])),
        server="native",
        transport="h2c",
    ) as srv:
        async with (
            HTTPClient(http_version=HTTPVersion.HTTP2) as http,
            Client(srv.url, http_client=http, interceptors=[counter]) as client,
        ):
            # Building the client composed one chain per stream type...
            assert dict(counter.lookups) == {
                "intercept_unary": 1,
                "intercept_client_stream": 1,
                "intercept_server_stream": 1,
                "intercept_bidi_stream": 1,
            }
            composed = dict(counter.lookups)
            for _ in range(3):
                for kind in KINDS:
                    await call(client, kind)
            # ...and calls never compose again.
            assert dict(counter.lookups) == composed
        # The base class composes the same way.
        plain = ConnectClient(srv.url, interceptors=[counter])
        await plain.close()
        assert sum(counter.lookups.values()) == 8
