"""Interceptors: code that wraps RPCs on the server and on the client.

An interceptor implements one or more of the methods below; each RPC uses the
interceptors whose method matches its stream type, plus every metadata
interceptor. For ``[A, B, C]`` the order is A, B, C on the way in and C, B, A on
the way out: ``A.on_start, B.on_start, C.on_start, handler, C.on_end, B.on_end,
A.on_end``. ``on_end`` runs on errors and cancellation too: when the call was
cancelled (deadline, client gone), it runs shielded from that cancellation, so it
can still await; keep it short.

The context an interceptor gets: on the server, the request headers and the response
headers and trailers to send; on the client, the request headers about to be sent and,
once the response has them, the response headers and trailers it received
(``ctx.response_headers()``, ``ctx.response_trailers()``).
"""

from __future__ import annotations

__all__ = [
    "BidiStreamInterceptor",
    "BidiStreamInterceptorSync",
    "ClientStreamInterceptor",
    "ClientStreamInterceptorSync",
    "Interceptor",
    "InterceptorSync",
    "MetadataInterceptor",
    "MetadataInterceptorSync",
    "ServerStreamInterceptor",
    "ServerStreamInterceptorSync",
    "UnaryInterceptor",
    "UnaryInterceptorSync",
]

import dis
import functools
import inspect
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar, runtime_checkable

import anyio

from .method import StreamType
from .request import RequestContext

T = TypeVar("T")
REQ = TypeVar("REQ")
RES = TypeVar("RES")


@runtime_checkable
class UnaryInterceptor(Protocol):
    """Wraps unary calls."""

    async def intercept_unary(
        self,
        call_next: Callable[[Any, RequestContext[Any, Any]], Awaitable[Any]],
        request: Any,
        ctx: RequestContext[Any, Any],
    ) -> Any:
        """Calls ``call_next`` (possibly with another request) or answers itself."""
        ...


@runtime_checkable
class ClientStreamInterceptor(Protocol):
    """Wraps client-streaming calls."""

    async def intercept_client_stream(
        self,
        call_next: Callable[[AsyncIterator[Any], RequestContext[Any, Any]], Awaitable[Any]],
        request: AsyncIterator[Any],
        ctx: RequestContext[Any, Any],
    ) -> Any: ...


@runtime_checkable
class ServerStreamInterceptor(Protocol):
    """Wraps server-streaming calls; usually an async generator."""

    def intercept_server_stream(
        self,
        call_next: Callable[[Any, RequestContext[Any, Any]], AsyncIterator[Any]],
        request: Any,
        ctx: RequestContext[Any, Any],
    ) -> AsyncIterator[Any]: ...


@runtime_checkable
class BidiStreamInterceptor(Protocol):
    """Wraps bidirectional-streaming calls; usually an async generator."""

    def intercept_bidi_stream(
        self,
        call_next: Callable[[AsyncIterator[Any], RequestContext[Any, Any]], AsyncIterator[Any]],
        request: AsyncIterator[Any],
        ctx: RequestContext[Any, Any],
    ) -> AsyncIterator[Any]: ...


@runtime_checkable
class MetadataInterceptor(Protocol[T]):
    """Sees every call, but only its context (headers, trailers, method), not its messages.

    ``on_start``'s return value is handed to ``on_end``.
    """

    async def on_start(self, ctx: RequestContext[Any, Any]) -> T: ...

    async def on_end(self, token: T, ctx: RequestContext[Any, Any]) -> None: ...


@runtime_checkable
class UnaryInterceptorSync(Protocol):
    def intercept_unary_sync(
        self,
        call_next: Callable[[Any, RequestContext[Any, Any]], Any],
        request: Any,
        ctx: RequestContext[Any, Any],
    ) -> Any: ...


@runtime_checkable
class ClientStreamInterceptorSync(Protocol):
    def intercept_client_stream_sync(
        self,
        call_next: Callable[[Iterator[Any], RequestContext[Any, Any]], Any],
        request: Iterator[Any],
        ctx: RequestContext[Any, Any],
    ) -> Any: ...


@runtime_checkable
class ServerStreamInterceptorSync(Protocol):
    def intercept_server_stream_sync(
        self,
        call_next: Callable[[Any, RequestContext[Any, Any]], Iterator[Any]],
        request: Any,
        ctx: RequestContext[Any, Any],
    ) -> Iterator[Any]: ...


@runtime_checkable
class BidiStreamInterceptorSync(Protocol):
    def intercept_bidi_stream_sync(
        self,
        call_next: Callable[[Iterator[Any], RequestContext[Any, Any]], Iterator[Any]],
        request: Iterator[Any],
        ctx: RequestContext[Any, Any],
    ) -> Iterator[Any]: ...


@runtime_checkable
class MetadataInterceptorSync(Protocol[T]):
    def on_start_sync(self, ctx: RequestContext[Any, Any]) -> T: ...

    def on_end_sync(self, token: T, ctx: RequestContext[Any, Any]) -> None: ...


