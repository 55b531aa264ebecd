"""What every server front end shares: routes, protocol selection and the call runner.

The ASGI adapter and the native server each implement ``ServerIO`` (receive body
bytes, send a response) and hand a request to ``Router.handle``. Everything
about protocols, codecs, deadlines, cancellation and handler invocation happens
here, once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import types
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from anyio.abc import TaskGroup

from . import _protocol as p
from . import _protocol_connect as connect
from . import _protocol_grpc as grpc
from .code import Code
from .codec import Codec, proto_binary_codec, proto_json_codec
from .errors import ConnectError
from .interceptor import compose, never_waits
from .method import IdempotencyLevel, StreamType
from .request import Headers, RequestContext

if TYPE_CHECKING:
    from .compression import Compression
    from .method import MethodInfo

logger = logging.getLogger("connect_anyio")


class Disconnected(Exception):
    """The client went away while the call was running."""


class ServerIO(Protocol):
    """The transport edge of one request: the only thing that does I/O."""

    async def receive(self) -> bytes:
        """The next chunk of the request body; ``b""`` once the body is complete.

        Raises ``Disconnected`` when the client has gone away.
        """
        ...

    async def wait_disconnect(self) -> None:
        """Returns when the client goes away (called once the body is fully read)."""
        ...

    async def send_start(self, start: p.ResponseStart, body: bytes, end: bool) -> None:
        """Sends the status and headers, then ``body``; ``end`` when it is the last body chunk
        (trailers may still follow when ``start.trailers``)."""
        ...

    async def send_body(self, body: bytes, end: bool) -> None:
        """Sends a body chunk; ``end`` when it is the last one."""
        ...

    async def send_trailers(self, trailers: p.RawHeaders) -> None:
        """Sends the trailers (after the last body chunk); ends the response."""
        ...


@dataclass(slots=True)
class Route:
    """One endpoint, with its interceptor chain composed at construction."""

    method: MethodInfo[Any, Any]
    stream_type: StreamType
    call: Any
    """The handler wrapped in the interceptors."""
    never_waits: bool = False
    """``call`` is a coroutine function with no ``await`` (nor ``async for``/``with``) at
    all: a call to it finishes without ever suspending (see ``never_waits``)."""

    @property
    def allows_get(self) -> bool:
        return (
            self.stream_type is StreamType.UNARY
            and self.method.idempotency_level is IdempotencyLevel.NO_SIDE_EFFECTS
        )


_CONNECT_UNARY = 0
_CONNECT_STREAM = 1
_GRPC = 2
_GRPC_WEB = 3
_KIND_CACHE_MAX = 64
"""Distinct content types a server remembers the classification of (clients choose them)."""


@dataclass(slots=True)
class ServerConfig:
    codecs: dict[str, Codec[Any, Any]]
    compressions: dict[str, Compression]
    read_max_bytes: int | None
    compress_min_bytes: int
    options: p.ServerOptions = field(init=False)
    """What every call reads, precomputed."""
    _kinds: dict[str | None, tuple[int, Codec[Any, Any] | None, bytes]] = field(init=False)

    def __post_init__(self) -> None:
        self.options = p.ServerOptions(
            self.compressions, self.read_max_bytes, self.compress_min_bytes
        )
        self._kinds = {}

    @classmethod
    def build(
        cls,
        *,
        codecs: Iterable[Codec[Any, Any]] | None,
        compressions: Iterable[Compression] | None,
        read_max_bytes: int | None,
        compress_min_bytes: int | None,
    ) -> ServerConfig:
        chosen = list(codecs) if codecs is not None else [proto_binary_codec(), proto_json_codec()]
        return cls(
            codecs={c.name(): c for c in chosen},
            compressions=p.compression_table(compressions),
            read_max_bytes=read_max_bytes,
            compress_min_bytes=(
                p.DEFAULT_COMPRESS_MIN_BYTES if compress_min_bytes is None else compress_min_bytes
            ),
        )

    def accept_post(self) -> bytes:
        names = list(self.codecs)
        types = [f"application/{n}" for n in names]
        for prefix in ("application/connect+", "application/grpc+", "application/grpc-web+"):
            types += [prefix + n for n in names]
        return ", ".join(types).encode()

    def classify(self, content_type: str | None) -> tuple[int, Codec[Any, Any] | None, bytes]:
        """``(protocol, codec, content type to answer with)`` for a POST's content type;
        protocol -1 when it is none we know, codec ``None`` when we lack the codec."""
        found = self._kinds.get(content_type)
        if found is None:
            found = self._classify(content_type or "")
            if len(self._kinds) < _KIND_CACHE_MAX:
                self._kinds[content_type] = found
        return found

    def _classify(self, content_type: str) -> tuple[int, Codec[Any, Any] | None, bytes]:
        kind = connect.classify(content_type)
        if kind is not None:
            stream, name = kind
            codec = self.codecs.get(name)
            if stream:
                return _CONNECT_STREAM, codec, (connect.STREAM_PREFIX + name).encode()
            return _CONNECT_UNARY, codec, ("application/" + name).encode()
        grpc_kind = grpc.classify(content_type)
        if grpc_kind is not None:
            web, name = grpc_kind
            ct = content_type.split(";", 1)[0].strip().lower().encode()
            return (_GRPC_WEB if web else _GRPC), self.codecs.get(name), ct
        return -1, None, b""


def build_routes(
    endpoints: Mapping[str, Any], interceptors: Iterable[Any], *, sync: bool
) -> dict[str, Route]:
    chain = list(interceptors)
    routes = {}
    for path, endpoint in endpoints.items():
        call = compose(chain, endpoint.stream_type, endpoint.function, sync=sync)
        routes[path] = Route(
            method=endpoint.method,
            stream_type=endpoint.stream_type,
            call=call,
            never_waits=not sync and endpoint.stream_type is StreamType.UNARY and never_waits(call),
        )
    return routes


_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]


def select_call(
    route: Route | None,
    *,
    http_method: str,
    content_type: str | None,
    query: str,
    headers: Headers,
    config: ServerConfig,
    http_version: str = "1.1",
    trailers: bool = False,
) -> p.ServerCall:
    """The protocol call for a request, or ``ProtocolError`` for a bare HTTP answer.

    ``http_version`` and ``trailers`` (whether the server can send HTTP trailers)
    decide whether gRPC, which needs both HTTP/2 and trailers, can be served.
    """
    if route is None:
        raise p.ProtocolError(404, list(_TEXT), b"404 Not Found\n")
    if http_method == "POST":
        kind, codec, ct = config.classify(content_type)
        if codec is not None:
            if kind == _CONNECT_UNARY:
                # Connect unary only serves unary methods; streams need the streaming type.
                if route.stream_type is StreamType.UNARY:
                    return connect.ConnectUnaryServerCall(
                        route.method, "POST", headers, codec, config.options, ct, query
                    )
            elif kind == _CONNECT_STREAM:
                if route.stream_type is not StreamType.UNARY:
                    return connect.ConnectStreamServerCall(
                        route.method, "POST", headers, codec, config.options, ct
                    )
            else:
                web = kind == _GRPC_WEB
                if not web and (not http_version.startswith("2") or not trailers):
                    raise p.ProtocolError(
                        505,
                        list(_TEXT),
                        b"gRPC needs HTTP/2 with trailers; use gRPC-Web or Connect over HTTP/1.1\n",
                    )
                return grpc.GRPCServerCall(web, ct, route.method, headers, codec, config.options)
        raise p.ProtocolError(415, [*_TEXT, (b"accept-post", config.accept_post())])
    if http_method == "GET":
        if not route.allows_get:
            raise p.ProtocolError(405, [*_TEXT, (b"allow", b"POST")], b"405 Method Not Allowed\n")
        codec_name = connect.get_codec_name(query)
        codec = config.codecs.get(codec_name or "")
        if codec is None:
            raise p.ProtocolError(415, [*_TEXT, (b"accept-post", config.accept_post())])
        return connect.ConnectUnaryServerCall(
            route.method,
            "GET",
            headers,
            codec,
            config.options,
            ("application/" + (codec_name or "")).encode(),
            query,
        )
    allow = b"GET, POST" if route.allows_get else b"POST"
    raise p.ProtocolError(405, [*_TEXT, (b"allow", allow)], b"405 Method Not Allowed\n")


def internal_error(exc: BaseException) -> ConnectError:
    return ConnectError(Code.INTERNAL, "internal error")


def _as_connect_error(exc: Exception, route: Route) -> ConnectError:
    if isinstance(exc, ConnectError):
        return exc
    logger.error("handler for %s raised", route.method.procedure, exc_info=exc)
    return internal_error(exc)


SEND_GRACE_SECONDS = 10.0
"""How long a send in flight may still take once the call has been cancelled (see ``_Call``)."""


class _RequestStream:
    """The request messages of a streaming call, as the handler iterates them.

    A pump task reads the body, decodes it and passes messages through a
    one-slot channel, so reading never runs ahead of the handler by more than
    one message; after the body it keeps watching for the client going away.
    """

    def __init__(self, call: p.ServerCall, io: ServerIO, run: _Call) -> None:
        self._call = call
        self._io = io
        self._run = run
        send, receive = anyio.create_memory_object_stream[Any](1)
        self._send = send
        self._receive = receive
        self.error: ConnectError | None = None

    async def pump(self) -> None:
        call, io, send = self._call, self._io, self._send
        try:
            async with send:
                try:
                    while True:
                        chunk = await io.receive()
                        if not chunk:
                            for msg in call.finish():
                                await send.send(msg)
                            break
                        for msg in call.feed(chunk):
                            await send.send(msg)
                except ConnectError as e:
                    # Set before the channel closes, so the handler sees it at the end.
                    self.error = e
                    return
        except Disconnected:
            self._run.client_gone()
            return
        except anyio.BrokenResourceError:
            # The handler stopped reading requests; keep watching the client.
            pass
        with contextlib.suppress(Disconnected):
            await io.wait_disconnect()
        self._run.client_gone()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            if self.error is not None:
                raise self.error from None
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._receive.aclose()

    def close(self) -> None:
        self._receive.close()


def _close_requests(request: Any) -> None:
    """Closes a streaming call's request channel once the handler is done with it."""
    if isinstance(request, _RequestStream):
        request.close()


