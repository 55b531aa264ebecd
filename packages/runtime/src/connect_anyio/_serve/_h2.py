"""HTTP/2 connections of the native server: our ``_http2`` engine in the server role."""

from __future__ import annotations

import contextlib
import logging
import math
from time import monotonic
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream, TaskGroup
from h2.errors import ErrorCodes

from .._http2 import H2Connection, H2Stream, StreamError, strip_pseudo
from .._protocol import RawHeaders, ResponseStart
from .._server_core import Disconnected
from ._dispatch import Dispatcher, Request
from ._inline import drive

if TYPE_CHECKING:
    from . import ServerLimits

logger = logging.getLogger("connect_anyio.serve")


class H2ServerConnection:
    """One reader for the connection, and every call in the connection's task group:
    a stream reset cancels its handler, losing the connection cancels them all.

    The reader runs the calls that a batch of frames starts in its own task, one
    after another, for as long as they do not wait (a unary call usually never
    does): no task per stream, and one write for the whole batch. A call that
    waits keeps the task it started in, and a new task takes over reading (with
    the rest of the batch), so a handler never holds up the connection.
    """

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
        self._dispatcher = dispatcher
        self._limits = limits
        self._scheme = scheme
        self._client = client
        self._server = server
        self._conn = H2Connection(
            stream,
            client=False,
            max_concurrent_streams=limits.max_concurrent_streams,
            max_header_list_size=limits.max_header_bytes,
            on_request=self._on_request,
        )
        self._task_group: TaskGroup | None = None
        self._active = 0
        self._ready: list[H2Stream] = []
        self._shutdown = anyio.Event()
        self.deadline = math.inf
        """When (``time.monotonic``) the connection, idle since, is closed (``expire``);
        infinite while a stream is open."""

    @property
    def busy(self) -> bool:
        return self._active > 0

    def begin_shutdown(self) -> None:
        """GOAWAY: streams in flight finish, new ones are refused."""
        # An event, not start_soon: the task group may not be running yet, or be closing
        # (trio then refuses new tasks: "Nursery is closed to new arrivals").
        self._shutdown.set()

    def expire(self) -> None:
        """Called past ``deadline``: idle for ``idle_timeout``; GOAWAY, then close."""
        if not self.busy:
            self._shutdown.set()

    async def _goaway_on_shutdown(self) -> None:
        await self._shutdown.wait()
        await self._conn.send_goaway()
        if not self.busy:
            await self._conn.aclose()  # nothing in flight to wait for

    async def run(self, initial: bytes) -> None:
        conn = self._conn
        async with anyio.create_task_group() as tg:
            self._task_group = tg
            await conn.start()
            self.deadline = monotonic() + self._limits.idle_timeout
            tg.start_soon(self._goaway_on_shutdown)
            tg.start_soon(conn.run_writer)
            await self._read([], initial)

    def _on_request(self, stream: H2Stream) -> None:
        self._active += 1
        self.deadline = math.inf
        self._ready.append(stream)

    async def _read(self, ready: list[H2Stream], data: bytes = b"") -> None:
        """Reads the connection and runs the calls it starts (see the class), until the
        connection ends or a call waits (then another task reads on)."""
        conn = self._conn
        while True:
            conn.corked = True
            try:
                if data:
                    conn.process(data)
                    data = b""
                    if self._ready:
                        ready += self._ready
                        self._ready = []
                if ready and not await self._run_inline(ready):
                    return  # a call waited: this task finishes it, another one reads
                ready = []
            finally:
                conn.corked = False
            await conn._flush()
            if conn.error is not None:
                break
            data = await conn.receive_bytes()
            if not data:
                break
        # The connection is gone: every call still running is cancelled.
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()

    async def _run_inline(self, ready: list[H2Stream]) -> bool:
        """Runs the calls in this task; False once one of them waited (it finished here,
        the others were handed to a new reader)."""
        for index, stream in enumerate(ready):
            handoff = _Handoff(self, ready, index + 1)
            await drive(self._handle(stream), handoff)
            if handoff.done:
                return False
        return True

    def _take_over_reading(self, rest: list[H2Stream]) -> None:
        self._conn.corked = False
        assert self._task_group is not None
        self._task_group.start_soon(self._read, rest)

    async def _handle(self, stream: H2Stream) -> None:
        conn = self._conn
        io = H2ServerIO(stream, conn)
        try:
            pseudo, regular = strip_pseudo(stream.headers or [])
            authority = pseudo.get(b":authority")
            if authority is not None and not any(k == b"host" for k, _ in regular):
                regular.append((b"host", authority))
            request = Request(
                method=pseudo.get(b":method", b"GET").decode("ascii"),
                target=pseudo.get(b":path", b"/"),
                raw_headers=regular,
                http_version="2",
                scheme=self._scheme,
                client=self._client,
                server=self._server,
            )
            try:
                await self._dispatcher.handle(request, io, trailers=True)
            except Disconnected:
                return
            except Exception:
                logger.exception("request handler failed")
            if not io.done and stream.error is None:
                if not io.started:
                    with contextlib.suppress(StreamError, Disconnected):
                        await io.send_start(ResponseStart(500, []), b"", True)
                else:
                    await stream.reset(ErrorCodes.INTERNAL_ERROR)
            elif not stream.remote_ended and stream.error is None:
                # Answered before the request ended: tell the client to stop sending.
                await stream.reset(ErrorCodes.NO_ERROR)
        finally:
            conn.forget(stream)
            self._active -= 1
            if self._active == 0:
                self.deadline = monotonic() + self._limits.idle_timeout
                if conn.goaway_sent:
                    with anyio.CancelScope(shield=True):
                        await conn.aclose()


