"""ASGI scope/receive/send <-> the server core."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from . import _protocol as p
from ._server_core import Disconnected, Router
from .request import Headers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

logger = logging.getLogger("connect_anyio")

DRAIN_MAX_BYTES = 4 << 20
"""Unread request body an ASGI call discards after answering early (see ``drain``)."""
DRAIN_SECONDS = 1.0
"""How long it waits for that body to end."""


class ASGIServerIO:
    """One HTTP request seen through ASGI's receive and send callables."""

    shield_sends = True
    """Never cancel a send halfway by our own deadline or disconnect watch: a server may
    have encoded the message (HTTP/2 HPACK state included) before it writes it, and a
    send abandoned in between corrupts the connection for every stream on it
    (hypercorn's trio worker: COMPRESSION_ERROR). The call runner sees to that: it
    sends the end of a response where nothing of ours can cancel it, and the messages
    of a stream shielded, for a grace period. ``send`` raising ``OSError`` (ASGI's
    sign of a closed connection; hypercorn's TLS close errors too) is ``Disconnected``.
    """

    __slots__ = (
        "_asgi_receive",
        "_asgi_send",
        "_body_done",
        "_disconnected",
        "_receiving",
        "_trailers",
    )

    def __init__(self, receive: Receive, send: Send) -> None:
        self._asgi_receive = receive
        self._asgi_send = send
        self._body_done = False
        self._disconnected = False
        self._receiving = False
        self._trailers = False

    async def _receive(self) -> Message:
        self._receiving = True
        try:
            return await self._asgi_receive()
        finally:
            self._receiving = False

    async def receive(self) -> bytes:
        receive = self._asgi_receive
        while not self._body_done:
            self._receiving = True
            try:
                message = await receive()
            finally:
                self._receiving = False
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

    async def drain(self) -> None:
        """Reads and discards what is left of the request body, within bounds.

        Called before the last part of the response. A call may answer before it has
        read the whole request (a message over the limit, an error). ASGI can neither
        reset the stream nor linger on close: a server that then closes an HTTP/1.1
        connection with unread bytes makes the kernel send RST, which can destroy the
        answer before the client reads it, and hypercorn's HTTP/2 fails the whole
        connection on DATA for a stream whose response has ended (KeyError in its
        protocol/h2.py, pgjones/hypercorn#329). So the response ends only once the
        request has, or after DRAIN_MAX_BYTES or DRAIN_SECONDS. Skipped while another
        task is reading the body (that task is draining already).
        """
        if self._body_done or self._disconnected or self._receiving:
            return
        left = DRAIN_MAX_BYTES
        with anyio.move_on_after(DRAIN_SECONDS):
            while not self._body_done and not self._disconnected and left > 0:
                message = await self._receive()
                kind = message["type"]
                if kind == "http.request":
                    left -= len(message.get("body", b""))
                    if not message.get("more_body", False):
                        self._body_done = True
                elif kind == "http.disconnect":
                    self._disconnected = True

    async def wait_disconnect(self) -> None:
        if self._disconnected:
            return
        while True:
            message = await self._receive()
            kind = message["type"]
            if kind == "http.disconnect":
                self._disconnected = True
                return
            if kind == "http.request" and not message.get("more_body", False):
                # What is left of a body the handler did not read: discarded.
                self._body_done = True

    async def send_start(self, start: p.ResponseStart, body: bytes, end: bool) -> None:
        self._trailers = trailers = start.trailers
        if end and not (self._body_done or self._disconnected or self._receiving):
            # A whole response (trailers or not): the request ends first. hypercorn's
            # HTTP/2 fails connections that still receive DATA while such a response is
            # going out (GOAWAY with PROTOCOL_ERROR; reproduced without our code in
            # packages/conformance/hypercorn/).
            await self.drain()
        send = self._asgi_send
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": start.status,
                    "headers": start.headers,
                    "trailers": trailers,
                }
            )
            await send({"type": "http.response.body", "body": body, "more_body": not end})
        except OSError:
            self._disconnected = True
            raise Disconnected from None

    async def send_body(self, body: bytes, end: bool) -> None:
        if end and not (self._trailers or self._body_done or self._disconnected or self._receiving):
            await self.drain()
        message = {"type": "http.response.body", "body": body, "more_body": not end}
        try:
            await self._asgi_send(message)
        except OSError:
            self._disconnected = True
            raise Disconnected from None

    async def send_trailers(self, trailers: p.RawHeaders) -> None:
        if not (self._body_done or self._disconnected or self._receiving):
            await self.drain()
        message = {"type": "http.response.trailers", "headers": trailers, "more_trailers": False}
        try:
            await self._asgi_send(message)
        except OSError:
            self._disconnected = True
            raise Disconnected from None


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
    try:  # noqa: SIM105 (cheaper than contextlib.suppress, once per call)
        await router.handle(
            path=path,
            http_method=scope["method"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            io=io,
            server_address=headers._get_lower("host") or _address(scope.get("server")),
            client_address=_address(scope.get("client")),
            http_version=scope.get("http_version", "1.1"),
            trailers="http.response.trailers" in (scope.get("extensions") or ()),
        )
    except Disconnected:
        pass


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
