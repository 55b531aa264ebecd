"""WSGI environ/start_response <-> the protocol core, for sync handlers.

The same pure pieces as the ASGI application: ``select_call`` picks the protocol,
``build_routes(..., sync=True)`` composes the sync interceptors once per
endpoint, and the ``ServerCall`` turns messages into bytes. Only the I/O differs:
the request body is read from ``wsgi.input`` as the handler asks for messages,
and the response is the iterable WSGI returns, one chunk per message.

What WSGI cannot do, and what happens instead:

- Cancel sync code. A deadline is enforced at the boundaries: before the handler
  runs, whenever it asks for the next request message, before each response
  message is sent and when it returns. Past the deadline the call ends with
  ``deadline_exceeded``; a handler can watch ``ctx.timeout_ms()`` to stop early.
- Send HTTP trailers. gRPC (which needs them, and HTTP/2) is answered like the
  ASGI app answers it on HTTP/1.1: 505. Connect and gRPC-Web carry everything in
  the body and work.
- Full duplex. A bidirectional call is served half duplex over HTTP/1.x: the
  handler reads the request stream lazily and its responses are written as it
  yields them, which is all an HTTP/1.1 client does with a bidi call. Over HTTP/2
  (or later) clients run a bidi call full duplex (responses are awaited while
  requests are still being sent), and WSGI servers that speak HTTP/2 hand the app
  the request only once its body is complete, so such a call could hang until its
  deadline. It is answered at once with ``unimplemented`` instead, before the
  handler runs, naming the ASGI application as the way to serve it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from . import _protocol as p
from ._server_core import (
    Route,
    ServerConfig,
    _as_connect_error,
    _deadline_error,
    build_routes,
    select_call,
)
from .code import Code
from .errors import ConnectError
from .method import StreamType
from .request import Headers, RequestContext

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from .codec import Codec
    from .compression import Compression
    from .interceptor import InterceptorSync
    from .server import EndpointSync

logger = logging.getLogger("connect_anyio")

_READ_SIZE = 64 * 1024
"""The most bytes asked of ``wsgi.input`` at once."""

_DRAIN_MAX = 16 * 1024 * 1024
"""The most unread request bytes read and dropped before answering (see ``_Body.drain``)."""

FULL_DUPLEX_MESSAGE = (
    "bidirectional streaming over HTTP/2 is full duplex, which WSGI cannot serve: "
    "serve this method with the ASGI application (ConnectASGIApplication), "
    "or call it over HTTP/1.1 (half duplex)"
)


class ConnectWSGIApplication:
    """A WSGI application serving sync handlers over Connect and gRPC-Web.

    ``endpoints`` maps URL paths to ``EndpointSync`` objects; generated
    ``FooWSGIApplication`` classes supply them from a ``FooSync`` service.
    Interceptors are the ``...Sync`` kinds, composed once per endpoint here.
    Unary, client-streaming, server-streaming and (over HTTP/1.1, half duplex)
    bidirectional calls are served; responses stream message by message. gRPC
    needs HTTP/2 trailers, which WSGI lacks: use gRPC-Web or Connect, or the ASGI
    application.
    """

    def __init__(
        self,
        endpoints: Mapping[str, EndpointSync[Any, Any]],
        *,
        interceptors: Iterable[InterceptorSync] = (),
        read_max_bytes: int | None = None,
        compressions: Iterable[Compression] | None = None,
        codecs: Iterable[Codec[Any, Any]] | None = None,
        compress_min_bytes: int | None = None,
    ) -> None:
        self._routes = build_routes(endpoints, tuple(interceptors), sync=True)
        self._config = ServerConfig.build(
            codecs=codecs,
            compressions=compressions,
            read_max_bytes=read_max_bytes,
            compress_min_bytes=compress_min_bytes,
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # A generator: nothing runs until the server iterates it, and the server's
        # close() (say, when the client went away) closes the handler too.
        return _serve(self._routes, self._config, environ, start_response)


# ---------------------------------------------------------------------------
# the request


def _headers(environ: WSGIEnvironment) -> Headers:
    headers = Headers()
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers.add(key[5:].replace("_", "-").lower(), value)
    for key, name in (("CONTENT_TYPE", "content-type"), ("CONTENT_LENGTH", "content-length")):
        value = environ.get(key)
        if value:
            headers[name] = value
    return headers


def _http_version(environ: WSGIEnvironment) -> str:
    protocol = str(environ.get("SERVER_PROTOCOL") or "HTTP/1.1")
    return protocol.partition("/")[2] or "1.1"


def _path(environ: WSGIEnvironment, routes: Mapping[str, Route]) -> str:
    """The procedure path; also when the app is mounted under its service's path."""
    path = str(environ.get("PATH_INFO") or "/")
    if path not in routes:
        full = str(environ.get("SCRIPT_NAME") or "") + path
        if full in routes:
            return full
    return path