Interceptor = (
    UnaryInterceptor
    | ClientStreamInterceptor
    | ServerStreamInterceptor
    | BidiStreamInterceptor
    | MetadataInterceptor[Any]
)
"""Any asynchronous interceptor."""

InterceptorSync = (
    UnaryInterceptorSync
    | ClientStreamInterceptorSync
    | ServerStreamInterceptorSync
    | BidiStreamInterceptorSync
    | MetadataInterceptorSync[Any]
)
"""Any synchronous interceptor."""


# ---------------------------------------------------------------------------
# chain composition (private): done once per endpoint, never per call

_ASYNC_METHOD = {
    StreamType.UNARY: "intercept_unary",
    StreamType.CLIENT_STREAM: "intercept_client_stream",
    StreamType.SERVER_STREAM: "intercept_server_stream",
    StreamType.BIDI_STREAM: "intercept_bidi_stream",
}
_SYNC_METHOD = {
    StreamType.UNARY: "intercept_unary_sync",
    StreamType.CLIENT_STREAM: "intercept_client_stream_sync",
    StreamType.SERVER_STREAM: "intercept_server_stream_sync",
    StreamType.BIDI_STREAM: "intercept_bidi_stream_sync",
}


_SUSPENDING_OPS = frozenset(
    {
        "GET_AWAITABLE",
        "GET_AITER",
        "GET_ANEXT",
        "END_ASYNC_FOR",
        "BEFORE_ASYNC_WITH",
        "SETUP_ASYNC_WITH",
        "SEND",
        "YIELD_VALUE",
        "ASYNC_GEN_WRAP",
    }
)
"""Opcodes of ``await``, ``async for`` and ``async with``: the only ways a coroutine suspends."""


def never_waits(fn: Any) -> bool:
    """Whether ``fn`` is an ``async def`` (function or bound method) whose code, nested code
    included, has no suspension point. Its coroutine then runs to the end in one step, so
    nothing (deadline, client gone) can cancel it halfway: the call needs no watcher.
    Anything else (interceptor chains, partials, callable objects) may wait."""
    func = getattr(fn, "__func__", fn)
    code = getattr(func, "__code__", None)
    if not isinstance(code, types.CodeType) or not code.co_flags & inspect.CO_COROUTINE:
        return False
    return not _may_suspend(code)


def _may_suspend(code: types.CodeType) -> bool:
    if any(ins.opname in _SUSPENDING_OPS for ins in dis.get_instructions(code)):
        return True
    return any(_may_suspend(c) for c in code.co_consts if isinstance(c, types.CodeType))


def _metadata_async(interceptor: Any, stream_type: StreamType, call_next: Any) -> Any:
    on_start = interceptor.on_start
    on_end = interceptor.on_end
    # An on_end that never waits cannot be cancelled: it needs no shield.
    shield = None if never_waits(on_end) else True
    if stream_type.streams_responses:

        async def stream(request: Any, ctx: RequestContext[Any, Any]) -> AsyncIterator[Any]:
            token = await on_start(ctx)
            try:
                async for item in call_next(request, ctx):
                    yield item
            finally:
                if shield is None:
                    await on_end(token, ctx)
                else:
                    with anyio.CancelScope(shield=True):
                        await on_end(token, ctx)

        return stream

    async def single(request: Any, ctx: RequestContext[Any, Any]) -> Any:
        token = await on_start(ctx)
        try:
            return await call_next(request, ctx)
        finally:
            if shield is None:
                await on_end(token, ctx)
            else:
                with anyio.CancelScope(shield=True):
                    await on_end(token, ctx)

    return single


def _metadata_sync(interceptor: Any, stream_type: StreamType, call_next: Any) -> Any:
    on_start = interceptor.on_start_sync
    on_end = interceptor.on_end_sync
    if stream_type.streams_responses:

        def stream(request: Any, ctx: RequestContext[Any, Any]) -> Iterator[Any]:
            token = on_start(ctx)
            try:
                yield from call_next(request, ctx)
            finally:
                on_end(token, ctx)

        return stream

    def single(request: Any, ctx: RequestContext[Any, Any]) -> Any:
        token = on_start(ctx)
        try:
            return call_next(request, ctx)
        finally:
            on_end(token, ctx)

    return single


def compose(
    interceptors: Iterable[Any], stream_type: StreamType, innermost: Any, *, sync: bool
) -> Any:
    """Wraps ``innermost`` in the interceptors that apply to ``stream_type``, first outermost."""
    method_name = (_SYNC_METHOD if sync else _ASYNC_METHOD)[stream_type]
    start_name = "on_start_sync" if sync else "on_start"
    wrap_metadata = _metadata_sync if sync else _metadata_async
    call = innermost
    for interceptor in reversed(list(interceptors)):
        method = getattr(interceptor, method_name, None)
        if method is not None:
            call = functools.partial(method, call)
        elif hasattr(interceptor, start_name):
            call = wrap_metadata(interceptor, stream_type, call)
    return call
