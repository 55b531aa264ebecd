"""ASGI scope/receive/send <-> the server core."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from . import _protocol as p
from ._server_core import Disconnected, Router
from .request import Headers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

logger = logging.getLogger("connect_anyio")


class ASGIServerIO:
    """One HTTP request seen through ASGI's receive and send callables."""

    __slots__ = ("_asgi_send", "_body_done", "_disconnected", "_receive")

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._asgi_send = send
        self._body_done = False
        self._disconnected = False

    async def _send(self, message: Message) -> None:
        try:
            await self._asgi_send(message)
        except OSError:
            # The ASGI spec: ``send`` on a closed connection raises an OSError subclass
            # (hypercorn lets its own TLS close errors out this way too). The client is
            # gone; nothing more can reach it.
            self._disconnected = True
            raise Disconnected from None

    async def receive(self) -> bytes:
        while not self._body_done:
            message = await self._receive()
            kind = message["type"]
            if kind == "http.request":
                body: bytes = message.get("body", b"")
                if not message.get("more_body", False):
                    self._body_done = True
                if body:
                    return body
            elif kind == "http.disconnect":
                self._disconnected = True
                raise Disconnected
        return b""

    async def wait_disconnect(self) -> None:
        if self._disconnected:
            return
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._disconnected = True
                return

    async def send_start(self, start: p.ResponseStart, body: bytes, end: bool) -> None:
        await self._send(
            {
                "type": "http.response.start",
                "status": start.status,
                "headers": start.headers,
                "trailers": start.trailers,
            }
        )
        await self._send({"type": "http.response.body", "body": body, "more_body": not end})

    async def send_body(self, body: bytes, end: bool) -> None:
        await self._send({"type": "http.response.body", "body": body, "more_body": not end})

    async def send_trailers(self, trailers: p.RawHeaders) -> None:
        await self._send(
            {"type": "http.response.trailers", "headers": trailers, "more_trailers": False}
        )


def _address(pair: Any) -> str | None:
    if not pair:
        return None
    host, port = pair[0], pair[1]
    if port is None:
        return str(host)
    if ":" in str(host):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


async def serve_http(router: Router, scope: Scope, receive: Receive, send: Send) -> None:
    headers = Headers._from_wire(scope["headers"])
    path: str = scope["path"]
    if path not in router.routes:
        root = scope.get("root_path") or ""
        if root and (root + path) in router.routes:
            path = root + path
    io = ASGIServerIO(receive, send)
    with contextlib.suppress(Disconnected):
        await router.handle(
            path=path,
            http_method=scope["method"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            io=io,
            server_address=headers.get("host") or _address(scope.get("server")),
            client_address=_address(scope.get("client")),
            http_version=scope.get("http_version", "1.1"),
            trailers="http.response.trailers" in (scope.get("extensions") or {}),
        )


async def serve_unavailable(send: Send) -> None:
    """Answer for requests that arrive before the service's lifespan startup has run."""
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send(
        {
            "type": "http.response.body",
            "body": b"service not started: its lifespan generator runs on ASGI lifespan startup\n",
        }
    )