async def _read_single(call: p.ServerCall, io: ServerIO) -> Any:
    messages: list[Any] = []
    while True:
        chunk = await io.receive()
        if not chunk:
            messages.extend(call.finish())
            break
        messages.extend(call.feed(chunk))
    # Zero or several messages where one belongs is a cardinality violation: UNIMPLEMENTED,
    # as gRPC's status code guide and connect-go have it.
    return p.require_single(messages, what="unary request", code=Code.UNIMPLEMENTED)


@types.coroutine
def _drive(awaitable: Any, on_suspend: Callable[[], None]) -> Generator[Any, Any, Any]:
    """Awaits ``awaitable`` like ``await`` does, calling ``on_suspend`` when it first suspends.

    A call whose handler (and sends) finish without ever waiting cannot be cancelled
    by anything, so it needs no task watching for the client leaving: the watcher
    starts only once there is something to cancel. The awaitable runs in the
    caller's task, as with ``await``; values and exceptions (cancellation included)
    pass through both ways unchanged.
    """
    it = awaitable.__await__()
    send, throw = it.send, it.throw
    try:
        signal = send(None)
    except StopIteration as e:
        return e.value
    on_suspend()
    while True:
        try:
            value = yield signal
        except GeneratorExit:
            it.close()
            raise
        except BaseException as exc:
            try:
                signal = throw(exc)
            except StopIteration as e:
                return e.value
        else:
            try:
                signal = send(value)
            except StopIteration as e:
                return e.value


