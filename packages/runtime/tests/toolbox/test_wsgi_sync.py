"""``ConnectWSGIApplication`` (the generated ``EchoServiceWSGIApplication``) under werkzeug.

A real WSGI server on 127.0.0.1 (port 0) in a thread, called by the sync client from
plain threads and by hand (``http.client``) for what the clients never send. The
answers must be the ASGI application's, byte for byte.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from _support.service import EchoRequest, EchoResponse, echo_app
from connectanyio.testing.v1 import testing_connect, testing_pb2
from google.protobuf import wrappers_pb2
from toolbox._helpers import (
    WAIT,
    EchoServiceSyncImpl,
    SyncObservations,
    envelope,
    envelopes,
    raw_request,
    serve_in_thread,
    serve_wsgi,
)
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from connect_anyio import (
    Code,
    ConnectError,
    ConnectWSGIApplication,
    ProtocolType,
    ResponseMetadata,
    proto_json_codec,
)
from connect_anyio._server_wsgi import FULL_DUPLEX_MESSAGE
from connect_anyio.request import RequestContext

SERVICE = "/connectanyio.testing.v1.EchoService"
Ctx = RequestContext[EchoRequest, EchoResponse]
PROTOCOLS = [ProtocolType.CONNECT, ProtocolType.GRPC_WEB]


@pytest.fixture(scope="module")
def observations() -> SyncObservations:
    return SyncObservations()


@pytest.fixture(scope="module")
def url(observations: SyncObservations) -> Iterator[str]:
    app = testing_connect.EchoServiceWSGIApplication(EchoServiceSyncImpl(observations))
    assert isinstance(app, ConnectWSGIApplication)
    with serve_wsgi(app) as running:
        yield running


@pytest.fixture(scope="module")
def asgi_url() -> Iterator[str]:
    """The same service through the ASGI application (native server), to compare answers."""
    with serve_in_thread(echo_app()) as running:
        yield running.url


def client(
    url: str, protocol: ProtocolType, **options: Any
) -> testing_connect.EchoServiceClientSync:
    return testing_connect.EchoServiceClientSync(url, protocol=protocol, **options)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("json_codec", [False, True], ids=["proto", "json"])
def test_unary(url: str, protocol: ProtocolType, json_codec: bool) -> None:
    codec = proto_json_codec() if json_codec else None
    with client(url, protocol, codec=codec) as c, ResponseMetadata() as meta:
        response = c.echo(EchoRequest(text="hello"), headers={"x-test-who": "wsgi"})
    assert response.text == "hello"
    assert dict(response.headers) == {"x-test-who": "wsgi"}
    assert meta.headers()["x-test-who"] == "wsgi"
    assert meta.trailers()["x-test-who-trailer"] == "wsgi"


def test_unary_get(url: str) -> None:
    with client(url, ProtocolType.CONNECT) as c:
        assert c.echo(EchoRequest(text="via GET"), use_get=True).text == "via GET"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_stream(url: str, protocol: ProtocolType) -> None:
    with (
        client(url, protocol) as c,
        ResponseMetadata() as meta,
        c.server_stream(
            EchoRequest(text="s", response_count=5), headers={"x-test-kind": "server"}
        ) as stream,
    ):
        indexes = [r.index for r in stream]
    assert indexes == [0, 1, 2, 3, 4]
    assert meta.headers()["x-test-kind"] == "server"
    assert meta.trailers()["x-test-kind-trailer"] == "server"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_client_stream(url: str, protocol: ProtocolType) -> None:
    def requests() -> Iterator[EchoRequest]:
        for i in range(5):
            yield EchoRequest(text=f"m{i}")

    with client(url, protocol) as c, ResponseMetadata() as meta:
        response = c.client_stream(requests(), headers={"x-test-kind": "client"})
    assert list(response.request_texts) == [f"m{i}" for i in range(5)]
    assert meta.trailers()["x-test-kind-trailer"] == "client"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bidi_half_duplex(url: str, protocol: ProtocolType) -> None:
    requests = [EchoRequest(text=f"b{i}", response_count=2) for i in range(3)]
    with client(url, protocol) as c, c.bidi(requests) as stream:
        got = [(r.text, r.index) for r in stream]
    assert got == [("b0", 0), ("b0", 1), ("b1", 2), ("b1", 3), ("b2", 4), ("b2", 5)]


def _failure(code: str) -> testing_pb2.Failure:
    return testing_pb2.Failure(code=code, message=f"failed with {code}", details=["why"])


def _check(error: ConnectError, code: Code) -> None:
    assert error.code is code
    assert error.message == f"failed with {code.value}"
    assert [d.value for d in error.unpack_details(wrappers_pb2.StringValue)] == ["why"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_errors_every_stream_kind(url: str, protocol: ProtocolType) -> None:
    with client(url, protocol) as c:
        with pytest.raises(ConnectError) as unary:
            c.echo(EchoRequest(fail=_failure("not_found")))
        _check(unary.value, Code.NOT_FOUND)

        received: list[int] = []
        with pytest.raises(ConnectError) as server:
            received.extend(
                r.index
                for r in c.server_stream(EchoRequest(response_count=2, fail=_failure("data_loss")))
            )
        assert received == [0, 1]
        _check(server.value, Code.DATA_LOSS)

        with pytest.raises(ConnectError) as client_stream:
            c.client_stream([EchoRequest(), EchoRequest(fail=_failure("aborted"))])
        _check(client_stream.value, Code.ABORTED)

        stream = c.bidi([EchoRequest(text="ok"), EchoRequest(fail=_failure("out_of_range"))])
        with stream:
            assert next(stream).text == "ok"
            with pytest.raises(ConnectError) as bidi:
                next(stream)
        _check(bidi.value, Code.OUT_OF_RANGE)


class _Partial(testing_connect.EchoServiceSync):
    """Implements only ``echo``; the rest answer unimplemented (the Protocol's bodies)."""

    def echo(self, request: EchoRequest, ctx: Ctx) -> EchoResponse:
        raise ValueError("a bug in the handler")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unimplemented_and_internal(protocol: ProtocolType) -> None:
    app = testing_connect.EchoServiceWSGIApplication(_Partial())
    with serve_wsgi(app) as url, client(url, protocol) as c:
        with pytest.raises(ConnectError) as internal:
            c.echo(EchoRequest())
        assert (internal.value.code, internal.value.message) == (Code.INTERNAL, "internal error")
        with pytest.raises(ConnectError) as missing:
            list(c.server_stream(EchoRequest()))
        assert missing.value.code is Code.UNIMPLEMENTED
        assert "ServerStream is not implemented" in missing.value.message
        with pytest.raises(ConnectError) as missing_bidi:
            list(c.bidi([EchoRequest()]))
        assert missing_bidi.value.code is Code.UNIMPLEMENTED


@pytest.mark.parametrize("compression", ["gzip", "br", "zstd"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_compression(url: str, protocol: ProtocolType, compression: str) -> None:
    big = "x" * 4000
    options = {"send_compression": compression, "accept_compression": [compression]}
    with client(url, protocol, **options) as c:
        with ResponseMetadata() as meta:
            response = c.echo(EchoRequest(text=big, response_payload_size=4000))
        streamed = [r.text for r in c.bidi([EchoRequest(text=big)] * 2)]
    assert response.text == big
    assert len(response.payload) == 4000
    assert streamed == [big, big]
    encoding = "content-encoding" if protocol is ProtocolType.CONNECT else "grpc-encoding"
    assert meta.headers()[encoding] == compression


def test_request_stream_is_read_lazily(url: str, observations: SyncObservations) -> None:
    """The handler gets each request while the client is still producing the next one."""
    seen = observations.received["lazy"]

    def requests() -> Iterator[EchoRequest]:
        for i in range(3):
            yield EchoRequest(text=f"r{i}", tag="lazy")
            deadline = time.monotonic() + WAIT
            # The next request is made only once the handler has the previous one: a server
            # that read the whole (chunked) body before calling the handler would hang here.
            while len(seen) <= i:
                assert time.monotonic() < deadline, "the handler never got the request"
                time.sleep(0.005)

    with client(url, ProtocolType.CONNECT) as c:
        response = c.client_stream(requests())
    assert list(response.request_texts) == ["r0", "r1", "r2"]


class _Lockstep(testing_connect.EchoServiceSync):
    """Makes each response only after the client has received the previous one."""

    def __init__(self) -> None:
        self.received = [threading.Event() for _ in range(3)]

    def server_stream(self, request: EchoRequest, ctx: Ctx) -> Iterator[EchoResponse]:
        for i in range(3):
            yield EchoResponse(index=i)
            assert self.received[i].wait(WAIT), "the response was not sent on its own"


def test_responses_are_sent_message_by_message() -> None:
    service = _Lockstep()
    app = testing_connect.EchoServiceWSGIApplication(service)
    with serve_wsgi(app) as url, client(url, ProtocolType.CONNECT) as c:
        got = []
        for response in c.server_stream(EchoRequest()):
            got.append(response.index)
            service.received[response.index].set()
    assert got == [0, 1, 2]


def test_client_going_away_closes_the_handler(url: str, observations: SyncObservations) -> None:
    with client(url, ProtocolType.CONNECT) as c:
        with c.server_stream(EchoRequest(response_count=-1, tag="gone")) as stream:
            assert [next(stream).index, next(stream).index] == [0, 1]
        # Leaving the block closed the connection: the server's next writes fail and
        # it closes the application's iterable, which closes the handler.
        observations.wait_finished("gone")


def test_deadline_enforced_at_the_boundaries(url: str) -> None:
    # Unary: the handler outlives the deadline; its result is not sent.
    response = raw_request(
        url,
        f"{SERVICE}/EchoPost",
        body=EchoRequest(text="late", wait_for_cancel=True).SerializeToString(),
        headers={"content-type": "application/proto", "connect-timeout-ms": "100"},
    )
    assert response.status == 504
    assert json.loads(response.body)["code"] == "deadline_exceeded"
    # Server stream: what was sent before the deadline arrives, then deadline_exceeded.
    response = raw_request(
        url,
        f"{SERVICE}/ServerStream",
        body=envelope(EchoRequest(response_count=2, wait_for_cancel=True).SerializeToString()),
        headers={"content-type": "application/connect+proto", "connect-timeout-ms": "100"},
    )
    frames = envelopes(response.body)
    assert [EchoResponse.FromString(data).index for _, data in frames[:-1]] == [0, 1]
    assert frames[-1][0] == 2
    assert json.loads(frames[-1][1])["error"]["code"] == "deadline_exceeded"
    # The sync client sees the same.
    with client(url, ProtocolType.GRPC_WEB) as c, pytest.raises(ConnectError) as caught:
        c.echo(EchoRequest(wait_for_cancel=True), timeout_ms=100)
    assert caught.value.code is Code.DEADLINE_EXCEEDED


class _LateSecondMessage(testing_connect.EchoServiceSync):
    def server_stream(self, request: EchoRequest, ctx: Ctx) -> Iterator[EchoResponse]:
        yield EchoResponse(index=0)
        remaining = ctx.timeout_ms()
        assert remaining is not None
        time.sleep(remaining / 1000.0 + 0.05)
        yield EchoResponse(index=1)


def test_message_made_after_the_deadline_is_not_sent() -> None:
    app = testing_connect.EchoServiceWSGIApplication(_LateSecondMessage())
    with serve_wsgi(app) as url:
        response = raw_request(
            url,
            f"{SERVICE}/ServerStream",
            body=envelope(EchoRequest().SerializeToString()),
            headers={"content-type": "application/connect+proto", "connect-timeout-ms": "100"},
        )
    frames = envelopes(response.body)
    assert len(frames) == 2
    assert EchoResponse.FromString(frames[0][1]).index == 0
    assert json.loads(frames[1][1])["error"]["code"] == "deadline_exceeded"


def test_mounted_under_its_path() -> None:
    """``path`` mounts each service under a prefix (SCRIPT_NAME), beside other WSGI apps."""
    echo = testing_connect.EchoServiceWSGIApplication(EchoServiceSyncImpl())

    def fallback(environ: object, start_response: object) -> list[bytes]:
        start_response("418 I'm a teapot", [("content-type", "text/plain")])  # type: ignore[operator]
        return [b"not a service"]

    app = DispatcherMiddleware(fallback, {echo.path: echo})  # type: ignore[arg-type]
    with serve_wsgi(app) as url:
        with client(url, ProtocolType.CONNECT) as c:
            assert c.echo(EchoRequest(text="mounted")).text == "mounted"
        assert raw_request(url, "/elsewhere", method="GET").status == 418


def test_read_max_bytes() -> None:
    app = testing_connect.EchoServiceWSGIApplication(EchoServiceSyncImpl(), read_max_bytes=100)
    with serve_wsgi(app) as url, client(url, ProtocolType.CONNECT, send_compression=None) as c:
        with pytest.raises(ConnectError) as caught:
            c.echo(EchoRequest(text="x" * 200))
        assert caught.value.code is Code.RESOURCE_EXHAUSTED
        with pytest.raises(ConnectError) as streamed:
            c.client_stream([EchoRequest(text="x" * 200)])
        assert streamed.value.code is Code.RESOURCE_EXHAUSTED


def test_grpc_needs_http2_trailers(url: str) -> None:
    response = raw_request(
        url,
        f"{SERVICE}/Echo",
        body=envelope(EchoRequest().SerializeToString()),
        headers={"content-type": "application/grpc"},
    )
    assert response.status == 505
    with client(url, ProtocolType.GRPC) as c, pytest.raises(ConnectError):
        c.echo(EchoRequest())


def test_full_duplex_refused_over_http2(url: str) -> None:
    """Over HTTP/2 a bidi call is answered ``unimplemented`` before the handler runs."""
    calls: list[str] = []

    class Recording(EchoServiceSyncImpl):
        def bidi(self, request: Iterator[EchoRequest], ctx: Ctx) -> Iterator[EchoResponse]:
            calls.append("bidi")
            yield from super().bidi(request, ctx)

    app = testing_connect.EchoServiceWSGIApplication(Recording())
    chunks: list[bytes] = []
    started: list[str] = []
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": f"{SERVICE}/Bidi",
        "SERVER_PROTOCOL": "HTTP/2",
        "CONTENT_TYPE": "application/connect+proto",
        "wsgi.input": None,
    }
    chunks.extend(app(environ, lambda status, headers: started.append(status)))  # type: ignore[arg-type]
    assert started == ["200 OK"]
    error = json.loads(envelopes(b"".join(chunks))[-1][1])["error"]
    assert error == {"code": "unimplemented", "message": FULL_DUPLEX_MESSAGE}
    assert calls == []


# The same requests to the ASGI and the WSGI application: the same answers.
PARITY = {
    "not found": ("/no.Such/Method", "POST", b"", {"content-type": "application/proto"}),
    "GET not allowed": (f"{SERVICE}/EchoPost?encoding=proto&message=", "GET", b"", {}),
    "PUT": (f"{SERVICE}/Echo", "PUT", b"", {"content-type": "application/proto"}),
    "unsupported media type": (f"{SERVICE}/Echo", "POST", b"{}", {"content-type": "text/plain"}),
    "unary error": (
        f"{SERVICE}/Echo",
        "POST",
        EchoRequest(fail=_failure("permission_denied")).SerializeToString(),
        {"content-type": "application/proto"},
    ),
    "unary JSON": (
        f"{SERVICE}/Echo",
        "POST",
        b'{"text": "json"}',
        {"content-type": "application/json", "x-test-a": "1"},
    ),
    "bad protocol version": (
        f"{SERVICE}/Echo",
        "POST",
        b"",
        {"content-type": "application/proto", "connect-protocol-version": "2"},
    ),
    "unknown compression": (
        f"{SERVICE}/Echo",
        "POST",
        b"",
        {"content-type": "application/proto", "content-encoding": "lz4"},
    ),
    "malformed body": (
        f"{SERVICE}/Echo",
        "POST",
        b"\xff\xff",
        {"content-type": "application/proto"},
    ),
    "stream error": (
        f"{SERVICE}/ServerStream",
        "POST",
        envelope(EchoRequest(response_count=1, fail=_failure("aborted")).SerializeToString()),
        {"content-type": "application/connect+proto", "x-test-b": "2"},
    ),
    "truncated stream": (
        f"{SERVICE}/ClientStream",
        "POST",
        envelope(EchoRequest().SerializeToString())[:-1],
        {"content-type": "application/connect+proto"},
    ),
    "gRPC-Web error": (
        f"{SERVICE}/Bidi",
        "POST",
        envelope(EchoRequest(text="a").SerializeToString())
        + envelope(EchoRequest(fail=_failure("unavailable")).SerializeToString()),
        {"content-type": "application/grpc-web+proto"},
    ),
    "GET": (
        f"{SERVICE}/Echo?encoding=json&message=%7B%22text%22%3A%22q%22%7D",
        "GET",
        b"",
        {},
    ),
}
_TRANSPORT_HEADERS = {"date", "server", "connection", "content-length", "transfer-encoding"}


@pytest.mark.parametrize("case", PARITY)
def test_same_answers_as_the_asgi_application(url: str, asgi_url: str, case: str) -> None:
    path, method, body, headers = PARITY[case]
    wsgi = raw_request(url, path, method=method, body=body, headers=headers)
    asgi = raw_request(asgi_url, path, method=method, body=body, headers=headers)
    assert wsgi.status == asgi.status
    strip = _TRANSPORT_HEADERS

    def protocol_headers(h: dict[str, list[str]]) -> dict[str, list[str]]:
        return {k: v for k, v in h.items() if k not in strip}

    assert protocol_headers(wsgi.headers) == protocol_headers(asgi.headers)
    assert wsgi.body == asgi.body