def _address(host: object, port: object) -> str | None:
    if not host:
        return None
    if not port:
        return str(host)
    if ":" in str(host):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


class _Body:
    """``wsgi.input``, read in chunks, with the framing the server told us about.

    With ``CONTENT_LENGTH`` exactly that many bytes; with ``wsgi.input_terminated``
    (the server de-chunked the body) or over HTTP/2 until EOF; otherwise, as PEP
    3333 says, there is no body.
    """

    __slots__ = ("_input", "_remaining")

    def __init__(self, environ: WSGIEnvironment, http2: bool) -> None:
        self._input = environ.get("wsgi.input")
        self._remaining: int | None = 0
        length = str(environ.get("CONTENT_LENGTH") or "").strip()
        if length:
            try:
                self._remaining = max(0, int(length))
            except ValueError:
                self._remaining = 0
        elif environ.get("wsgi.input_terminated") or http2:
            self._remaining = None

    def read(self, hint: int | None = None) -> bytes:
        """The next chunk, of at most ``hint`` bytes; ``b""`` once the body is complete.

        ``wsgi.input.read(n)`` blocks until it has ``n`` bytes (or the end): asking for
        just what completes the next message keeps a streaming request lazy.
        """
        remaining = self._remaining
        if remaining == 0 or self._input is None:
            return b""
        size = min(hint, _READ_SIZE) if hint else _READ_SIZE
        if remaining is not None:
            size = min(size, remaining)
        chunk: bytes = self._input.read(size)
        if not chunk:
            self._remaining = 0
            if remaining is not None:
                raise ConnectError(
                    Code.INVALID_ARGUMENT,
                    f"request body ended {remaining} bytes short of its content-length",
                )
            return b""
        if remaining is not None:
            self._remaining = remaining - len(chunk)
        return chunk

    def drain(self, deadline: float | None) -> None:
        """Reads and drops what the handler left unread, before the response ends.

        An HTTP/1.1 client sends its whole request before it reads the response; a
        server that answers and closes with request bytes still unread makes the
        client's connection fail instead of delivering the answer.
        """
        drained = 0
        while drained < _DRAIN_MAX and not _expired(deadline):
            try:
                chunk = self.read()
            except Exception:
                return
            if not chunk:
                return
            drained += len(chunk)


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _check_deadline(deadline: float | None) -> None:
    if _expired(deadline):
        raise _deadline_error()


class _RequestStream:
    """The request messages of a streaming call, read from the body as the handler asks."""

    __slots__ = ("_body", "_call", "_deadline", "_done", "_pending")

    def __init__(self, call: p.ServerCall, body: _Body, deadline: float | None) -> None:
        self._call = call
        self._body = body
        self._deadline = deadline
        self._pending: deque[Any] = deque()
        self._done = False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        while not self._pending:
            if self._done:
                raise StopIteration
            _check_deadline(self._deadline)
            chunk = self._body.read(self._call.read_hint())
            if chunk:
                self._pending.extend(self._call.feed(chunk))
            else:
                self._done = True
                self._pending.extend(self._call.finish())
        return self._pending.popleft()


def _request_argument(route: Route, call: p.ServerCall, body: _Body, deadline: float | None) -> Any:
    """The handler's request argument: the one message, or the lazy request stream."""
    if route.stream_type.streams_requests:
        return _RequestStream(call, body, deadline)
    messages: list[Any] = []
    while chunk := body.read():
        messages.extend(call.feed(chunk))
    messages.extend(call.finish())
    request = p.require_single(messages, what="unary request", code=Code.INVALID_ARGUMENT)
    _check_deadline(deadline)
    return request


# ---------------------------------------------------------------------------
# the response


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def _wsgi_headers(raw: p.RawHeaders) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]


