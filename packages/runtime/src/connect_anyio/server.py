"""Serving RPCs: endpoints, the ASGI application and the WSGI application."""

from __future__ import annotations

__all__ = ["ConnectASGIApplication", "ConnectWSGIApplication", "Endpoint", "EndpointSync"]

import inspect
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from . import _server_asgi
from ._server_core import Router, ServerConfig, build_routes
from ._server_wsgi import ConnectWSGIApplication
from .method import MethodInfo, StreamType

if TYPE_CHECKING:
    from .codec import Codec
    from .compression import Compression
    from .interceptor import Interceptor
    from .request import RequestContext

REQ = TypeVar("REQ")
RES = TypeVar("RES")
_SVC = TypeVar("_SVC")

logger = logging.getLogger("connect_anyio")


@dataclass(frozen=True, slots=True)
class Endpoint(Generic[REQ, RES]):
    """An async handler bound to its method. Build one with the class methods."""

    method: MethodInfo[REQ, RES]
    stream_type: StreamType
    function: Callable[..., Any]

    @classmethod
    def unary(
        cls,
        *,
        method: MethodInfo[REQ, RES],
        function: Callable[[REQ, RequestContext[REQ, RES]], Awaitable[RES]],
    ) -> Endpoint[REQ, RES]:
        return cls(method, StreamType.UNARY, function)

    @classmethod
    def client_stream(
        cls,
        *,
        method: MethodInfo[REQ, RES],
        function: Callable[[AsyncIterator[REQ], RequestContext[REQ, RES]], Awaitable[RES]],
    ) -> Endpoint[REQ, RES]:
        return cls(method, StreamType.CLIENT_STREAM, function)

    @classmethod
    def server_stream(
        cls,
        *,
        method: MethodInfo[REQ, RES],
        function: Callable[[REQ, RequestContext[REQ, RES]], AsyncIterator[RES]],
    ) -> Endpoint[REQ, RES]:
        return cls(method, StreamType.SERVER_STREAM, function)

    @classmethod
    def bidi_stream(
        cls,
        *,
        method: MethodInfo[REQ, RES],
        function: Callable[[AsyncIterator[REQ], RequestContext[REQ, RES]], AsyncIterator[RES]],
    ) -> Endpoint[REQ, RES]:
        return cls(method, StreamType.BIDI_STREAM, function)


@dataclass(frozen=True, slots=True)
class EndpointSync(Generic[REQ, RES]):
    """A sync handler bound to its method, for the WSGI application."""

    method: MethodInfo[REQ, RES]
    stream_type: StreamType
    function: Callable[..., Any]

    @classmethod
    def unary(
        cls,
        *,
        method: MethodInfo[REQ, RES],
        function: Callable[[REQ, RequestContext[REQ, RES]], RES],
    ) -> EndpointSync[REQ, RES]:
        return cls(method, StreamType.UNARY, function)

    @classmethod
    def client_stream(
        cls,
        *,
        method: MethodInfo[REQ, RES],
        function: Callable[[Iterator[REQ], RequestContext[REQ, RES]], RES],
    ) -> EndpointSync[REQ, RES]:
        return cls(method, StreamType.CLIENT_STREAM, function)

    @classmethod
    def server_stream(
        cls,
        *,
        method: MethodInfo[REQ, RES],
        function: Callable[[REQ, RequestContext[REQ, RES]], Iterator[RES]],
    ) -> EndpointSync[REQ, RES]:
        return cls(method, StreamType.SERVER_STREAM, function)

    @classmethod
    def bidi_stream(
        cls,
        *,
        method: MethodInfo[REQ, RES],
        function: Callable[[Iterator[REQ], RequestContext[REQ, RES]], Iterator[RES]],
    ) -> EndpointSync[REQ, RES]:
        return cls(method, StreamType.BIDI_STREAM, function)


class ConnectASGIApplication(Generic[_SVC]):
    """An ASGI application serving one service over Connect, gRPC and gRPC-Web.

    ``service`` is the implementation, or an async generator that yields it: the
    generator runs up to its ``yield`` on ASGI lifespan startup and finishes on
    shutdown, so it can open and close what the service needs.
    ``endpoints`` maps URL paths to endpoints for a service instance; generated
    code supplies it.
    """

    def __init__(
        self,
        *,
        service: _SVC | AsyncGenerator[_SVC, None],
        endpoints: Callable[[_SVC], Mapping[str, Endpoint[Any, Any]]],
        interceptors: Iterable[Interceptor] = (),
        read_max_bytes: int | None = None,
        compressions: Iterable[Compression] | None = None,
        codecs: Iterable[Codec[Any, Any]] | None = None,
        compress_min_bytes: int | None = None,
    ) -> None:
        self._endpoints = endpoints
        self._interceptors = tuple(interceptors)
        self._config = ServerConfig.build(
            codecs=codecs,
            compressions=compressions,
            read_max_bytes=read_max_bytes,
            compress_min_bytes=compress_min_bytes,
        )
        self._lifespan: AsyncGenerator[_SVC, None] | None = None
        self._router: Router | None = None
        if inspect.isasyncgen(service):
            self._lifespan = cast("AsyncGenerator[_SVC, None]", service)
        else:
            self._router = self._build(cast("_SVC", service))

    def _build(self, service: _SVC) -> Router:
        routes = build_routes(self._endpoints(service), self._interceptors, sync=False)
        return Router(routes, self._config)

    @property
    def router(self) -> Router:
        """The routes and settings behind this application (used by the native server)."""
        if self._router is None:
            from .code import Code
            from .errors import ConnectError

            raise ConnectError(
                Code.UNAVAILABLE,
                "service not started: its lifespan generator runs on ASGI lifespan startup",
            )
        return self._router

    async def startup(self) -> None:
        """Runs the service generator up to its ``yield`` (lifespan startup)."""
        if self._lifespan is not None and self._router is None:
            service = await self._lifespan.__anext__()
            self._router = self._build(service)

    async def shutdown(self) -> None:
        """Finishes the service generator (lifespan shutdown)."""
        if self._lifespan is not None and self._router is not None:
            self._router = None
            try:
                await self._lifespan.__anext__()
            except StopAsyncIteration:
                pass
            else:
                await self._lifespan.aclose()
                raise RuntimeError("the service generator yielded more than once")

    async def __call__(
        self,
        scope: _server_asgi.Scope,
        receive: _server_asgi.Receive,
        send: _server_asgi.Send,
    ) -> None:
        kind = scope["type"]
        if kind == "http":
            router = self._router
            if router is None:
                await _server_asgi.serve_unavailable(send)
                return
            await _server_asgi.serve_http(router, scope, receive, send)
        elif kind == "lifespan":
            await self._run_lifespan(receive, send)

    async def _run_lifespan(self, receive: _server_asgi.Receive, send: _server_asgi.Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except BaseException as e:
                    logger.exception("service startup failed")
                    await send({"type": "lifespan.startup.failed", "message": repr(e)})
                    raise
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                except BaseException as e:
                    logger.exception("service shutdown failed")
                    await send({"type": "lifespan.shutdown.failed", "message": repr(e)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return
