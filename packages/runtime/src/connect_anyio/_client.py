"""Client plumbing: protocol + transport for the four kinds of call.

Nothing here knows which protocol is in use; it asks the protocol object
(``ClientCall``) and moves bytes through the transport.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import anyio
from anyio.abc import TaskGroup

from . import _protocol as p
from . import _protocol_connect as connect
from . import _protocol_grpc as grpc
from ._response_metadata import record_both, record_headers, record_trailers
from ._transport import Origin, Response, map_errors
from ._transport._http_client import HTTPClient
from .code import Code
from .codec import Codec, proto_binary_codec
from .compression import BrotliCompression, Compression, GzipCompression, ZstdCompression
from .errors import ConnectError
from .method import MethodInfo
from .protocol import ProtocolType
from .request import Headers, RequestContext

REQ = TypeVar("REQ")
RES = TypeVar("RES")
T = TypeVar("T")

_BUILTIN: dict[str, Callable[[], Compression]] = {
    "gzip": GzipCompression,
    "br": BrotliCompression,
    "zstd": ZstdCompression,
}


def resolve_compression(value: Compression | str | None) -> Compression | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value == "identity":
            return None
        factory = _BUILTIN.get(value)
        if factory is None:
            raise ValueError(f"unknown compression {value!r}: pass a Compression object")
        return factory()
    return value


def parse_address(address: str) -> tuple[Origin, str]:
    parts = urlsplit(address)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"address must be an http:// or https:// URL: {address!r}")
    port = parts.port or (443 if scheme == "https" else 80)
    return Origin(scheme, parts.hostname, port), parts.path.rstrip("/")


def deadline_error() -> ConnectError:
    return ConnectError(Code.DEADLINE_EXCEEDED, "the call's deadline expired")


def deadline_passed(e: ConnectError, deadline: float) -> bool:
    """Once the call's deadline has passed, the call failing is the deadline expiring.

    The server enforces the deadline we sent too, and may answer it a moment before our
    own timer fires when our event loop is busy: by resetting the stream (HTTP/2
    CANCEL), closing the connection, or with an error status of its own making (a
    gRPC-Web server on HTTP/1.1 has answered ``unavailable`` when it found the request
    body closed under it). Whatever the call saw, a caller whose deadline has passed
    gets ``deadline_exceeded``, as if our timer had been first; an error observed
    before the deadline stays as it is.
    """
    return (
        deadline != math.inf
        and e.code is not Code.DEADLINE_EXCEEDED
        and anyio.current_time() >= deadline
    )


@dataclass(slots=True)
class CallState:
    """Per-call links between the public stream object and the innermost call."""

    task_group: TaskGroup | None = None
    inner: StreamCall[Any, Any] | None = None
    started: anyio.Event = field(default_factory=anyio.Event)


class ClientCore:
    """Everything a client needs to make calls, shared by the async and sync clients."""

    def __init__(
        self,
        *,
        address: str,
        protocol: ProtocolType,
        codec: Codec[Any, Any] | None,
        send_compression: Compression | str | None,
        accept_compression: Iterable[Compression | str] | None,
        timeout_ms: int | None,
        read_max_bytes: int | None,
        compress_min_bytes: int | None,
        http_client: HTTPClient | None,
    ) -> None:
        self.origin, self.path_prefix = parse_address(address)
        self.protocol = protocol
        self.codec = codec or proto_binary_codec()
        self.send_compression = resolve_compression(send_compression)
        accepted: list[Compression]
        if accept_compression is None:
            accepted = [GzipCompression(), BrotliCompression(), ZstdCompression()]
        else:
            accepted = [c for c in (resolve_compression(a) for a in accept_compression) if c]
        self.accept = {c.name(): c for c in accepted}
        if self.send_compression is not None:
            # Servers answer in the request's encoding when the accept list names none
            # they support (connect-go and gRPC do): what we send with, we must read.
            self.accept.setdefault(self.send_compression.name(), self.send_compression)
        self.timeout_ms = timeout_ms
        self.read_max_bytes = read_max_bytes
        self.compress_min_bytes = (
            p.DEFAULT_COMPRESS_MIN_BYTES if compress_min_bytes is None else compress_min_bytes
        )
        self.owns_http = http_client is None
        self.http = http_client or HTTPClient()
        self.needs_http2 = protocol is ProtocolType.GRPC
        self.authority = self.origin.authority()
        # What every call of this client passes to its protocol object.
        self._call_factory: Callable[..., p.ClientCall] = connect.client_call
        if protocol is not ProtocolType.CONNECT:
            self._call_factory = functools.partial(
                grpc.client_call, web=protocol is ProtocolType.GRPC_WEB
            )
        self._call_options: dict[str, Any] = {
            "codec": self.codec,
            "path_prefix": self.path_prefix,
            "send_compression": self.send_compression,
            "accept": self.accept,
            "read_max_bytes": self.read_max_bytes,
            "compress_min_bytes": self.compress_min_bytes,
        }

    def new_context(
        self,
        method: MethodInfo[Any, Any],
        headers: Headers | Mapping[str, str] | None,
        timeout_ms: int | None,
        http_method: str = "POST",
    ) -> RequestContext[Any, Any]:
        ctx: RequestContext[Any, Any] = RequestContext(
            method=method,
            http_method=http_method,
            request_headers=Headers(headers) if headers is not None else Headers(),
            timeout_ms=timeout_ms if timeout_ms is not None else self.timeout_ms,
            server_address=self.authority,
        )
        return ctx

    def new_call(self, ctx: RequestContext[Any, Any], *, stream: bool) -> p.ClientCall:
        return self._call_factory(
            stream=stream,
            method=ctx.method(),
            headers=ctx.request_headers(),
            timeout_ms=ctx.timeout_ms(),
            **self._call_options,
        )

    @staticmethod
    def deadline(ctx: RequestContext[Any, Any]) -> float:
        remaining = ctx.timeout_ms()
        if remaining is None:
            return math.inf
        return anyio.current_time() + remaining / 1000.0

    async def unary(self, request: Any, ctx: RequestContext[Any, Any]) -> Any:
        call = self.new_call(ctx, stream=False)
        http_request = call.unary_request(request, ctx._http_method == "GET")
        remaining = ctx.timeout_ms()
        try:
            if remaining is None:
                # No deadline: no cancel scope to pay for.
                status, headers, body, trailers = await self.http.unary(
                    self.origin, http_request, self.needs_http2
                )
            else:
                deadline = anyio.current_time() + remaining / 1000.0
                with anyio.CancelScope(deadline=deadline) as scope:
                    try:
                        status, headers, body, trailers = await self.http.unary(
                            self.origin, http_request, self.needs_http2
                        )
                    except ConnectError as e:
                        if deadline_passed(e, deadline):
                            raise deadline_error() from e
                        raise
                if scope.cancelled_caught:
                    raise deadline_error()
            try:
                call.on_response_start(status, headers)
                messages = call.feed(body)
                messages += call.finish(trailers)
            except ConnectError as e:
                if remaining is not None and deadline_passed(e, deadline):
                    raise deadline_error() from e
                raise
        finally:
            record_both(call.response_headers, call.response_trailers, ctx)
        if len(messages) == 1:
            return messages[0]
        return p.require_single(messages, what="unary response", code=Code.UNIMPLEMENTED)

    def stream(
        self,
        requests: AsyncIterable[Any] | None,
        single: Any,
        ctx: RequestContext[Any, Any],
        state: CallState | None,
    ) -> StreamCall[Any, Any]:
        return StreamCall(self, requests, single, ctx, state)

    async def client_stream(
        self, requests: AsyncIterable[Any], ctx: RequestContext[Any, Any]
    ) -> Any:
        stream = self.stream(requests, None, ctx, None)
        try:
            messages = [m async for m in stream]
        finally:
            await stream.aclose()
        return p.require_single(messages, what="client-stream response", code=Code.UNIMPLEMENTED)

    async def aclose(self) -> None:
        if self.owns_http:
            await self.http.aclose()


async def _encode(call: p.ClientCall, requests: AsyncIterable[Any]) -> AsyncIterator[bytes]:
    """The request stream, encoded. Closed early (the call ended or was cancelled before
    the requests did), it closes the caller's iterator too, so an async generator's
    ``finally`` runs now instead of being left for the garbage collector (which trio
    reports as a ResourceWarning)."""
    iterator = requests.__aiter__()
    try:
        async for message in iterator:
            yield call.encode_message(message)
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


class StreamCall(Generic[REQ, RES]):
    """The innermost stream of a streaming call: starts lazily, yields response messages.

    When the public stream object was entered with ``async with`` and the
    transport is full duplex, requests are sent from a task in that block's task
    group while responses are read; otherwise all requests are sent first.
    """

    def __init__(
        self,
        core: ClientCore,
        requests: AsyncIterable[REQ] | None,
        single: REQ | None,
        ctx: RequestContext[REQ, RES],
        state: CallState | None,
    ) -> None:
        self._core = core
        self._requests = requests
        self._single = single
        self._ctx = ctx
        self._state = state
        self._call = core.new_call(ctx, stream=True)
        self._deadline = core.deadline(ctx)
        self._response: Response | None = None
        self._pending: deque[RES] = deque()
        self._done = False
        self._closed = False
        if state is not None:
            state.inner = self

    @property
    def call(self) -> p.ClientCall:
        return self._call

    async def start(self) -> None:
        if self._response is not None or self._closed:
            return
        call = self._call
        request = call.stream_request()
        body: AsyncIterable[bytes] | None
        if self._requests is not None:
            body = _encode(call, self._requests)
        else:
            request.body = call.encode_message(self._single)
            body = None
        pump = None
        core = self._core
        if self._state is not None and core.http.full_duplex(core.origin, core.needs_http2):
            pump = self._state.task_group
        try:
            response = await self._within_deadline(
                core.http.open(core.origin, request, body, pump, core.needs_http2)
            )
            self._response = response
            call.on_response_start(response.status, response.headers)
        except ConnectError as e:
            await self._fail()
            if deadline_passed(e, self._deadline):
                raise deadline_error() from e
            raise
        except BaseException:
            await self._fail()
            raise
        finally:
            record_headers(call.response_headers, self._ctx)
            if self._state is not None:
                self._state.started.set()

    async def _within_deadline(self, step: Awaitable[T]) -> T:
        """Awaits ``step`` under the call's deadline (no cancel scope without one)."""
        deadline = self._deadline
        if deadline == math.inf:
            return await step
        with anyio.CancelScope(deadline=deadline):
            try:
                return await step
            except ConnectError as e:
                if deadline_passed(e, deadline):
                    raise deadline_error() from e
                raise
        # Only the deadline ends the block without a result.
        raise deadline_error()

    def __aiter__(self) -> StreamCall[REQ, RES]:
        return self

    async def __anext__(self) -> RES:
        if self._pending:
            return self._pending.popleft()
        if self._response is None:
            if self._closed:
                raise StopAsyncIteration
            await self.start()
        response = self._response
        assert response is not None
        call = self._call
        try:
            while not self._pending:
                if self._done:
                    raise StopAsyncIteration
                if self._deadline == math.inf:
                    chunk = await response.receive()
                else:
                    chunk = await self._within_deadline(response.receive())
                if chunk:
                    self._pending.extend(call.feed(chunk))
                else:
                    self._done = True
                    try:
                        self._pending.extend(call.finish(response.trailers()))
                    finally:
                        record_trailers(call.response_trailers, self._ctx)
                    await self._release()
        except StopAsyncIteration:
            raise
        except ConnectError as e:
            await self._fail()
            if deadline_passed(e, self._deadline):
                raise deadline_error() from e
            raise
        except BaseException:
            await self._fail()
            raise
        return self._pending.popleft()

    async def _release(self) -> None:
        response, self._response = self._response, None
        self._closed = True
        if response is not None:
            with anyio.CancelScope(shield=True), map_errors():
                await response.aclose()

    async def _fail(self) -> None:
        self._done = True
        record_trailers(self._call.response_trailers, self._ctx)
        await self._release()

    async def aclose(self) -> None:
        """Stops the call; if the response is not complete, it is cancelled on the wire."""
        self._pending.clear()
        self._done = True
        await self._release()
