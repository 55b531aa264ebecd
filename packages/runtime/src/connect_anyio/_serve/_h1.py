"""HTTP/1.1 connections of the native server, on h11."""

from __future__ import annotations

import contextlib
import http
from typing import TYPE_CHECKING

import anyio
import h11
from anyio.abc import ByteStream

from .._protocol import RawHeaders, ResponseStart
from .._server_core import Disconnected
from ._dispatch import Dispatcher, Request

if TYPE_CHECKING:
    from . import ServerLimits

_READ = 65536
_DRAIN_LIMIT = 1 << 20
"""Unread request body we are willing to skip to keep a connection alive."""


class _ConnectionGone(Exception):
    pass


_REASONS = {status.value: status.phrase.encode() for status in http.HTTPStatus}


def _reason(status: int) -> bytes:
    """The standard reason phrase: some clients reject an empty one."""
    return _REASONS.get(status, b"")


class H1Connection:
    """Serves requests one after another on one connection (keep-alive; pipelined
    requests wait their turn in h11's buffer)."""

    def __init__(
        self,
        stream: ByteStream,
        dispatcher: Dispatcher,
        limits: ServerLimits,
        *,
        scheme: str,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
    ) -> None:
        self._stream = stream
        self._dispatcher = dispatcher
        self._limits = limits
        self._scheme = scheme
        self._client = client
        self._server = server
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        self._eof = False
        self.busy = False
        self._closing = False
        self._idle_scope: anyio.CancelScope | None = None

    def begin_shutdown(self) -> None:
        """Finish the request in progress, then close; close at once if idle."""
        self._closing = True
        if not self.busy and self._idle_scope is not None:
            self._idle_scope.cancel()

    async def run(self, initial: bytes, head_deadline: float | None = None) -> None:
        """Serves requests until the client leaves, a limit is hit or the server shuts down.

        ``head_deadline``: when the first request head must be complete (the header
        timeout counts from the moment the connection was accepted).
        """
        if initial:
            self._h11.receive_data(initial)
        limits = self._limits
        first = True
        while not self._closing:
            if first:
                deadline = head_deadline
                if deadline is None:
                    deadline = anyio.current_time() + limits.header_timeout
                first = False
            else:
                # Between requests: idle_timeout until the next request starts to arrive,
                # then header_timeout for the rest of its head.
                if not self._h11.trailing_data[0] and not self._eof:
                    with anyio.move_on_after(limits.idle_timeout) as scope:
                        self._idle_scope = scope
                        try:
                            await self._read()
                        except _ConnectionGone:
                            return
                    self._idle_scope = None
                    if scope.cancelled_caught or self._closing:
                        return  # idle for too long, or shutting down
                deadline = anyio.current_time() + limits.header_timeout
            event: object = None
            with anyio.CancelScope(deadline=deadline) as scope:
                self._idle_scope = scope
                try:
                    event = await self._next_event()
                except h11.RemoteProtocolError as e:
                    await self._refuse(e.error_status_hint or 400, str(e))
                    return
                except _ConnectionGone:
                    return
            self._idle_scope = None
            if event is None:
                return  # timed out waiting for a request head, or shutting down
            if not isinstance(event, h11.Request):
                return
            if _head_size(event) > limits.max_header_bytes:
                await self._refuse(431, "request header fields too large")
                return
            self.busy = True
            try:
                await self._handle(event)
            except _ConnectionGone:
                return
            finally:
                self.busy = False
            if not await self._finish_cycle():
                return

    async def _read(self) -> None:
        if self._eof:
            raise _ConnectionGone
        try:
            data = await self._stream.receive(_READ)
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            data = b""
        if not data:
            self._eof = True
        self._h11.receive_data(data)

    async def _next_event(self) -> object:
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                await self._read()
                continue
            if isinstance(event, h11.ConnectionClosed):
                raise _ConnectionGone
            return event

    async def _send(self, *events: h11.Event) -> None:
        data = b"".join(self._h11.send(e) or b"" for e in events)
        try:
            await self._stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            raise Disconnected from None

    async def _refuse(self, status: int, message: str) -> None:
        """Answers a request that cannot be served (bad or oversize head); the connection
        closes after it."""
        if self._h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = f"{status} {message}\n".encode()
        with contextlib.suppress(Exception):
            await self._send(
                h11.Response(
                    status_code=status,
                    headers=[
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close"),
                    ],
                    reason=_reason(status),
                ),
                h11.Data(data=body),
                h11.EndOfMessage(),
            )

    async def _handle(self, request: h11.Request) -> None:
        io = H1ServerIO(self, request)
        head = Request(
            method=request.method.decode("ascii"),
            target=request.target,
            raw_headers=list(request.headers),
            http_version=request.http_version.decode("ascii"),
            scheme=self._scheme,
            client=self._client,
            server=self._server,
        )
        try:
            await self._dispatcher.handle(head, io, trailers=False)
        except Disconnected:
            raise _ConnectionGone from None
        if io.state != "done":
            if io.state == "idle":
                await io.send_start(ResponseStart(500, [(b"content-length", b"0")]), b"", True)
            else:
                raise _ConnectionGone  # a response cut short cannot be framed: drop the connection

    async def _finish_cycle(self) -> bool:
        """Drains what is left of the request body and readies the next request."""
        if self._h11.our_state is not h11.DONE:
            return False  # the response said "connection: close", or was cut short
        drained = 0
        while self._h11.their_state is h11.SEND_BODY:
            if drained > _DRAIN_LIMIT:
                return False
            try:
                with anyio.fail_after(self._limits.header_timeout):
                    event = await self._next_event()
            except (TimeoutError, _ConnectionGone, h11.RemoteProtocolError):
                return False
            if isinstance(event, h11.Data):
                drained += len(event.data)
        if self._h11.our_state is not h11.DONE or self._h11.their_state is not h11.DONE:
            return False
        try:
            self._h11.start_next_cycle()
        except h11.LocalProtocolError:
            return False
        return True


