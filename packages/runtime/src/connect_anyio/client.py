"""Calling RPCs: the async client, response streams and response metadata."""

from __future__ import annotations

__all__ = [
    "ConnectClient",
    "ConnectClientSync",
    "HTTPClient",
    "HTTPVersion",
    "ResponseMetadata",
    "ResponseStream",
    "ResponseStreamSync",
    "tls_context",
]

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
from anyio.abc import TaskGroup

from ._client import CallState, ClientCore
from ._response_metadata import ResponseMetadata
from ._transport import HTTPVersion
from ._transport._http_client import HTTPClient, tls_context
from .interceptor import compose
from .method import MethodInfo, StreamType
from .protocol import ProtocolType
from .request import Headers, RequestContext

if TYPE_CHECKING:
    from .codec import Codec
    from .compression import Compression
    from .interceptor import Interceptor

REQ = TypeVar("REQ")
RES = TypeVar("RES")

HeadersArg = Headers | Mapping[str, str] | None
_Client = TypeVar("_Client", bound="ConnectClient")


class ResponseStream(Generic[RES]):
    """The responses of a server-streaming or bidirectional call.

    Iterate it with ``async for``. Use it as ``async with`` to bound the call:
    leaving the block (or ``aclose()``) before the last message cancels the call
    on the wire. Inside ``async with``, a bidirectional call over HTTP/2 is full
    duplex: requests are sent while responses arrive. Iterated without
    ``async with``, all requests are sent before responses are read.
    """

    def __init__(
        self,
        chain: Callable[[Any, RequestContext[Any, RES]], AsyncIterator[RES]],
        request: Any,
        ctx: RequestContext[Any, RES],
    ) -> None:
        self._chain = chain
        self._request = request
        self._ctx = ctx
        self._state = CallState()
        ctx._call_state = self._state
        self._iterator: AsyncIterator[RES] | None = None
        self._task_group: TaskGroup | None = None

    def _ensure(self) -> AsyncIterator[RES]:
        if self._iterator is None:
            self._iterator = self._chain(self._request, self._ctx)
        return self._iterator

    async def __aenter__(self) -> ResponseStream[RES]:
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        self._state.task_group = task_group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task_group, self._task_group = self._task_group, None
        self._state.task_group = None
        try:
            await self.aclose()
        finally:
            if task_group is not None:
                # The block's own exception is not the task group's business: it
                # propagates as it is, not wrapped in an exception group.
                task_group.cancel_scope.cancel()
                await task_group.__aexit__(None, None, None)

    def __aiter__(self) -> ResponseStream[RES]:
        return self

    async def __anext__(self) -> RES:
        return await self._ensure().__anext__()

    async def response_headers(self) -> Headers:
        """The response headers, waiting for them if needed (before any message arrives)."""
        self._ensure()
        inner = self._state.inner
        if inner is None:
            raise RuntimeError(
                "response headers of an intercepted stream are available through ResponseMetadata"
            )
        await inner.start()
        return inner.call.response_headers

    def response_trailers(self) -> Headers:
        """The response trailers, complete once the stream has ended."""
        inner = self._state.inner
        return inner.call.response_trailers if inner is not None else Headers()

    async def aclose(self) -> None:
        """Ends the call, cancelling it on the wire if responses are still coming."""
        iterator = self._iterator
        if iterator is not None:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        inner = self._state.inner
        if inner is not None:
            await inner.aclose()


