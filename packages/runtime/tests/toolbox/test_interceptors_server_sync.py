"""Sync server interceptors (the ``...Sync`` protocols) on the WSGI application, under werkzeug.

The same contract as the async ones: order, ``on_end`` on errors, deadlines and clients
that go away, headers, replaced and short-circuited calls, streams wrapped message by
message, one object of several kinds, and a chain composed once per endpoint.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from _support.service import EchoRequest, EchoResponse
from connectanyio.testing.v1 import testing_connect
from toolbox._helpers import WAIT, EchoServiceSyncImpl, SyncObservations, serve_wsgi
from toolbox._interceptors import AroundSync, Ctx, Events, LookupCounterSync, MetaSync

from connect_anyio import Code, ConnectError, ResponseMetadata
from connect_anyio.interceptor import (
    BidiStreamInterceptorSync,
    ClientStreamInterceptorSync,
    MetadataInterceptorSync,
    ServerStreamInterceptorSync,
    UnaryInterceptorSync,
)

KINDS = ["unary", "client_stream", "server_stream", "bidi"]


class RecordingServiceSync(EchoServiceSyncImpl):
    def __init__(self, events: Events, observations: SyncObservations | None = None) -> None:
        super().__init__(observations)
        self.events = events

    def echo(self, request: EchoRequest, ctx: Any) -> EchoResponse:
        self.events.append("handler")
        return super().echo(request, ctx)

    def client_stream(self, request: Iterator[EchoRequest], ctx: Any) -> EchoResponse:
        self.events.append("handler")
        return super().client_stream(request, ctx)

    def server_stream(self, request: EchoRequest, ctx: Any) -> Iterator[EchoResponse]:
        self.events.append("handler")
        yield from super().server_stream(request, ctx)

    def bidi(self, request: Iterator[EchoRequest], ctx: Any) -> Iterator[EchoResponse]:
        self.events.append("handler")
        yield from super().bidi(request, ctx)


@contextmanager
def serving(
    interceptors: list[Any],
    events: Events | None = None,
    observations: SyncObservations | None = None,
    **client_options: Any,
) -> Iterator[testing_connect.EchoServiceClientSync]:
    service = RecordingServiceSync(events if events is not None else [], observations)
    app = testing_connect.EchoServiceWSGIApplication(service, interceptors=interceptors)
    with (
        serve_wsgi(app) as url,
        testing_connect.EchoServiceClientSync(url, **client_options) as client,
    ):
        yield client


def call(
    client: testing_connect.EchoServiceClientSync, kind: str, **fields: Any
) -> list[EchoResponse]:
    if kind == "unary":
        return [client.echo(EchoRequest(**fields))]
    if kind == "client_stream":
        return [client.client_stream([EchoRequest(text="one"), EchoRequest(**fields)])]
    if kind == "server_stream":
        with client.server_stream(EchoRequest(response_count=2, **fields)) as stream:
            return list(stream)
    with client.bidi([EchoRequest(**fields)]) as stream:
        return list(stream)


ORDER = [
    "A.on_start",
    "B>",
    "C.on_start",
    "handler",
    "C.on_end:token-C",
    "<B",
    "A.on_end:token-A",
]


@pytest.mark.parametrize("kind", KINDS)
def test_metadata_interceptors_in_order(kind: str) -> None:
    events: Events = []
    chain = [MetaSync("A", events), MetaSync("B", events), MetaSync("C", events)]
    with serving(chain, events) as client:
        call(client, kind)
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
def test_kinds_mixed_in_order_one_object_for_every_kind(kind: str) -> None:
    events: Events = []
    around = AroundSync("B", events)
    for protocol in (
        UnaryInterceptorSync,
        ClientStreamInterceptorSync,
        ServerStreamInterceptorSync,
        BidiStreamInterceptorSync,
    ):
        assert isinstance(around, protocol)
    assert isinstance(MetaSync("A", events), MetadataInterceptorSync)
    with serving([MetaSync("A", events), around, MetaSync("C", events)], events) as client:
        call(client, kind)
    assert events == ORDER


@pytest.mark.parametrize("kind", KINDS)
def test_on_end_runs_on_errors(kind: str) -> None:
    events: Events = []
    chain = [MetaSync("A", events), AroundSync("B", events), MetaSync("C", events)]
    with serving(chain, events) as client, pytest.raises(ConnectError) as caught:
        call(client, kind, fail={"code": "aborted", "message": "handler failed"})
    assert (caught.value.code, caught.value.message) == (Code.ABORTED, "handler failed")
    assert events == ORDER


@pytest.mark.parametrize("kind", KINDS)
def test_on_end_runs_past_the_deadline(kind: str) -> None:
    """Sync handlers cannot be cancelled: past the deadline the call fails, on_end still runs."""
    events: Events = []
    ended = threading.Event()
    chain = [MetaSync("A", events, ended), AroundSync("B", events), MetaSync("C", events)]
    with serving(chain, events, timeout_ms=200) as client:
        with pytest.raises(ConnectError) as caught:
            call(client, kind, wait_for_cancel=True)
        assert caught.value.code is Code.DEADLINE_EXCEEDED
        assert ended.wait(WAIT)
    assert events == ORDER


def test_on_end_runs_when_the_client_goes_away() -> None:
    events: Events = []
    ended = threading.Event()
    observations = SyncObservations()
    with serving([MetaSync("A", events, ended)], events, observations) as client:
        with client.server_stream(EchoRequest(response_count=-1, tag="gone")) as stream:
            next(stream)
        observations.wait_finished("gone")
        assert ended.wait(WAIT)
    assert events == ["A.on_start", "handler", "A.on_end:token-A"]


class HeaderInterceptorSync:
    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def on_start_sync(self, ctx: Ctx) -> None:
        self.seen.append(ctx.request_headers().get("x-test-in"))
        ctx.request_headers()["x-test-added"] = "by-interceptor"
        ctx.response_headers()["x-intercepted"] = "yes"

    def on_end_sync(self, token: None, ctx: Ctx) -> None:
        ctx.response_trailers()["x-intercepted-trailer"] = "done"


@pytest.mark.parametrize("kind", ["unary", "bidi"])
def test_read_and_change_headers(kind: str) -> None:
    interceptor = HeaderInterceptorSync()
    with serving([interceptor]) as client, ResponseMetadata() as meta:
        if kind == "unary":
            response = client.echo(EchoRequest(), headers={"x-test-in": "hello"})
        else:
            (response,) = list(client.bidi([EchoRequest()], headers={"x-test-in": "hello"}))
    assert interceptor.seen == ["hello"]
    assert response.headers["x-test-added"] == "by-interceptor"
    assert meta.headers()["x-intercepted"] == "yes"
    assert meta.trailers()["x-intercepted-trailer"] == "done"


class RewriterSync:
    def intercept_unary_sync(
        self, call_next: Callable[[Any, Ctx], Any], request: Any, ctx: Ctx
    ) -> Any:
        response = call_next(EchoRequest(text=request.text.upper()), ctx)
        return EchoResponse(text=response.text + "!")

    def intercept_client_stream_sync(
        self, call_next: Callable[[Iterator[Any], Ctx], Any], request: Iterator[Any], ctx: Ctx
    ) -> Any:
        return call_next((EchoRequest(text=m.text.upper()) for m in request), ctx)

    def intercept_server_stream_sync(
        self, call_next: Callable[[Any, Ctx], Iterator[Any]], request: Any, ctx: Ctx
    ) -> Iterator[Any]:
        for message in call_next(request, ctx):
            yield EchoResponse(text=f"{message.text}#{message.index}")

    def intercept_bidi_stream_sync(
        self,
        call_next: Callable[[Iterator[Any], Ctx], Iterator[Any]],
        request: Iterator[Any],
        ctx: Ctx,
    ) -> Iterator[Any]:
        numbered = (EchoRequest(text=f"{n}:{m.text}") for n, m in enumerate(request, 1))
        for message in call_next(numbered, ctx):
            yield EchoResponse(text=message.text.upper())


def test_replace_requests_responses_and_wrap_streams() -> None:
    with serving([RewriterSync()]) as client:
        assert client.echo(EchoRequest(text="hat")).text == "HAT!"
        summary = client.client_stream([EchoRequest(text="a"), EchoRequest(text="b")])
        assert list(summary.request_texts) == ["A", "B"]
        stream = client.server_stream(EchoRequest(text="s", response_count=3))
        assert [r.text for r in stream] == ["s#0", "s#1", "s#2"]
        bidi = client.bidi([EchoRequest(text="x"), EchoRequest(text="y")])
        assert [r.text for r in bidi] == ["1:X", "2:Y"]


class ShortCircuitSync:
    def intercept_unary_sync(
        self, call_next: Callable[[Any, Ctx], Any], request: Any, ctx: Ctx
    ) -> Any:
        if request.text == "deny":
            raise ConnectError(Code.PERMISSION_DENIED, "denied by interceptor")
        return EchoResponse(text="cached")

    def intercept_client_stream_sync(
        self, call_next: Callable[[Iterator[Any], Ctx], Any], request: Iterator[Any], ctx: Ctx
    ) -> Any:
        raise ConnectError(Code.PERMISSION_DENIED, "denied by interceptor")

    def intercept_server_stream_sync(
        self, call_next: Callable[[Any, Ctx], Iterator[Any]], request: Any, ctx: Ctx
    ) -> Iterator[Any]:
        return iter([EchoResponse(text="canned 1"), EchoResponse(text="canned 2")])

    def intercept_bidi_stream_sync(
        self,
        call_next: Callable[[Iterator[Any], Ctx], Iterator[Any]],
        request: Iterator[Any],
        ctx: Ctx,
    ) -> Iterator[Any]:
        raise ConnectError(Code.PERMISSION_DENIED, "denied by interceptor")


def test_short_circuit_with_a_response_or_an_error() -> None:
    events: Events = []
    with serving([MetaSync("A", events), ShortCircuitSync()], events) as client:
        assert client.echo(EchoRequest(text="hi")).text == "cached"
        assert [r.text for r in client.server_stream(EchoRequest())] == ["canned 1", "canned 2"]
        errors = []
        for attempt in (
            lambda: client.echo(EchoRequest(text="deny")),
            lambda: client.client_stream([EchoRequest()]),
            lambda: list(client.bidi([EchoRequest()])),
        ):
            with pytest.raises(ConnectError) as caught:
                attempt()
            errors.append((caught.value.code, caught.value.message))
    assert errors == [(Code.PERMISSION_DENIED, "denied by interceptor")] * 3
    assert "handler" not in events
    assert events.count("A.on_start") == events.count("A.on_end:token-A") == 5


def test_composed_once_per_endpoint() -> None:
    counter = LookupCounterSync()
    app = testing_connect.EchoServiceWSGIApplication(EchoServiceSyncImpl(), interceptors=[counter])
    endpoints = len(testing_connect._echo_service_endpoints_sync(EchoServiceSyncImpl()))
    assert sum(counter.lookups.values()) == endpoints
    composed = dict(counter.lookups)
    with serve_wsgi(app) as url, testing_connect.EchoServiceClientSync(url) as client:
        for _ in range(3):
            for kind in KINDS:
                call(client, kind)
    assert dict(counter.lookups) == composed
