"""A user's code, fully typed: every stream kind served async and sync, and called both ways.

``mypy --strict`` checks this module (``nox -s typecheck``): handlers are checked against the
generated ``Haberdasher`` / ``HaberdasherSync`` protocols (request, response and
``RequestContext[Size, Hat]``), clients return ``Hat``, ``ResponseStream[Hat]`` and
``ResponseStreamSync[Hat]``, and interceptors match their protocols. The test suite also runs
it: ``serve_and_call()`` serves both implementations and calls every method.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
from connectanyio.example.v1.haberdasher_connect import (
    Haberdasher,
    HaberdasherASGIApplication,
    HaberdasherClient,
    HaberdasherClientSync,
    HaberdasherSync,
    HaberdasherWSGIApplication,
)
from connectanyio.example.v1.haberdasher_pb2 import Hat, Size

from connect_anyio import (
    Code,
    ConnectError,
    RequestContext,
    ResponseMetadata,
    ResponseStream,
    ResponseStreamSync,
)
from connect_anyio.interceptor import (
    MetadataInterceptor,
    MetadataInterceptorSync,
    UnaryInterceptor,
)

Ctx = RequestContext[Size, Hat]

# --- the service, async ------------------------------------------------------------


class AsyncHaberdasher:
    """Implements ``Haberdasher`` (the async protocol): one method per stream kind."""

    async def make_hat(self, request: Size, ctx: Ctx) -> Hat:
        if request.inches <= 0:
            raise ConnectError(Code.INVALID_ARGUMENT, "inches must be positive")
        assert ctx.method().name == "MakeHat"
        ctx.response_headers()["x-maker"] = "async"
        return Hat(size=request.inches, color="red")

    async def make_similar_hats(self, request: Size, ctx: Ctx) -> AsyncIterator[Hat]:
        for i in range(3):
            yield Hat(size=request.inches + i, color="blue")

    async def collect_sizes(self, request: AsyncIterator[Size], ctx: Ctx) -> Hat:
        sizes = [size.inches async for size in request]
        return Hat(size=sum(sizes) // max(1, len(sizes)), color="average")

    async def make_various_hats(self, request: AsyncIterator[Size], ctx: Ctx) -> AsyncIterator[Hat]:
        async for size in request:
            yield Hat(size=size.inches, color="various")


# --- the service, sync (WSGI) ------------------------------------------------------


class SyncHaberdasher:
    """Implements ``HaberdasherSync``: the same, as plain functions and generators."""

    def make_hat(self, request: Size, ctx: Ctx) -> Hat:
        ctx.response_headers()["x-maker"] = "sync"
        return Hat(size=request.inches, color="red")

    def make_similar_hats(self, request: Size, ctx: Ctx) -> Iterator[Hat]:
        for i in range(3):
            yield Hat(size=request.inches + i, color="blue")

    def collect_sizes(self, request: Iterator[Size], ctx: Ctx) -> Hat:
        sizes = [size.inches for size in request]
        return Hat(size=sum(sizes) // max(1, len(sizes)), color="average")

    def make_various_hats(self, request: Iterator[Size], ctx: Ctx) -> Iterator[Hat]:
        for size in request:
            yield Hat(size=size.inches, color="various")


# The protocols are structural: these assignments are what mypy checks.
_async_service: Haberdasher = AsyncHaberdasher()
_sync_service: HaberdasherSync = SyncHaberdasher()


# --- interceptors --------------------------------------------------------------------


class Timing:
    """A ``MetadataInterceptor[float]``: ``on_start``'s token, the start time, goes to
    ``on_end``."""

    def __init__(self) -> None:
        self.durations: list[float] = []

    async def on_start(self, ctx: RequestContext[Any, Any]) -> float:
        return time.perf_counter()

    async def on_end(self, token: float, ctx: RequestContext[Any, Any]) -> None:
        self.durations.append(time.perf_counter() - token)


class TimingSync:
    def __init__(self) -> None:
        self.durations: list[float] = []

    def on_start_sync(self, ctx: RequestContext[Any, Any]) -> float:
        return time.perf_counter()

    def on_end_sync(self, token: float, ctx: RequestContext[Any, Any]) -> None:
        self.durations.append(time.perf_counter() - token)


class Auth:
    """A ``UnaryInterceptor`` adding a header to every unary call."""

    async def intercept_unary(
        self,
        call_next: Callable[[Any, RequestContext[Any, Any]], Awaitable[Any]],
        request: Any,
        ctx: RequestContext[Any, Any],
    ) -> Any:
        ctx.request_headers()["authorization"] = "Bearer example"
        return await call_next(request, ctx)


_timing: MetadataInterceptor[float] = Timing()
_timing_sync: MetadataInterceptorSync[float] = TimingSync()
_auth: UnaryInterceptor = Auth()


def asgi_app(timing: Timing | None = None) -> HaberdasherASGIApplication:
    return HaberdasherASGIApplication(AsyncHaberdasher(), interceptors=[timing or Timing(), Auth()])


def wsgi_app() -> HaberdasherWSGIApplication:
    return HaberdasherWSGIApplication(SyncHaberdasher(), interceptors=[TimingSync()])


# --- clients -------------------------------------------------------------------------


async def _sizes(*inches: int) -> AsyncIterator[Size]:
    for i in inches:
        yield Size(inches=i)


async def call_every_kind(client: HaberdasherClient) -> list[Hat]:
    """Each kind of call on the async client, with the types a user's code sees."""
    with ResponseMetadata() as meta:
        hat: Hat = await client.make_hat(Size(inches=10))
    maker: str | None = meta.headers().get("x-maker")
    assert maker is not None
    hats = [hat]

    similar: ResponseStream[Hat] = client.make_similar_hats(Size(inches=5))
    async with similar:
        hats += [h async for h in similar]

    requests: AsyncIterable[Size] = _sizes(4, 6)
    hats.append(await client.collect_sizes(requests))

    various: ResponseStream[Hat] = client.make_various_hats(_sizes(1, 2))
    async with various:
        async for h in various:
            hats.append(h)
    return hats


def call_every_kind_sync(client: HaberdasherClientSync) -> list[Hat]:
    """Each kind of call on the sync client: iterables in, iterators out."""
    hats: list[Hat] = [client.make_hat(Size(inches=10))]
    similar: ResponseStreamSync[Hat] = client.make_similar_hats(Size(inches=5))
    with similar:
        hats += list(similar)
    hats.append(client.collect_sizes([Size(inches=4), Size(inches=6)]))
    with client.make_various_hats(Size(inches=i) for i in (1, 2)) as various:
        hats.extend(various)
    return hats


EXPECTED = [
    (10, "red"),
    (5, "blue"),
    (6, "blue"),
    (7, "blue"),
    (5, "average"),
    (1, "various"),
    (2, "various"),
]
"""``(size, color)`` of what ``call_every_kind`` and ``call_every_kind_sync`` get back."""


async def serve_and_call() -> list[Hat]:
    """Serves the async implementation on the native server (a free port) and calls it."""
    from connect_anyio import serve

    async with anyio.create_task_group() as tg:
        addresses = await tg.start(functools.partial(serve, asgi_app(), port=0))
        host, port = addresses[0]
        async with HaberdasherClient(f"http://{host}:{port}", interceptors=[Timing()]) as client:
            hats = await call_every_kind(client)
        tg.cancel_scope.cancel()
    return hats


if __name__ == "__main__":
    for hat in anyio.run(serve_and_call):
        print(hat.size, hat.color)