class _Handoff:
    """Called when an inline call first waits: a new task reads (and runs the rest)."""

    __slots__ = ("_conn", "_ready", "_start", "done")

    def __init__(self, conn: H2ServerConnection, ready: list[H2Stream], start: int) -> None:
        self._conn = conn
        self._ready = ready
        self._start = start
        self.done = False

    def __call__(self) -> None:
        self.done = True
        self._conn._take_over_reading(self._ready[self._start :])


_YIELD_EVERY = 16
"""A response stream yields to other tasks (and its queued messages are written) after
this many messages, if nothing made it wait before."""


class H2ServerIO:
    """``ServerIO`` for one HTTP/2 stream."""

    __slots__ = ("_conn", "_sent", "_stream", "_trailers", "done", "started")

    def __init__(self, stream: H2Stream, conn: H2Connection) -> None:
        self._stream = stream
        self._conn = conn
        self._trailers = False
        self._sent = 0
        self.started = False
        self.done = False

    async def receive(self) -> bytes:
        try:
            return await self._stream.receive_data()
        except StreamError:
            raise Disconnected from None

    async def wait_disconnect(self) -> None:
        await self._stream.wait_reset()

    async def send_start(self, start: ResponseStart, body: bytes, end: bool) -> None:
        self.started = True
        self._trailers = start.trailers
        headers: RawHeaders = [(b":status", str(start.status).encode()), *start.headers]
        finish = end and not start.trailers
        try:
            await self._stream.send_headers(headers, end_stream=finish, body=body)
        except StreamError:
            raise Disconnected from None
        self.done = finish

    async def send_body(self, body: bytes, end: bool) -> None:
        finish = end and not self._trailers
        try:
            if body or finish:
                # Messages of a stream are written together: the connection's writer
                # takes whatever is queued when this task next yields or waits.
                await self._stream.send_data(body, end_stream=finish, flush=end)
        except StreamError:
            raise Disconnected from None
        self.done = finish
        if not end:
            self._conn.flush_soon()
            self._sent += 1
            if self._sent % _YIELD_EVERY == 0:
                # A stream of sends that never wait would never let anything else run.
                await anyio.lowlevel.checkpoint()

    async def send_trailers(self, trailers: RawHeaders) -> None:
        try:
            await self._stream.send_trailers(trailers)
        except StreamError:
            raise Disconnected from None
        self.done = True

    async def send_trailers_only(self, start: ResponseStart, trailers: RawHeaders) -> None:
        """gRPC's Trailers-Only: one header block that ends the stream."""
        self.started = True
        headers: RawHeaders = [(b":status", str(start.status).encode()), *start.headers, *trailers]
        try:
            await self._stream.send_headers(headers, end_stream=True)
        except StreamError:
            raise Disconnected from None
        self.done = True
