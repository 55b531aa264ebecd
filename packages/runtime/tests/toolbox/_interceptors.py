"""Interceptors that write what they see into a shared list of events, async and sync.

``Meta`` / ``MetaSync`` are metadata interceptors (``on_start`` returns a token that
``on_end`` records); ``Around`` / ``AroundSync`` implement all four per-kind methods in
one object; ``LookupCounter`` / ``LookupCounterSync`` count how often their methods are
looked up, which happens only when a chain is composed. ``RecordingService`` is the test
EchoService noting ``handler`` in the same list when a handler starts.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
from _support.service import EchoRequest, EchoResponse, EchoServiceImpl, Observations

from connect_anyio import RequestContext

Ctx = RequestContext[Any, Any]
Events = list[str]


class RecordingService(EchoServiceImpl):
    """The test EchoService, noting ``handler`` when a handler starts."""

    def __init__(self, events: Events, observations: Observations | None = None) -> None:
        super().__init__(observations)
        self.events = events

    async def echo(self, request: EchoRequest, ctx: Any) -> EchoResponse:
        self.events.append("handler")
        return await super().echo(request, ctx)

    async def client_stream(self, request: AsyncIterator[EchoRequest], ctx: Any) -> EchoResponse:
        self.events.append("handler")
        return await super().client_stream(request, ctx)

    async def server_stream(self, request: EchoRequest, ctx: Any) -> AsyncIterator[EchoResponse]:
        self.events.append("handler")
        async for response in super().server_stream(request, ctx):
            yield response

    async def bidi(
        self, request: AsyncIterator[EchoRequest], ctx: Any
    ) -> AsyncIterator[EchoResponse]:
        self.events.append("handler")
        async for response in super().bidi(request, ctx):
            yield response


class Meta:
    """A ``MetadataInterceptor``: ``on_end`` awaits before recording, like real cleanup does
    (so it must not be skipped when the call was cancelled)."""

    def __init__(self, name: str, events: Events, ended: anyio.Event | None = None) -> None:
        self.name = name
        self.events = events
        self.ended = ended

    async def on_start(self, ctx: Ctx) -> str:
        self.events.append(f"{self.name}.on_start")
        return f"token-{self.name}"

    async def on_end(self, token: str, ctx: Ctx) -> None:
        await anyio.lowlevel.checkpoint()
        self.events.append(f"{self.name}.on_end:{token}")
        if self.ended is not None:
            self.ended.set()


class MetaSync:
    """A ``MetadataInterceptorSync``."""

    def __init__(self, name: str, events: Events, ended: threading.Event | None = None) -> None:
        self.name = name
        self.events = events
        self.ended = ended

    def on_start_sync(self, ctx: Ctx) -> str:
        self.events.append(f"{self.name}.on_start")
        return f"token-{self.name}"

    def on_end_sync(self, token: str, ctx: Ctx) -> None:
        self.events.append(f"{self.name}.on_end:{token}")
        if self.ended is not None:
            self.ended.set()


class Around:
    """All four async per-kind interceptors in one object: ``name>`` in, ``<name`` out."""

    def __init__(self, name: str, events: Events) -> None:
        self.name = name
        self.events = events

    async def intercept_unary(
        self, call_next: Callable[[Any, Ctx], Awaitable[Any]], request: Any, ctx: Ctx
    ) -> Any:
        self.events.append(f"{self.name}>")
        try:
            return await call_next(request, ctx)
        finally:
            self.events.append(f"<{self.name}")

    async def intercept_client_stream(
        self,
        call_next: Callable[[AsyncIterator[Any], Ctx], Awaitable[Any]],
        request: AsyncIterator[Any],
        ctx: Ctx,
    ) -> Any:
        self.events.append(f"{self.name}>")
        try:
            return await call_next(request, ctx)
        finally:
            self.events.append(f"<{self.name}")

    async def intercept_server_stream(
        self, call_next: Callable[[Any, Ctx], AsyncIterator[Any]], request: Any, ctx: Ctx
    ) -> AsyncIterator[Any]:
        self.events.append(f"{self.name}>")
        try:
            async for message in call_next(request, ctx):
                yield message
        finally:
            self.events.append(f"<{self.name}")

    async def intercept_bidi_stream(
        self,
        call_next: Callable[[AsyncIterator[Any], Ctx], AsyncIterator[Any]],
        request: AsyncIterator[Any],
        ctx: Ctx,
    ) -> AsyncIterator[Any]:
        self.events.append(f"{self.name}>")
        try:
            async for message in call_next(request, ctx):
                yield message
        finally:
            self.events.append(f"<{self.name}")


class AroundSync:
    """All four sync per-kind interceptors in one object."""

    def __init__(self, name: str, events: Events) -> None:
        self.name = name
        self.events = events

    def intercept_unary_sync(
        self, call_next: Callable[[Any, Ctx], Any], request: Any, ctx: Ctx
    ) -> Any:
        self.events.append(f"{self.name}>")
        try:
            return call_next(request, ctx)
        finally:
            self.events.append(f"<{self.name}")

    def intercept_client_stream_sync(
        self, call_next: Callable[[Iterator[Any], Ctx], Any], request: Iterator[Any], ctx: Ctx
    ) -> Any:
        self.events.append(f"{self.name}>")
        try:
            return call_next(request, ctx)
        finally:
            self.events.append(f"<{self.name}")

    def intercept_server_stream_sync(
        self, call_next: Callable[[Any, Ctx], Iterator[Any]], request: Any, ctx: Ctx
    ) -> Iterator[Any]:
        self.events.append(f"{self.name}>")
        try:
            yield from call_next(request, ctx)
        finally:
            self.events.append(f"<{self.name}")

    def intercept_bidi_stream_sync(
        self,
        call_next: Callable[[Iterator[Any], Ctx], Iterator[Any]],
        request: Iterator[Any],
        ctx: Ctx,
    ) -> Iterator[Any]:
        self.events.append(f"{self.name}>")
        try:
            yield from call_next(request, ctx)
        finally:
            self.events.append(f"<{self.name}")


class LookupCounter(Around):
    """Counts lookups of its interceptor methods: a chain looks each up once, when composed."""

    def __init__(self) -> None:
        super().__init__("counter", [])
        self.lookups: Counter[str] = Counter()

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("intercept_"):
            object.__getattribute__(self, "lookups")[name] += 1
        return object.__getattribute__(self, name)


class LookupCounterSync(AroundSync):
    def __init__(self) -> None:
        super().__init__("counter", [])
        self.lookups: Counter[str] = Counter()

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("intercept_"):
            object.__getattribute__(self, "lookups")[name] += 1
        return object.__getattribute__(self, name)
