"""Two Connect services in one Starlette application, callable from browsers (CORS).

Each generated application knows its URL prefix (``app.path``), so Starlette mounts it
there; ``CORSMiddleware`` answers browsers' preflight requests and labels responses with
what Connect, gRPC-Web and gRPC clients send and read. Run it with any ASGI server::

    hypercorn examples.starlette_cors.app:app --bind 127.0.0.1:8080
    python -m connect_anyio serve examples.starlette_cors.app:app --port 8080

(with ``gen`` and the repository root on ``PYTHONPATH``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence

from connectanyio.example.v1.haberdasher_connect import HaberdasherASGIApplication
from connectanyio.testing.v1.testing_connect import EchoService, EchoServiceASGIApplication
from connectanyio.testing.v1.testing_pb2 import EchoRequest, EchoResponse
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount

from connect_anyio import RequestContext
from examples.haberdasher.service import HaberdasherService

ALLOWED_ORIGINS = ["https://app.example.com"]
"""Origins of the web pages allowed to call these services."""

CONNECT_ALLOWED_METHODS = ["GET", "POST"]
"""POST for every protocol; GET for Connect's side-effect-free unary calls."""

CONNECT_ALLOWED_HEADERS = [
    "content-type",
    "connect-protocol-version",
    "connect-timeout-ms",
    "grpc-timeout",
    "x-grpc-web",
    "x-user-agent",
]
"""Request headers Connect and gRPC-Web clients send (plus any of your own metadata)."""

CONNECT_EXPOSED_HEADERS = [
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    # This application's own metadata; Connect unary calls carry trailers as
    # "trailer-" prefixed headers, which browsers must be allowed to read as well.
    "x-hat-maker",
    "x-echo-count",
    "trailer-x-echo-count",
]
"""Response headers a browser client must be allowed to read."""


class Echo(EchoService):
    """Echoes, counting the calls it served (methods not defined here answer unimplemented)."""

    def __init__(self) -> None:
        self.count = 0

    async def echo(
        self, request: EchoRequest, ctx: RequestContext[EchoRequest, EchoResponse]
    ) -> EchoResponse:
        self.count += 1
        ctx.response_headers()["x-echo-count"] = str(self.count)
        ctx.response_trailers()["x-echo-count"] = str(self.count)
        return EchoResponse(text=request.text)

    async def server_stream(
        self, request: EchoRequest, ctx: RequestContext[EchoRequest, EchoResponse]
    ) -> AsyncIterator[EchoResponse]:
        for i in range(request.response_count):
            yield EchoResponse(text=request.text, index=i)


async def echo_service() -> AsyncGenerator[Echo, None]:
    """The Echo service's lifespan: set up before serving, torn down after."""
    service = Echo()
    yield service
    service.count = 0


def build_app(allowed_origins: Sequence[str] = ALLOWED_ORIGINS) -> Starlette:
    """Mounts both services, each at its ``path``, behind CORS for ``allowed_origins``."""
    haberdasher = HaberdasherASGIApplication(HaberdasherService())
    echo = EchoServiceASGIApplication(echo_service())

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # Starlette does not run a mounted application's lifespan: run it here.
        await echo.startup()
        try:
            yield
        finally:
            await echo.shutdown()

    return Starlette(
        routes=[Mount(haberdasher.path, app=haberdasher), Mount(echo.path, app=echo)],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=allowed_origins,
                allow_methods=CONNECT_ALLOWED_METHODS,
                allow_headers=CONNECT_ALLOWED_HEADERS,
                expose_headers=CONNECT_EXPOSED_HEADERS,
                max_age=7200,
            )
        ],
        lifespan=lifespan,
    )


app = build_app()
