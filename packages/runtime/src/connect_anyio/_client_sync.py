"""The synchronous client: the async client driven through an anyio blocking portal.

Nothing of the async plumbing is rewritten here. Each ``ConnectClientSync`` owns
an event loop in a background thread (a portal); a sync call hands its
coroutine to that loop and blocks until it is done. Sync interceptors run in
the calling thread, around the hop into the loop. Request iterators are pulled
in a worker thread, so one that blocks (waiting for a response, say) never
stalls the loop: full-duplex bidi works from plain threads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread

from ._client import ClientCore
from ._response_metadata import ResponseMetadata, _current
from .interceptor import compose
from .method import MethodInfo, StreamType
from .protocol import ProtocolType
from .request import Headers, RequestContext

if TYPE_CHECKING:
    from ._transport._http_client import HTTPClient
    from .client import ResponseStream
    from .codec import Codec
    from .compression import Compression
    from .interceptor import InterceptorSync

REQ = TypeVar("REQ")
RES = TypeVar("RES")
T = TypeVar("T")
_SyncClient = TypeVar("_SyncClient", bound="ConnectClientSync")

_END = object()


def _next_or_end(iterator: Iterator[Any]) -> Any:
    return next(iterator, _END)


async def _pull(requests: Iterable[Any]) -> AsyncIterator[Any]:
    """An async view of a sync iterable; each item is fetched in a worker thread."""
    iterator = iter(requests)
    while True:
        item = await anyio.to_thread.run_sync(_next_or_end, iterator, abandon_on_cancel=True)
        if item is _END:
            return
        yield item


class ResponseStreamSync(Generic[RES]):
    """The responses of a server-streaming or bidirectional call, for sync code.

    Iterate it. Use it as ``with`` to bound the call: leaving the block (or
    ``close()``) before the last message cancels the call on the wire. Inside
    ``with``, a bidirectional call over HTTP/2 is full duplex.
    """

    def __init__(self, client: ConnectClientSync, stream: ResponseStream[RES]) -> None:
        self._client = client
        self._stream = stream
        self._cm: AbstractContextManager[Any] | None = None
        self._done = False

    def __enter__(self) -> ResponseStreamSync[RES]:
        cm = self._client._portal.wrap_async_context_manager(self._stream)
        cm.__enter__()
        self._cm = cm
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        cm, self._cm = self._cm, None
        if cm is not None:
            cm.__exit__(exc_type, exc, tb)
        else:
            self.close()

    def __iter__(self) -> ResponseStreamSync[RES]:
        return self

    def __next__(self) -> RES:
        if self._done:
            raise StopIteration
        try:
            return self._client._run(self._stream.__anext__)
        except StopAsyncIteration:
            self._done = True
            raise StopIteration from None

    def response_headers(self) -> Headers:
        """The response headers, waiting for them if needed."""
        return self._client._run(self._stream.response_headers)

    def response_trailers(self) -> Headers:
        return self._stream.response_trailers()

    def close(self) -> None:
        """Ends the call, cancelling it on the wire if responses are still coming."""
        self._done = True
        if self._cm is None:
            self._client._run(self._stream.aclose)


class ConnectClientSync:
    """A synchronous client; generated ``FooClientSync`` classes derive from it.

    Same options as ``ConnectClient``; interceptors are the ``...Sync`` kinds.
    Safe to share between threads. Close it (``close()`` or ``with``) to stop its
    event-loop thread.
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
        interceptors: Iterable[InterceptorSync] = (),
        http_client: HTTPClient | None = None,
        compress_min_bytes: int | None = None,
        backend: str = "asyncio",
    ) -> None:
        from .client import ConnectClient

        self._portal_cm = anyio.from_thread.start_blocking_portal(backend)
        self._portal = self._portal_cm.__enter__()
        self._closed = False

        def build() -> ConnectClient:
            return ConnectClient(
                address,
                codec=codec,
                protocol=protocol,
                accept_compression=accept_compression,
                send_compression=send_compression,
                timeout_ms=timeout_ms,
                read_max_bytes=read_max_bytes,
                http_client=http_client,
                compress_min_bytes=compress_min_bytes,
            )

        self._client = self._portal.call(build)
        self._core: ClientCore = self._client._core
        chain = list(interceptors)
        self._unary = compose(chain, StreamType.UNARY, self._send_unary, sync=True)
        self._client_stream = compose(
            chain, StreamType.CLIENT_STREAM, self._send_client_stream, sync=True
        )
        self._server_stream = compose(
            chain, StreamType.SERVER_STREAM, self._send_server_stream, sync=True
        )
        self._bidi_stream = compose(
            chain, StreamType.BIDI_STREAM, self._send_bidi_stream, sync=True
        )

    def _run(self, func: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Runs ``func()`` on the loop, with the caller's ResponseMetadata in effect there."""
        meta = _current.get()
        if meta is None:
            result: T = self._portal.call(func)
            return result

        async def with_meta() -> T:
            token = _current.set(meta)
            try:
                return await func()
            finally:
                _current.reset(token)

        return self._portal.call(with_meta)

    # -- innermost calls (what the interceptor chains wrap) ----------------------

    def _send_unary(self, request: Any, ctx: RequestContext[Any, Any]) -> Any:
        return self._run(lambda: self._core.unary(request, ctx))

    def _send_client_stream(self, requests: Iterable[Any], ctx: RequestContext[Any, Any]) -> Any:
        return self._run(lambda: self._core.client_stream(_pull(requests), ctx))

    def _send_server_stream(
        self, request: Any, ctx: RequestContext[Any, Any]
    ) -> ResponseStreamSync[Any]:
        stream = self._client._response_stream(self._client._server_stream, request, ctx)
        return ResponseStreamSync(self, stream)

    def _send_bidi_stream(
        self, requests: Iterable[Any], ctx: RequestContext[Any, Any]
    ) -> ResponseStreamSync[Any]:
        stream = self._client._response_stream(self._client._bidi_stream, _pull(requests), ctx)
        return ResponseStreamSync(self, stream)

    # -- public ------------------------------------------------------------------

    def execute_unary(
        self,
        *,
        request: REQ,
        method: MethodInfo[REQ, RES],
        headers: Headers | Mapping[str, str] | None = None,
        timeout_ms: int | None = None,
        use_get: bool = False,
    ) -> RES:
        ctx = self._core.new_context(method, headers, timeout_ms, "GET" if use_get else "POST")
        result: RES = self._unary(request, ctx)
        return result

    def execute_client_stream(
        self,
        *,
        request: Iterable[REQ],
        method: MethodInfo[REQ, RES],
        headers: Headers | Mapping[str, str] | None = None,
        timeout_ms: int | None = None,
    ) -> RES:
        ctx = self._core.new_context(method, headers, timeout_ms)
        result: RES = self._client_stream(request, ctx)
        return result

    def execute_server_stream(
        self,
        *,
        request: REQ,
        method: MethodInfo[REQ, RES],
        headers: Headers | Mapping[str, str] | None = None,
        timeout_ms: int | None = None,
    ) -> ResponseStreamSync[RES]:
        ctx = self._core.new_context(method, headers, timeout_ms)
        result: ResponseStreamSync[RES] = self._server_stream(request, ctx)
        return result

    def execute_bidi_stream(
        self,
        *,
        request: Iterable[REQ],
        method: MethodInfo[REQ, RES],
        headers: Headers | Mapping[str, str] | None = None,
        timeout_ms: int | None = None,
    ) -> ResponseStreamSync[RES]:
        ctx = self._core.new_context(method, headers, timeout_ms)
        result: ResponseStreamSync[RES] = self._bidi_stream(request, ctx)
        return result

    def close(self) -> None:
        """Closes the connections and stops the event-loop thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._portal.call(self._client.close)
        finally:
            self._portal_cm.__exit__(None, None, None)

    def __enter__(self: _SyncClient) -> _SyncClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = ["ConnectClientSync", "ResponseMetadata", "ResponseStreamSync"]