def _whole(start_response: StartResponse, start: p.ResponseStart, body: bytes) -> Iterator[bytes]:
    headers = _wsgi_headers(start.headers)
    if not any(k.lower() == "content-length" for k, _ in headers):
        headers.append(("content-length", str(len(body))))
    start_response(_status_line(start.status), headers)
    # Even an empty body is yielded: some servers (hypercorn's WSGI mode) send the
    # status and headers only with the first chunk.
    yield body


def _serve(
    routes: Mapping[str, Route],
    config: ServerConfig,
    environ: WSGIEnvironment,
    start_response: StartResponse,
) -> Iterator[bytes]:
    headers = _headers(environ)
    http_method = str(environ.get("REQUEST_METHOD") or "GET").upper()
    http_version = _http_version(environ)
    http2 = not http_version.startswith(("0", "1"))
    body = _Body(environ, http2)
    route = routes.get(_path(environ, routes))
    try:
        call = select_call(
            route,
            http_method=http_method,
            content_type=headers.get("content-type"),
            query=str(environ.get("QUERY_STRING") or ""),
            headers=headers,
            config=config,
            http_version=http_version,
            trailers=False,
        )
    except p.ProtocolError as e:
        body.drain(None)
        yield from _whole(start_response, p.ResponseStart(e.status, e.headers), e.body)
        return
    assert route is not None
    refusal = call.request_error
    if refusal is None and route.stream_type is StreamType.BIDI_STREAM and http2:
        refusal = ConnectError(Code.UNIMPLEMENTED, FULL_DUPLEX_MESSAGE)
    if refusal is not None:
        body.drain(None)
        response = call.whole_response(None, refusal, None, None)
        yield from _whole(start_response, response.start, response.body)
        return
    ctx: RequestContext[Any, Any] = RequestContext(
        method=route.method,
        http_method=http_method,
        request_headers=headers,
        timeout_ms=call.timeout_ms,
        server_address=headers.get("host")
        or _address(environ.get("SERVER_NAME"), environ.get("SERVER_PORT")),
        client_address=_address(environ.get("REMOTE_ADDR"), environ.get("REMOTE_PORT")),
    )
    if route.stream_type.streams_responses:
        yield from _streaming_response(route, call, body, ctx, start_response)
    else:
        yield from _single_response(route, call, body, ctx, start_response)


def _single_response(
    route: Route,
    call: p.ServerCall,
    body: _Body,
    ctx: RequestContext[Any, Any],
    start_response: StartResponse,
) -> Iterator[bytes]:
    deadline = ctx._deadline_monotonic()
    result: Any = None
    error: ConnectError | None = None
    try:
        request = _request_argument(route, call, body, deadline)
        _check_deadline(deadline)
        result = route.call(request, ctx)
    except Exception as e:
        error = _as_connect_error(e, route)
    body.drain(deadline)
    if _expired(deadline):
        result, error = None, _deadline_error()
    response = call.whole_response(result, error, ctx._response_headers, ctx._response_trailers)
    yield from _whole(start_response, response.start, response.body)


def _streaming_response(
    route: Route,
    call: p.ServerCall,
    body: _Body,
    ctx: RequestContext[Any, Any],
    start_response: StartResponse,
) -> Iterator[bytes]:
    deadline = ctx._deadline_monotonic()
    started = False
    error: ConnectError | None = None
    responses: Any = None
    try:
        request = _request_argument(route, call, body, deadline)
        _check_deadline(deadline)
        responses = iter(route.call(request, ctx))
        for message in responses:
            _check_deadline(deadline)
            data = call.encode_message(message)
            if not started:
                start = call.start_stream(ctx._response_headers)
                start_response(_status_line(start.status), _wsgi_headers(start.headers))
                started = True
            yield data
            _check_deadline(deadline)
    except Exception as e:
        error = _as_connect_error(e, route)
    finally:
        # Also on GeneratorExit: the server closes us when the client went away.
        close = getattr(responses, "close", None)
        if close is not None:
            try:
                close()
            except Exception as e:
                if error is None:
                    error = _as_connect_error(e, route)
    body.drain(deadline)
    if _expired(deadline):
        error = _deadline_error()
    trailers = ctx._response_trailers
    if not started:
        response = call.whole_response(None, error, ctx._response_headers, trailers)
        yield from _whole(start_response, response.start, response.body)
        return
    tail, http_trailers = call.end_stream(error, trailers)
    assert http_trailers is None, "protocols needing HTTP trailers are refused by select_call"
    yield tail