async def _send_whole(io: ServerIO, response: p.WholeResponse) -> None:
    if response.trailers_only and response.trailers is not None:
        send_trailers_only = getattr(io, "send_trailers_only", None)
        if send_trailers_only is not None:
            await send_trailers_only(response.start, response.trailers)
            return
    await io.send_start(response.start, response.body, True)
    if response.trailers is not None:
        await io.send_trailers(response.trailers)


_NO_SCOPE = contextlib.nullcontext()


def _deadline_error() -> ConnectError:
    return ConnectError(Code.DEADLINE_EXCEEDED, "the call's deadline expired")


class _Call:
    """One call from its request body to the last byte of its response.

    Everything that can end a call early cancels one scope, the call's task group:
    its deadline, and the client going away (seen by a watcher task, or by the
    request pump of a request stream). The watcher of a call with a single request
    starts only when the handler (or a send) first waits (``_drive``).

    The last part of every response (a whole response, the end of a stream) is sent
    after that scope, where nothing of ours can cancel it. Messages of a response
    stream are sent inside it: a transport that must never see a send abandoned
    halfway (ASGI, ``shield_sends``) gets them inside a scope that is shielded while
    a send is in flight, for at most SEND_GRACE_SECONDS after the cancellation.
    """

    __slots__ = (
        "call",
        "ctx",
        "deadline",
        "gone",
        "io",
        "route",
        "scope",
        "sending",
        "shield",
        "started",
        "tg",
        "watch_scope",
        "watching",
    )

    def __init__(
        self,
        route: Route,
        call: p.ServerCall,
        io: ServerIO,
        ctx: RequestContext[Any, Any],
        deadline: float,
    ) -> None:
        self.route = route
        self.call = call
        self.io = io
        self.ctx = ctx
        self.deadline = deadline
        self.gone = False
        self.watching = False
        self.tg: TaskGroup | None = None
        self.scope: anyio.CancelScope | None = None
        self.shield: anyio.CancelScope | None = None
        self.started = False
        self.sending = False
        self.watch_scope: anyio.CancelScope | None = None

    def start_watching(self) -> None:
        if not self.watching:
            self.watching = True
            if self.sending and self.shield is not None:
                # The send in flight, unshielded so far, must not be cancelled halfway.
                self.shield.shield = True
            assert self.tg is not None
            self.tg.start_soon(self._watch)

    async def _watch(self) -> None:
        with anyio.CancelScope() as self.watch_scope:
            with contextlib.suppress(Disconnected):
                await self.io.wait_disconnect()
            self.client_gone()

    def _stop_watching(self) -> None:
        """Ends the watcher (or the pump): only its own scope when it has started, so the
        call's task, about to leave the task group, is not disturbed."""
        if self.watch_scope is not None:
            self.watch_scope.cancel()
        else:
            assert self.scope is not None
            self.scope.cancel()

    def client_gone(self) -> None:
        """The client left: cancel the call (a send in flight gets its grace period)."""
        self.gone = True
        shield = self.shield
        if shield is not None:
            grace = anyio.current_time() + SEND_GRACE_SECONDS
            if grace < shield.deadline:
                shield.deadline = grace
        assert self.scope is not None
        self.scope.cancel()

    def _start_pump(self, tg: TaskGroup) -> _RequestStream:
        requests = _RequestStream(self.call, self.io, self)
        self.watching = True
        tg.start_soon(requests.pump)
        return requests

    async def run_inline(self) -> None:
        """A unary call whose handler never waits (``Route.never_waits``): no watcher, so no
        task group; a cancel scope only for a deadline, while the body is read."""
        route, call, ctx = self.route, self.call, self.ctx
        result: Any = None
        error: ConnectError | None = None
        finished = False
        with anyio.CancelScope(deadline=self.deadline) if self.deadline != math.inf else _NO_SCOPE:
            try:
                receive = self.io.receive
                messages: list[Any] = []
                while chunk := await receive():
                    messages += call.feed(chunk)
                messages += call.finish()
                request = p.require_single(messages, what="unary request", code=Code.UNIMPLEMENTED)
                result = await route.call(request, ctx)
            except Disconnected:
                return
            except Exception as e:
                error = _as_connect_error(e, route)
            finished = True
        if not finished:
            error = _deadline_error()
        await self._send_single(result, error)

    async def _send_single(self, result: Any, error: ConnectError | None) -> None:
        ctx = self.ctx
        response = self.call.whole_response(
            result, error, ctx._response_headers, ctx._response_trailers
        )
        if response.trailers_only:
            await _send_whole(self.io, response)
            return
        await self.io.send_start(response.start, response.body, True)
        if response.trailers is not None:
            await self.io.send_trailers(response.trailers)

    async def run_single_response(self) -> None:
        """Unary and client-streaming calls."""
        route, call, ctx = self.route, self.call, self.ctx
        result: Any = None
        error: ConnectError | None = None
        finished = False
        async with anyio.create_task_group() as tg:
            self.tg = tg
            self.scope = scope = tg.cancel_scope
            if self.deadline != math.inf:
                scope.deadline = self.deadline
            try:
                if route.stream_type is StreamType.UNARY:
                    receive = self.io.receive
                    messages: list[Any] = []
                    while chunk := await receive():
                        messages += call.feed(chunk)
                    messages += call.finish()
                    request = p.require_single(
                        messages, what="unary request", code=Code.UNIMPLEMENTED
                    )
                    result = await _drive(route.call(request, ctx), self.start_watching)
                else:
                    requests = self._start_pump(tg)
                    try:
                        result = await route.call(requests, ctx)
                    finally:
                        requests.close()
            except Disconnected:
                self.gone = True
            except Exception as e:
                error = _as_connect_error(e, route)
            finished = True
            if self.watching:
                self._stop_watching()
        if self.gone:
            return
        if not finished:
            error = _deadline_error()
        await self._send_single(result, error)

    async def run_streaming_response(self) -> None:
        """Server-streaming and bidirectional calls."""
        route, call, io, ctx = self.route, self.call, self.io, self.ctx
        error: ConnectError | None = None
        finished = False
        async with anyio.create_task_group() as tg:
            self.tg = tg
            self.scope = scope = tg.cancel_scope
            if self.deadline != math.inf:
                scope.deadline = self.deadline
            try:
                if route.stream_type.streams_requests:
                    request: Any = self._start_pump(tg)
                else:
                    request = await _read_single(call, io)
                if getattr(io, "shield_sends", False):
                    with anyio.CancelScope() as shield:
                        if self.deadline != math.inf:
                            shield.deadline = self.deadline + SEND_GRACE_SECONDS
                        self.shield = shield
                        try:
                            await _drive(self._stream(request, shield), self.start_watching)
                        finally:
                            self.shield = None
                    if shield.cancelled_caught:
                        # A send outlived its grace period: the response cannot go on.
                        self.gone = True
                else:
                    await _drive(self._stream(request, None), self.start_watching)
            except Disconnected:
                self.gone = True
            except Exception as e:
                error = _as_connect_error(e, route)
            finished = True
            if self.watching:
                self._stop_watching()
        if self.gone:
            return
        if not finished:
            error = _deadline_error()
        trailers = ctx._response_trailers
        if not self.started:
            await _send_whole(io, call.whole_response(None, error, ctx._response_headers, trailers))
            return
        tail, http_trailers = call.end_stream(error, trailers)
        await io.send_body(tail, True)
        if http_trailers is not None:
            await io.send_trailers(http_trailers)

    async def _stream(self, request: Any, shield: anyio.CancelScope | None) -> None:
        """Runs the handler, sending each message it yields.

        With ``shield``, a send goes out shielded whenever something can cancel the
        call: a deadline, or the watcher (which, started in the middle of a send,
        shields that send itself, see ``start_watching``).
        """
        encode = self.call.encode_message
        send_body = self.io.send_body
        timed = self.deadline != math.inf
        responses = self.route.call(request, self.ctx)
        try:
            async for message in responses:
                data = encode(message)
                if shield is None:
                    pass
                elif self.watching or timed:
                    if self.gone or (timed and anyio.current_time() >= self.deadline):
                        # Cancelled already: this send, too, gets its whole grace period.
                        shield.deadline = anyio.current_time() + SEND_GRACE_SECONDS
                    shield.shield = True
                    try:
                        if self.started:
                            await send_body(data, False)
                        else:
                            await self._send_first(data)
                    finally:
                        shield.shield = False
                    continue
                else:
                    # Nothing can cancel this send unless it waits and the watcher starts.
                    self.sending = True
                    try:
                        if self.started:
                            await send_body(data, False)
                        else:
                            await self._send_first(data)
                    finally:
                        self.sending = False
                        if shield.shield:
                            shield.shield = False
                    continue
                if self.started:
                    await send_body(data, False)
                else:
                    await self._send_first(data)
        finally:
            try:
                aclose = getattr(responses, "aclose", None)
                if aclose is not None:
                    await aclose()
            finally:
                _close_requests(request)

    async def _send_first(self, data: bytes) -> None:
        start = self.call.start_stream(self.ctx._response_headers)
        self.started = True
        await self.io.send_start(start, data, False)


