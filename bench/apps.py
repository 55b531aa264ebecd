"""The applications under test: a minimal hand-written ASGI app and ours.

``minimal_app`` is the ceiling for any ASGI framework on a given server: it
reads the body and answers fixed bytes (Connect unary, Connect server
streaming, or gRPC with trailers) without decoding anything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from connectanyio.bench.v1 import bench_pb2
from connectanyio.bench.v1.bench_connect import BenchServiceASGIApplication

from connect_anyio import RequestContext

from ._common import (
    CONNECT_END_STREAM,
    ENVELOPED_RESPONSE,
    STREAM_COUNT,
    STREAM_MESSAGE,
    UNARY_RESPONSE_BYTES,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_PROTO = [(b"content-type", b"application/proto")]
_CONNECT_STREAM = [(b"content-type", b"application/connect+proto")]
_GRPC = [(b"content-type", b"application/grpc")]
_GRPC_OK = [(b"grpc-status", b"0")]


async def minimal_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A hand-written ASGI app: the least any framework must do per request."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    content_type = b""
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
    if content_type.startswith(b"application/grpc"):
        await send(
            {"type": "http.response.start", "status": 200, "headers": _GRPC, "trailers": True}
        )
        await send({"type": "http.response.body", "body": ENVELOPED_RESPONSE})
        await send({"type": "http.response.trailers", "headers": _GRPC_OK, "more_trailers": False})
    elif content_type.startswith(b"application/connect+"):
        await send({"type": "http.response.start", "status": 200, "headers": _CONNECT_STREAM})
        for _ in range(STREAM_COUNT):
            await send({"type": "http.response.body", "body": STREAM_MESSAGE, "more_body": True})
        await send({"type": "http.response.body", "body": CONNECT_END_STREAM})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": _PROTO})
        await send({"type": "http.response.body", "body": UNARY_RESPONSE_BYTES})


class Bench:
    """BenchService: echoes the payload."""

    async def unary(
        self,
        request: bench_pb2.UnaryRequest,
        ctx: RequestContext[bench_pb2.UnaryRequest, bench_pb2.UnaryResponse],
    ) -> bench_pb2.UnaryResponse:
        return bench_pb2.UnaryResponse(payload=request.payload)

    async def server_stream(
        self,
        request: bench_pb2.ServerStreamRequest,
        ctx: RequestContext[bench_pb2.ServerStreamRequest, bench_pb2.ServerStreamResponse],
    ) -> AsyncIterator[bench_pb2.ServerStreamResponse]:
        for _ in range(request.count):
            yield bench_pb2.ServerStreamResponse(payload=request.payload)


ours_app = BenchServiceASGIApplication(Bench())
"""Our generated application, as a user would deploy it."""
