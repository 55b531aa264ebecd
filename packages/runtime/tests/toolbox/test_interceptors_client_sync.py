"""Sync client interceptors (the ``...Sync`` protocols) on ``ConnectClientSync``.

The generated ``EchoServiceClientSync`` called from the test's plain thread, against real
servers (hypercorn and native, h2c, each on its own event loop in a thread) over Connect,
gRPC and gRPC-Web: the order for ``[A, B, C]``, ``on_end`` on errors, deadlines and streams
closed early, headers read and changed, requests and responses replaced, calls
short-circuited with a response or an error, streams wrapped message by message, and a chain
composed once per client. The server's handler notes ``handler`` in the same list of events
as the interceptors (a list is safe to append to from two threads).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from _support.servers import SERVERS
from _support.service import EchoRequest, EchoResponse, Observations
from anyio.from_thread import BlockingPortal
from connectanyio.testing.v1 import testing_connect
from toolbox._helpers import serve_in_thread_portal
from toolbox._interceptors import AroundSync, Ctx, Events, LookupCounterSync, RecordingService

from connect_anyio import (
    Code,
    ConnectClientSync,
    ConnectError,
    HTTPClient,
    HTTPVersion,
    ProtocolType,
    ResponseMetadata,
)
from connect_anyio.interceptor import (
    BidiStreamInterceptorSync,
    ClientStreamInterceptorSync,
    MetadataInterceptorSync,
    ServerStreamInterceptorSync,
    UnaryInterceptorSync,
)

KINDS = ["unary", "client_stream", "server_stream", "bidi"]
Client = testing_connect.EchoServiceClientSync


class MetaSync:
    """A ``MetadataInterceptorSync``: ``on_start`` returns a token that ``on_end`` records."""

    def __init__(self, name: str, events: Events) -> None:
        self.name = name
        self.events = events

    def on_start_sync(self, ctx: Ctx) -> str:
        self.events.append(f"{self.name}.on_start")
        return f"token-{self.name}"

    def on_end_sync(self, token: str, ctx: Ctx) -> None:
        self.events.append(f"{self.name}.on_end:{token}")


class Serving:
    """A real server on its own loop, a sync client with interceptors, and the portal."""

    def __init__(self, client: Client, portal: BlockingPortal, url: str) -> None:
        self.client = client
        self.portal = portal
        self.url = url

    def wait_started(self, observations: Observations, tag: str) -> None:
        async def wait() -> None:
            await observations.started[tag].wait()

        self.portal.call(wait)

    def wait_cancelled(self, observations: Observations, tag: str) -> None:
        self.portal.call(observations.wait_cancelled, tag)


@contextmanager
def serving(
    interceptors: list[Any],
    events: Events | None = None,
    *,
    server: str = "native",
    protocol: ProtocolType = ProtocolType.CONNECT,
    observations: Observations | None = None,
    timeout_ms: int | None = None,
    backend: str = "asyncio",
) -> Iterator[Serving]:
    """``backend`` runs both the server's and the client's event loop."""
    app = testing_connect.EchoServiceASGIApplication(
        RecordingService(events if events is not None else [], observations)
    )
    with (
        serve_in_thread_portal(app, server=server, transport="h2c", backend=backend) as (
            running,
            portal,
        ),
        Client(
            running.url,
            protocol=protocol,
            http_client=HTTPClient(http_version=HTTPVersion.HTTP2),
            timeout_ms=timeout_ms,
            interceptors=interceptors,
            backend=backend,
        ) as client,
    ):
        yield Serving(client, portal, running.url)


def call(client: Client, kind: str, **fields: Any) -> list[EchoResponse]:
    """One call of ``kind`` whose last (or only) request carries ``fields``; its responses."""
    if kind == "unary":
        return [client.echo(EchoRequest(**fields))]
    if kind == "client_stream":
        return [client.client_stream([EchoRequest(text="one"), EchoRequest(**fields)])]
    if kind == "server_stream":
        with client.server_stream(EchoRequest(response_count=2, **fields)) as stream:
            return list(stream)
    with client.bidi([EchoRequest(**fields)]) as stream:
        return list(stream)


class UnaryOnlySync:
    def __init__(self, events: Events) -> None:
        self.events = events

    def intercept_unary_sync(
        self, call_next: Callable[[Any, Ctx], Any], request: Any, ctx: Ctx
    ) -> Any:
        self.events.append("U>")
        try:
            return call_next(request, ctx)
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


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("protocol", list(ProtocolType))
@pytest.mark.parametrize("server", SERVERS)
def test_every_kind_in_order(server: str, protocol: ProtocolType, backend: str) -> None:
    events: Events = []
    around = AroundSync("B", events)
    for kind_protocol in (
        UnaryInterceptorSync,
        ClientStreamInterceptorSync,
        ServerStreamInterceptorSync,
        BidiStreamInterceptorSync,
    ):
        assert isinstance(around, kind_protocol)
    assert isinstance(MetaSync("A", events), MetadataInterceptorSync)
    assert not isinstance(UnaryOnlySync(events), BidiStreamInterceptorSync)
    chain = [MetaSync("A", events), UnaryOnlySync(events), around, MetaSync("C", events)]
    with serving(chain, events, server=server, protocol=protocol, backend=backend) as s:
        for kind in KINDS:
            events.clear()
            responses = call(s.client, kind, text=kind)
            assert [r.text for r in responses][-1:] == [kind]
            assert events == _order(kind), kind


@pytest.mark.parametrize("kind", KINDS)
def test_on_end_runs_on_errors(kind: str) -> None:
    events: Events = []
    chain = [MetaSync("A", events), AroundSync("B", events), MetaSync("C", events)]
    with (
        serving(chain, events, protocol=ProtocolType.GRPC) as s,
        pytest.raises(ConnectError) as caught,
    ):
        call(s.client, kind, fail={"code": "aborted", "message": "handler failed"})
    assert (caught.value.code, caught.value.message) == (Code.ABORTED, "handler failed")
    assert events == _order("stream")


@pytest.mark.parametrize("kind", KINDS)
def test_on_end_runs_when_the_deadline_expires(kind: str) -> None:
    events: Events = []
    observations = Observations()
    chain = [MetaSync("A", events), AroundSync("B", events), MetaSync("C", events)]
    with serving(chain, events, observations=observations, timeout_ms=300) as s:
        with pytest.raises(ConnectError) as caught:
            call(s.client, kind, wait_for_cancel=True, tag=kind)
        assert caught.value.code is Code.DEADLINE_EXCEEDED
        s.wait_cancelled(observations, kind)
    assert events == _order("stream")


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("kind", ["server_stream", "bidi"])
def test_on_end_runs_when_the_caller_leaves_a_stream(kind: str, server: str) -> None:
    """Leaving ``with`` mid-stream cancels the call on the wire and still runs every
    ``on_end`` (and the per-kind interceptors' ``finally``)."""
    events: Events = []
    observations = Observations()
    chain = [MetaSync("A", events), AroundSync("B", events), MetaSync("C", events)]
    with serving(chain, events, server=server, observations=observations) as s:
        if kind == "server_stream":
            stream = s.client.server_stream(
                EchoRequest(text="first", response_count=1, wait_for_cancel=True, tag=kind)
            )
        else:
            stream = s.client.bidi(
                [EchoRequest(text="first"), EchoRequest(wait_for_cancel=True, tag=kind)]
            )
        with stream:
            assert next(stream).text == "first"
            s.wait_started(observations, kind)
            assert "C.on_end:token-C" not in events
        s.wait_cancelled(observations, kind)
    assert events == _order("stream")


class HeaderInterceptorSync:
    """Reads and changes request headers; reads the response headers and trailers."""

    def __init__(self) -> None:
        self.seen_request: list[str | None] = []
        self.seen_response: list[tuple[str | None, str | None]] = []
        self.threads: set[int] = set()

    def on_start_sync(self, ctx: Ctx) -> None:
        self.threads.add(threading.get_ident())
        headers = ctx.request_headers()
        self.seen_request.append(headers.get("x-test-in"))
        headers["x-test-in"] = "changed"
        headers["x-test-added"] = "by-interceptor"

    def on_end_sync(self, token: None, ctx: Ctx) -> None:
        self.threads.add(threading.get_ident())
        self.seen_response.append(
            (
                ctx.response_headers().get("x-test-added"),
                ctx.response_trailers().get("x-test-added-trailer"),
            )
        )


@pytest.mark.parametrize("protocol", list(ProtocolType))
@pytest.mark.parametrize("kind", KINDS)
def test_read_and_change_headers(kind: str, protocol: ProtocolType) -> None:
    interceptor = HeaderInterceptorSync()
    headers = {"x-test-in": "hello"}
    with serving([interceptor], protocol=protocol) as s, ResponseMetadata() as meta:
        client = s.client
        if kind == "unary":
            responses = [client.echo(EchoRequest(), headers=headers)]
        elif kind == "client_stream":
            responses = [client.client_stream([EchoRequest(text="a")], headers=headers)]
        elif kind == "server_stream":
            with client.server_stream(EchoRequest(response_count=2), headers=headers) as stream:
                responses = list(stream)
        else:
            with client.bidi([EchoRequest(), EchoRequest()], headers=headers) as stream:
                responses = list(stream)
    assert interceptor.seen_request == ["hello"]
    # Sync interceptors run in the caller's thread, not on the client's event loop.
    assert interceptor.threads == {threading.get_ident()}
    assert len(responses) == (2 if kind in ("server_stream", "bidi") else 1)
    for response in responses:
        assert dict(response.headers) == {"x-test-in": "changed", "x-test-added": "by-interceptor"}
    assert interceptor.seen_response == [("by-interceptor", "by-interceptor")]
    assert meta.headers()["x-test-in"] == "changed"
    assert meta.trailers()["x-test-added-trailer"] == "by-interceptor"


class RewriterSync:
    """Replaces requests and responses, and wraps streams message by message."""

    def __init__(self, events: Events) -> None:
        self.events = events

    def intercept_unary_sync(
        self, call_next: Callable[[Any, Ctx], Any], request: Any, ctx: Ctx
    ) -> Any:
        response = call_next(EchoRequest(text=request.text.upper()), ctx)
        return EchoResponse(text=response.text + "!")

    def intercept_client_stream_sync(
        self, call_next: Callable[[Iterable[Any], Ctx], Any], request: Iterable[Any], ctx: Ctx
    ) -> Any:
        def upper() -> Iterator[EchoRequest]:
            for message in request:
                yield EchoRequest(text=message.text.upper())

        response = call_next(upper(), ctx)
        return EchoResponse(text="|".join(response.request_texts))

    def intercept_server_stream_sync(
        self, call_next: Callable[[Any, Ctx], Iterator[Any]], request: Any, ctx: Ctx
    ) -> Iterator[Any]:
        request = EchoRequest(text=request.text, response_count=request.response_count + 1)
        for message in call_next(request, ctx):
            self.events.append(f"got:{message.index}")
            yield EchoResponse(text=f"{message.text}#{message.index}")

    def intercept_bidi_stream_sync(
        self,
        call_next: Callable[[Iterable[Any], Ctx], Iterator[Any]],
        request: Iterable[Any],
        ctx: Ctx,
    ) -> Iterator[Any]:
        numbered = (EchoRequest(text=f"{n}:{m.text}") for n, m in enumerate(request, 1))
        for message in call_next(numbered, ctx):
            self.events.append(f"got:{message.text}")
            yield EchoResponse(text=message.text.upper())


@pytest.mark.parametrize("protocol", list(ProtocolType))
def test_replace_requests_responses_and_wrap_streams(protocol: ProtocolType) -> None:
    events: Events = []
    with serving([RewriterSync(events)], protocol=protocol) as s:
        client = s.client
        assert client.echo(EchoRequest(text="hat")).text == "HAT!"
        assert client.client_stream([EchoRequest(text="a"), EchoRequest(text="b")]).text == "A|B"

        with client.server_stream(EchoRequest(text="s", response_count=2)) as stream:
            for response in stream:
                events.append(f"caller:{response.text}")
        assert events == ["got:0", "caller:s#0", "got:1", "caller:s#1", "got:2", "caller:s#2"]

        events.clear()
        with client.bidi([EchoRequest(text="x"), EchoRequest(text="y")]) as stream:
            for response in stream:
                events.append(f"caller:{response.text}")
        assert events == ["got:1:x", "caller:1:X", "got:2:y", "caller:2:Y"]


class ShortCircuitSync:
    """Answers without calling the server: a response, or an error when asked."""

    def intercept_unary_sync(
        self, call_next: Callable[[Any, Ctx], Any], request: Any, ctx: Ctx
    ) -> Any:
        if request.text == "deny":
            raise ConnectError(Code.PERMISSION_DENIED, "denied by interceptor")
        return EchoResponse(text="cached")

    def intercept_client_stream_sync(
        self, call_next: Callable[[Iterable[Any], Ctx], Any], request: Iterable[Any], ctx: Ctx
    ) -> Any:
        raise ConnectError(Code.PERMISSION_DENIED, "denied by interceptor")

    def intercept_server_stream_sync(
        self, call_next: Callable[[Any, Ctx], Iterator[Any]], request: Any, ctx: Ctx
    ) -> Iterator[Any]:
        return iter([EchoResponse(text="canned 1"), EchoResponse(text="canned 2")])

    def intercept_bidi_stream_sync(
        self,
        call_next: Callable[[Iterable[Any], Ctx], Iterator[Any]],
        request: Iterable[Any],
        ctx: Ctx,
    ) -> Iterator[Any]:
        raise ConnectError(Code.PERMISSION_DENIED, "denied by interceptor")


@pytest.mark.parametrize("server", SERVERS)
def test_short_circuit_with_a_response_or_an_error(server: str) -> None:
    events: Events = []
    with serving([MetaSync("A", events), ShortCircuitSync()], events, server=server) as s:
        client = s.client
        assert client.echo(EchoRequest(text="hi")).text == "cached"
        with client.server_stream(EchoRequest(response_count=5)) as stream:
            assert [r.text for r in stream] == ["canned 1", "canned 2"]
        with pytest.raises(ConnectError) as unary:
            client.echo(EchoRequest(text="deny"))
        with pytest.raises(ConnectError) as client_stream:
            client.client_stream([EchoRequest()])
        with pytest.raises(ConnectError) as bidi, client.bidi([EchoRequest()]) as stream:
            next(stream)
    for caught in (unary, client_stream, bidi):
        assert (caught.value.code, caught.value.message) == (
            Code.PERMISSION_DENIED,
            "denied by interceptor",
        )
    assert "handler" not in events
    assert events.count("A.on_start") == events.count("A.on_end:token-A") == 5


def test_composed_once_per_client() -> None:
    counter = LookupCounterSync()
    with serving([counter]) as s:
        assert dict(counter.lookups) == {
            "intercept_unary_sync": 1,
            "intercept_client_stream_sync": 1,
            "intercept_server_stream_sync": 1,
            "intercept_bidi_stream_sync": 1,
        }
        composed = dict(counter.lookups)
        for _ in range(3):
            for kind in KINDS:
                call(s.client, kind)
        assert dict(counter.lookups) == composed
        with ConnectClientSync(s.url, interceptors=[counter]):
            assert sum(counter.lookups.values()) == 8