class ConnectClient:
    """An asynchronous client; generated ``FooClient`` classes derive from it.

    Works under asyncio and trio. ``address`` is the server's base URL
    (``http://host:port`` or ``https://...``, optionally with a path prefix).
    ``send_compression`` and ``accept_compression`` take ``Compression`` objects or
    the names ``gzip``, ``br``, ``zstd``. Messages under ``compress_min_bytes`` are
    sent uncompressed. Pass an ``HTTPClient`` to share connections, configure
    TLS or choose the HTTP version.
    """

    def __init__(
        self,
        address: str,
        *,
        codec: Codec[Any, Any] | None = None,
        protocol: ProtocolType = ProtocolType.CONNECT,
        accept_compression: Iterable[Compression | str] | None = None,
        send_compression: Compression | str | None = "gzip",
        timeout_ms: int | None = None,
        read_max_bytes: int | None = None,
        interceptors: Iterable[Interceptor] = (),
        http_client: HTTPClient | None = None,
        compress_min_bytes: int | None = None,
    ) -> None:
        self._core = ClientCore(
            address=address,
            protocol=protocol,
            codec=codec,
            send_compression=send_compression,
            accept_compression=accept_compression,
            timeout_ms=timeout_ms,
            read_max_bytes=read_max_bytes,
            compress_min_bytes=compress_min_bytes,
            http_client=http_client,
        )
        chain = list(interceptors)
        core = self._core
        self._unary = compose(chain, StreamType.UNARY, core.unary, sync=False)
        self._client_stream = compose(
            chain, StreamType.CLIENT_STREAM, core.client_stream, sync=False
        )
        self._server_stream = compose(
            chain, StreamType.SERVER_STREAM, self._stream_single, sync=False
        )
        self._bidi_stream = compose(chain, StreamType.BIDI_STREAM, self._stream_many, sync=False)

    def _stream_single(self, request: Any, ctx: RequestContext[Any, Any]) -> AsyncIterator[Any]:
        return self._core.stream(None, request, ctx, _state_of(ctx))

    def _stream_many(
        self, requests: AsyncIterable[Any], ctx: RequestContext[Any, Any]
    ) -> AsyncIterator[Any]:
        return self._core.stream(requests, None, ctx, _state_of(ctx))

    async def close(self) -> None:
        """Closes the connections this client created (not a shared ``HTTPClient``)."""
        await self._core.aclose()

    async def __aenter__(self: _Client) -> _Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def execute_unary(
        self,
        *,
        request: REQ,
        method: MethodInfo[REQ, RES],
        headers: HeadersArg = None,
        timeout_ms: int | None = None,
        use_get: bool = False,
    ) -> RES:
        """Makes a unary call; ``use_get`` sends it as a Connect GET request."""
        ctx = self._core.new_context(method, headers, timeout_ms, "GET" if use_get else "POST")
        result: RES = await self._unary(request, ctx)
        return result

    async def execute_client_stream(
        self,
        *,
        request: AsyncIterable[REQ],
        method: MethodInfo[REQ, RES],
        headers: HeadersArg = None,
        timeout_ms: int | None = None,
    ) -> RES:
        """Sends a stream of requests, returns the one response."""
        ctx = self._core.new_context(method, headers, timeout_ms)
        result: RES = await self._client_stream(request, ctx)
        return result

    def execute_server_stream(
        self,
        *,
        request: REQ,
        method: MethodInfo[REQ, RES],
        headers: HeadersArg = None,
        timeout_ms: int | None = None,
    ) -> ResponseStream[RES]:
        """Sends one request; returns the stream of responses."""
        ctx: RequestContext[REQ, RES] = self._core.new_context(method, headers, timeout_ms)
        return self._response_stream(self._server_stream, request, ctx)

    def execute_bidi_stream(
        self,
        *,
        request: AsyncIterable[REQ],
        method: MethodInfo[REQ, RES],
        headers: HeadersArg = None,
        timeout_ms: int | None = None,
    ) -> ResponseStream[RES]:
        """Sends a stream of requests; returns the stream of responses (see ``ResponseStream``)."""
        ctx: RequestContext[REQ, RES] = self._core.new_context(method, headers, timeout_ms)
        return self._response_stream(self._bidi_stream, request, ctx)

    @staticmethod
    def _response_stream(
        chain: Callable[[Any, RequestContext[Any, RES]], AsyncIterator[RES]],
        request: Any,
        ctx: RequestContext[Any, RES],
    ) -> ResponseStream[RES]:
        return ResponseStream(chain, request, ctx)


def _state_of(ctx: RequestContext[Any, Any]) -> CallState | None:
    state = ctx._call_state
    return state if isinstance(state, CallState) else None


from ._client_sync import ConnectClientSync, ResponseStreamSync  # noqa: E402
