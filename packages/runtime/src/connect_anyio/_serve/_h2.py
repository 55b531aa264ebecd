"""HTTP/2 connections of the native server: the ``_http2`` engine in the server role,
and its I/O (a reader task per connection, writes batched)."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream, TaskGroup

from .._http2 import (
    READ_SIZE,
    ErrorCodes,
    H2Connection,
    H2Stream,
    StreamError,
    _reason,
    strip_pseudo,
)
from .._protocol import RawHeaders, ResponseStart
from .._server_core import Disconnected
from ._dispatch import Dispatcher, Request
from ._inline import drive

if TYPE_CHECKING:
    from . import ServerLimits

logger = logging.getLogger("connect_anyio.serve")


class ServerStream(H2Stream):
    """A request stream: the waiting for its request and the sending of its response."""

    __slots__ = ()

    _conn: ServerH2

    async def _wait(self, ready: Callable[[], bool]) -> None:
        conn = self._conn
        while not ready():
            if conn.error is not None:
                if self.error is None:
                    self.error = conn.error
                return
            event = anyio.Event()
            self._events.append(event)
            try:
                await event.wait()
            except BaseException:
                with contextlib.suppress(ValueError):
                    self._events.remove(event)
                raise

    # -- receiving -------------------------------------------------------------

    async def receive_headers(self) -> RawHeaders:
        """The request headers."""
        await self._wait(lambda: self.headers is not None or self.error is not None)
        if self.headers is None:
            assert self.error is not None
            raise self.error
        return self.headers

    async def receive_data(self) -> bytes:
        """The next chunk of the body; ``b""`` once the peer ended the stream."""
        if not self._data and not self.remote_ended and self.error is None:
            await self._wait(
                lambda: bool(self._data) or self.remote_ended or self.error is not None
            )
        if self._data:
            data = self._data.popleft()
            self._taken(len(data))
            await self._conn._flush()
            return data
        if self.error is not None and not self.remote_ended:
            raise self.error
        return b""

    async def wait_reset(self) -> None:
        """Returns once the stream is reset or its connection is lost."""
        await self._wait(lambda: self.error is not None)

    # -- sending ---------------------------------------------------------------

    async def send_headers(
        self, headers: RawHeaders, end_stream: bool = False, body: bytes = b""
    ) -> None:
        """Sends headers; with ``body`` (that ends the stream with ``end_stream``), headers
        and body leave in one write when the flow-control window has room for the body
        (a peer never sees the headers of a whole response without its body)."""
        conn = self._conn
        self._check()
        if self._out:
            self._frame_out()
        if body and len(body) > min(self._window(), conn._peer_max_frame):
            conn._queue_headers(self.id, headers, False)
            await conn._flush()
            await self.send_data(body, end_stream=end_stream)
            return
        conn._queue_headers(self.id, headers, end_stream and not body)
        if body:
            self._queue_data(body, end_stream)
        elif end_stream:
            self._closed_locally()
        await conn._flush()

    async def send_data(self, data: bytes, end_stream: bool = False, flush: bool = True) -> None:
        """Sends ``data``, waiting for flow-control window as needed.

        ``flush=False``: the data may stay queued (when the window has room for it) and
        leave with what follows in as few frames as fit; the caller has the connection
        write it soon (``flush_soon``)."""
        conn = self._conn
        if not (flush or end_stream) and data and self.error is None:
            size = self._out_size + len(data)
            if size <= self._window():
                self._out.append(data)
                self._out_size = size
                conn._unframed[self] = None
                return
        if self._out:
            self._check()
            self._frame_out()
        view = memoryview(data)
        total = len(data)
        pos = 0
        while True:
            self._check()
            remaining = total - pos
            if remaining == 0:
                if end_stream:
                    self._queue_end()
                    await conn._flush()
                return
            window = self._window()
            if window <= 0:
                await conn._flush()  # the peer needs what we sent to open the window again
                self.window_waiting = True
                try:
                    await self._wait(lambda: self._window() > 0 or self.error is not None)
                finally:
                    self.window_waiting = False
                continue
            n = min(remaining, window, conn._peer_max_frame)
            last = pos + n == total
            self._queue_data(view[pos : pos + n], end_stream and last)
            pos += n
            if not last or flush or end_stream:
                await conn._flush()
            if last:
                return

    async def send_trailers(self, trailers: RawHeaders) -> None:
        await self.send_headers(trailers, end_stream=True)

    async def end(self) -> None:
        """Ends our side of the stream."""
        if self.local_closed:
            return
        self._check()
        self._queue_end()
        await self._conn._flush()

    async def reset(self, code: int = ErrorCodes.CANCEL) -> None:
        """Aborts the stream (RST_STREAM); harmless if it already ended."""
        self._conn._reset_now(self, code)
        await self._conn._flush()


class ServerH2(H2Connection):
    """The server role of the engine over a byte stream: reads in the caller's task
    (``receive_bytes`` then ``process``, with writes ``corked`` while it handles a
    batch), writes whatever is queued in one go. A write the socket takes at once
    (``send_nowait``) needs no lock; a write is shielded (a half-written frame would
    break every stream)."""

    stream_class = ServerStream

    def __init__(
        self,
        stream: ByteStream,
        *,
        max_concurrent_streams: int | None = None,
        max_header_list_size: int | None = None,
        on_request: Callable[[ServerStream], None] | None = None,
    ) -> None:
        super().__init__(
            client=False,
            max_concurrent_streams=max_concurrent_streams,
            max_header_list_size=max_header_list_size,
            on_request=on_request,
        )
        self._stream = stream
        self._write_lock = anyio.Lock(fast_acquire=True)
        self._send_nowait: Callable[[bytes], int] | None = getattr(stream, "send_nowait", None)
        self.corked = False
        """While set, writes stay queued (the reader sets it while it handles a batch of
        frames and the calls they complete, then writes once)."""

    async def start(self) -> None:
        """Sends our settings (and the connection window beyond the default)."""
        self._queue_preface()
        await self._flush()

    async def send_goaway(self, code: int = ErrorCodes.NO_ERROR) -> None:
        """Tells the peer to open no more streams; streams in flight finish (a GOAWAY with
        an error code ends the connection)."""
        if self.goaway_sent or self.error is not None:
            return
        self._queue_goaway(code)
        with contextlib.suppress(Exception):
            await self._flush()

    async def receive_bytes(self) -> bytes:
        """The next bytes from the socket; ``b""`` (and the connection lost) at its end."""
        try:
            return await self._stream.receive(READ_SIZE)
        except (
            anyio.EndOfStream,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            OSError,
        ) as e:
            self._lost(f"connection closed: {_reason(e)}")
            return b""

    async def run_writer(self) -> None:
        """Writes queued frames whenever ``flush_soon`` asks, until the connection ends
        (run in the connection's task group)."""
        while self.error is None:
            self._flush_wanted = wanted = anyio.Event()
            await wanted.wait()
            await self._flush()

    async def _flush(self) -> None:
        """Writes whatever is queued, in order. Shielded: a half-written frame would
        break the connection for every stream.

        When no write is in progress and the stream can take bytes without waiting
        (``send_nowait``, our server's plain sockets), this neither waits nor yields."""
        if self.corked:
            return
        if self._unframed:
            for stream in list(self._unframed):
                stream._frame_out()
        out = self._out
        if not out:
            return
        send_nowait = self._send_nowait
        data = b""
        if send_nowait is not None and not self._write_lock.locked():
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            if self._write_failed:
                return
            try:
                sent = send_nowait(data)
            except OSError as e:
                self._write_failed = True
                self._lost(f"connection closed while writing: {_reason(e)}")
                return
            if sent == len(data):
                return
            data = data[sent:]
        with anyio.CancelScope(shield=True):
            async with self._write_lock:
                # (what a fast write left over goes first: the lock was free until now)
                if out:
                    data += b"".join(out)
                    out.clear()
                if not data or self._write_failed:
                    return
                try:
                    await self._stream.send(data)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as e:
                    self._write_failed = True
                    self._lost(f"connection closed while writing: {_reason(e)}")

    async def aclose(self) -> None:
        """Closes the connection (GOAWAY if possible, then the socket). What is queued
        still goes first, such as the GOAWAY of a connection error found in the batch
        whose calls are closing the connection."""
        if self.error is None and not self.goaway_sent:
            self._queue_goaway(ErrorCodes.NO_ERROR)
        self._lost("connection closed")
        self.corked = False
        with anyio.move_on_after(1, shield=True), contextlib.suppress(Exception):
            await self._flush()
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await self._stream.aclose()


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
        self._conn = ServerH2(
            stream,
            max_concurrent_streams=limits.max_concurrent_streams,
            max_header_list_size=limits.max_header_bytes,
            on_request=self._on_request,
        )
        self._task_group: TaskGroup | None = None
        self._active = 0
        self._ready: list[ServerStream] = []
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

    def _on_request(self, stream: ServerStream) -> None:
        self._active += 1
        self.deadline = math.inf
        self._ready.append(stream)

    async def _read(self, ready: list[ServerStream], data: bytes = b"") -> None:
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

    async def _run_inline(self, ready: list[ServerStream]) -> bool:
        """Runs the calls in this task; False once one of them waited (it finished here,
        the others were handed to a new reader)."""
        for index, stream in enumerate(ready):
            handoff = _Handoff(self, ready, index + 1)
            await drive(self._handle(stream), handoff)
            if handoff.done:
                return False
        return True

    def _take_over_reading(self, rest: list[ServerStream]) -> None:
        self._conn.corked = False
        assert self._task_group is not None
        self._task_group.start_soon(self._read, rest)

    async def _handle(self, stream: ServerStream) -> None:
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

    def __init__(self, conn: H2ServerConnection, ready: list[ServerStream], start: int) -> None:
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

    def __init__(self, stream: ServerStream, conn: ServerH2) -> None:
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