class Router:
    """Path to route, plus server configuration: the protocol-facing half of an application."""

    def __init__(self, routes: dict[str, Route], config: ServerConfig) -> None:
        self.routes = routes
        self.config = config

    async def handle(
        self,
        *,
        path: str,
        http_method: str,
        query: str,
        headers: Headers,
        io: ServerIO,
        server_address: str | None,
        client_address: str | None,
        http_version: str = "1.1",
        trailers: bool = False,
    ) -> None:
        route = self.routes.get(path)
        try:
            call = select_call(
                route,
                http_method=http_method,
                content_type=headers._get_lower("content-type"),
                query=query,
                headers=headers,
                config=self.config,
                http_version=http_version,
                trailers=trailers,
            )
        except p.ProtocolError as e:
            await io.send_start(p.ResponseStart(e.status, e.headers), e.body, True)
            return
        assert route is not None
        ctx: RequestContext[Any, Any] = RequestContext(
            method=route.method,
            http_method=http_method,
            request_headers=headers,
            timeout_ms=call.timeout_ms,
            server_address=server_address,
            client_address=client_address,
        )
        if call.request_error is not None:
            await _send_whole(io, call.whole_response(None, call.request_error, None, None))
            return
        deadline = math.inf
        if call.timeout_ms is not None:
            deadline = anyio.current_time() + call.timeout_ms / 1000.0
        run = _Call(route, call, io, ctx, deadline)
        try:
            if route.never_waits:
                await run.run_inline()
            elif route.stream_type.streams_responses:
                await run.run_streaming_response()
            else:
                await run.run_single_response()
        except Disconnected:
            pass