def _head_size(request: h11.Request) -> int:
    """The size of a request head as it was on the wire (give or take whitespace)."""
    size = len(request.method) + len(request.target) + 12
    for name, value in request.headers:
        size += len(name) + len(value) + 4
    return size


class H1ServerIO:
    """``ServerIO`` for one HTTP/1.1 request."""

    __slots__ = ("_body_done", "_conn", "_continue", "_request", "_trailers", "state")

    def __init__(self, conn: H1Connection, request: h11.Request) -> None:
        self._conn = conn
        self._request = request
        self._body_done = False
        self._trailers = False
        self._continue = conn._h11.they_are_waiting_for_100_continue
        self.state = "idle"

    async def receive(self) -> bytes:
        conn = self._conn
        if self._continue:
            self._continue = False
            if conn._h11.they_are_waiting_for_100_continue:
                await conn._send(h11.InformationalResponse(status_code=100, headers=[]))
        while not self._body_done:
            try:
                event = await conn._next_event()
            except (_ConnectionGone, h11.RemoteProtocolError):
                raise Disconnected from None
            if isinstance(event, h11.Data):
                if event.data:
                    return bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._body_done = True
        return b""

    async def wait_disconnect(self) -> None:
        conn = self._conn
        buffered = 0
        while not conn._eof:
            if buffered > conn._limits.max_header_bytes:
                # A pipelining client sent plenty already; stop reading ahead.
                await anyio.sleep_forever()
            before = len(conn._h11.trailing_data[0])
            await conn._read()
            buffered += len(conn._h11.trailing_data[0]) - before

    async def send_start(self, start: ResponseStart, body: bytes, end: bool) -> None:
        headers: RawHeaders = list(start.headers)
        self._trailers = start.trailers
        end_message = end and not start.trailers
        if end_message and not any(k == b"content-length" for k, _ in headers):
            headers.append((b"content-length", str(len(body)).encode()))
        if self._conn._closing or self._conn._h11.they_are_waiting_for_100_continue:
            # Shutting down; or answered without asking for the body the client holds
            # back (Expect: 100-continue), which it may or may not send now: close.
            headers.append((b"connection", b"close"))
        events: list[h11.Event] = [
            h11.Response(status_code=start.status, headers=headers, reason=_reason(start.status))
        ]
        if body:
            events.append(h11.Data(data=body))
        if end_message:
            events.append(h11.EndOfMessage())
        self.state = "done" if end_message else "body"
        await self._conn._send(*events)

    async def send_body(self, body: bytes, end: bool) -> None:
        events: list[h11.Event] = []
        if body:
            events.append(h11.Data(data=body))
        if end and not self._trailers:
            events.append(h11.EndOfMessage())
            self.state = "done"
        if events:
            await self._conn._send(*events)

    async def send_trailers(self, trailers: RawHeaders) -> None:
        # Only reached by plain ASGI apps: h11 sends them in the last chunk.
        self.state = "done"
        await self._conn._send(h11.EndOfMessage(headers=trailers))
