"""The HTTP/2 client connection: the ``_http2`` engine in the client role, and its I/O.

No background task: whoever waits for something on a stream reads the socket for
everyone while no one else does (reader election); the others sleep on their own
event, woken when a frame concerns them or when the reader leaves and one of
them must take over. Writes are queued and whoever finds no write in progress
sends everything queued, so the requests of many tasks leave in one write; a
write in progress is never abandoned halfway (shielded), since that would break
every stream.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketAttribute

from .._http2 import (
    DEFAULT_CONNECTION_WINDOW,
    DEFAULT_STREAM_WINDOW,
    READ_SIZE,
    ConnectionLost,
    ErrorCodes,
    H2Connection,
    H2Stream,
    _reason,
)

RawHeaders = list[tuple[bytes, bytes]]

_WRITE_BATCH = 1 << 16
"""A body is written at least every this many bytes."""


class _Readable:
    """Whether a socket has something to read (bytes or its end), without waiting."""

    __slots__ = ("_poll", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._poll: Any = None
        if hasattr(select, "poll"):
            self._poll = select.poll()
            self._poll.register(sock, select.POLLIN)

    def __call__(self) -> bool:
        try:
            if self._poll is not None:
                return bool(self._poll.poll(0))
            readable, _, _ = select.select([self._sock], [], [], 0)
        except (OSError, ValueError):
            return True  # closed or broken: reading says how
        return bool(readable)


class ClientStream(H2Stream):
    """One request stream: our headers and body out, the response in."""

    __slots__ = ()

    _conn: H2ClientConnection

    def _wake(self) -> None:
        events = self._events
        if events:
            self._events = []
            parked = self._conn._parked
            for event in events:
                parked.pop(event, None)
                event.set()

    # -- receiving ---------------------------------------------------------------------

    def _head_ready(self) -> bool:
        return self.headers is not None or self.error is not None

    def _data_ready(self) -> bool:
        return bool(self._data) or self.remote_ended or self.error is not None

    async def receive_headers(self) -> RawHeaders:
        """The final response head (informational ones are skipped); ``status`` is set."""
        if self.headers is None:
            await self._conn._wait(self, self._head_ready)
            if self.headers is None:
                assert self.error is not None
                raise self.error
        return self.headers

    async def receive_data(self) -> bytes:
        """The next chunk of the body; ``b""`` once the peer ended the stream."""
        if not self._data:
            await self._conn._wait(self, self._data_ready)
        if self._data:
            data = self._data.popleft()
            self._taken(len(data))
            if self._conn._out:
                await self._conn._flush(wait=False)  # window updates
            return data
        if self.error is not None and not self.remote_ended:
            raise self.error
        return b""

    async def receive_all(self) -> bytes:
        """The rest of the body (a unary response), consumed as it arrives so that the
        windows open for the rest."""
        conn = self._conn
        parts: list[bytes] = []
        while True:
            if not self._data and not self.remote_ended:
                await conn._wait(self, self._data_ready)
            data = self._data
            if data:
                n = 0
                while data:
                    chunk = data.popleft()
                    n += len(chunk)
                    parts.append(chunk)
                self._taken(n)
                if conn._out and not self.remote_ended:
                    await conn._flush(wait=False)  # window updates
            elif self.remote_ended:
                break
            elif self.error is not None:
                raise self.error
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    # -- sending -----------------------------------------------------------------------

    def _window_ready(self) -> bool:
        return self._window() > 0 or self.error is not None or self._conn.error is not None

    async def send_data(self, data: bytes, end_stream: bool = False) -> None:
        """Sends ``data``, waiting for flow-control window as needed."""
        conn = self._conn
        view = memoryview(data)
        total = len(data)
        pos = 0
        unflushed = 0
        while True:
            self._check()
            if pos == total:
                if end_stream:
                    self._queue_end()
                await conn._flush()
                return
            window = self._window()
            if window <= 0:
                await conn._flush()
                self.window_waiting = True
                try:
                    await conn._wait(self, self._window_ready)
                finally:
                    self.window_waiting = False
                continue
            n = min(total - pos, window, conn._peer_max_frame)
            last = pos + n == total
            self._queue_data(view[pos : pos + n], end_stream and last)
            pos += n
            unflushed += n
            if last:
                await conn._flush()
                return
            if unflushed >= _WRITE_BATCH:
                unflushed = 0
                await conn._flush()

    async def end(self) -> None:
        """Ends our side of the stream."""
        if self.local_closed:
            return
        self._check()
        self._queue_end()
        await self._conn._flush()

    async def reset(self, code: int = ErrorCodes.CANCEL) -> None:
        """Aborts the stream (RST_STREAM); harmless if it already ended."""
        self.reset_nowait(code)
        await self._conn._flush()


class H2ClientConnection(H2Connection):
    """An HTTP/2 client connection over an established byte stream."""

    def __init__(
        self,
        stream: ByteStream,
        *,
        stream_window: int = DEFAULT_STREAM_WINDOW,
        connection_window: int = DEFAULT_CONNECTION_WINDOW,
    ) -> None:
        super().__init__(
            client=True, stream_window=stream_window, connection_window=connection_window
        )
        self._stream = stream
        sock = stream.extra(SocketAttribute.raw_socket, None)
        self._readable = _Readable(sock) if sock is not None else None
        self._writing = False
        self._batch: anyio.Event | None = None
        # Reader election.
        self._reading = False
        self._parked: dict[anyio.Event, None] = {}
        self._capacity_waiters: list[anyio.Event] = []
        self._failure: str | None = None
        """A connection error found in what was read (the connection is lost once its
        GOAWAY is written)."""

    async def start(self) -> None:
        """Sends the preface, our settings and the connection window."""
        self._queue_preface()
        await self._flush()
        # The server's SETTINGS (its stream limit, windows, frame size) before any
        # stream: a burst of calls on a new connection must not exceed a limit the
        # client has not read yet (those streams would be refused, as unavailable).
        while not self._settings_seen and self.error is None:
            await self._read_once()
        if self.error is not None:
            raise self.error

    # -- capacity ----------------------------------------------------------------------

    def _capacity_changed(self) -> None:
        if self._capacity_waiters:
            waiters, self._capacity_waiters = self._capacity_waiters, []
            for event in waiters:
                event.set()

    async def wait_capacity(self) -> None:
        """Waits until a stream may be opened (or the connection stops accepting)."""
        while self.accepting and not self.has_capacity():
            event = anyio.Event()
            self._capacity_waiters.append(event)
            await event.wait()

    def _lost(self, message: str) -> None:
        super()._lost(message)
        # Whoever waits to read must see the error too.
        parked, self._parked = self._parked, {}
        for event in parked:
            event.set()

    # -- opening streams ---------------------------------------------------------------

    async def open_stream(
        self, headers: RawHeaders, end_stream: bool = False, body: bytes = b""
    ) -> tuple[ClientStream, bytes]:
        """Starts a request stream. ``body`` (then ``end_stream``) leaves with the headers in
        one write when the windows admit it; else the stream stays open and the body is
        returned, for the caller to send with ``send_data``."""
        if not self.accepting:
            raise self.error or ConnectionLost(ErrorCodes.REFUSED_STREAM, "connection is closing")
        stream = ClientStream(self, self._next_id)
        body = self._open_stream(stream, headers, end_stream, body)
        try:
            # A whole request need not wait for a write in progress to carry it: the
            # caller waits for the response next, which cannot come before.
            await self._flush(wait=not stream.local_closed)
        except BaseException:
            # Cancelled while our headers wait for a write in progress: they will
            # leave with it, so the stream must be reset after them.
            stream.reset_nowait(ErrorCodes.CANCEL)
            raise
        return stream, body

    # -- reading -----------------------------------------------------------------------

    async def _wait(self, stream: ClientStream, ready: Callable[[], bool]) -> None:
        """Waits until ``ready()``, reading the socket if no one else is."""
        while not ready():
            if self.error is not None:
                if stream.error is None:
                    stream.error = self.error
                return
            if not self._reading:
                self._reading = True
                try:
                    while not ready() and self.error is None:
                        await self._read_once()
                finally:
                    self._reading = False
                    self._hand_off()
                continue
            event = anyio.Event()
            stream._events.append(event)
            self._parked[event] = None
            try:
                await event.wait()
            except BaseException:
                self._parked.pop(event, None)
                with contextlib.suppress(ValueError):
                    stream._events.remove(event)
                # We may have been chosen to take over reading: pass that on.
                self._hand_off_if_unread()
                raise

    def _hand_off_if_unread(self) -> None:
        if not self._reading:
            self._hand_off()

    def _hand_off(self) -> None:
        """The reader left: wake one waiter to take over."""
        if self._parked:
            event = next(iter(self._parked))
            del self._parked[event]
            event.set()

    async def catch_up(self) -> None:
        """Takes in what the server sent while no one was reading (an idle connection):
        a GOAWAY or a close (idle timeout) retires the connection before it is reused."""
        readable = self._readable
        if self._reading or self.error is not None or readable is None:
            return
        self._reading = True
        try:
            while self.error is None and readable():
                # Readable: the bytes (or the end) are there; a TLS record cut in two
                # needs its rest, which is on its way, so the wait is short and bounded.
                with anyio.move_on_after(1.0) as scope:
                    await self._read_once()
                if scope.cancelled_caught:
                    self._lost("connection stalled in the middle of a frame")
        finally:
            self._reading = False
            self._hand_off()

    async def _read_once(self) -> None:
        try:
            data = await self._stream.receive(READ_SIZE)
        except (
            anyio.EndOfStream,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            OSError,
        ) as e:
            self._lost(f"connection closed: {_reason(e)}")
            return
        self.process(data)
        failure = self._failure
        if failure is not None:
            # A connection error: its GOAWAY leaves before the calls learn of it (one of
            # them may close the socket at once).
            with contextlib.suppress(Exception):
                await self._flush()
            self._lost(failure)
        elif self._out:
            await self._flush(wait=False)

    def _fail(self, code: int, message: str) -> None:
        if self.error is None and not self._write_failed:
            self._queue_goaway(code, message)
        self._failure = f"HTTP/2 protocol error: {message}"

    # -- writing -----------------------------------------------------------------------

    async def _flush(self, wait: bool = True) -> None:
        """Writes everything queued. If a write is in progress, what we queued leaves with
        the next one; with ``wait`` we wait for it (backpressure), else we return."""
        if not self._out:
            return
        if self._writing:
            if wait:
                batch = self._batch
                if batch is None:
                    batch = self._batch = anyio.Event()
                await batch.wait()
            return
        self._writing = True
        try:
            with anyio.CancelScope(shield=True):
                while self._out:
                    data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
                    self._out.clear()
                    batch, self._batch = self._batch, None
                    try:
                        if not self._write_failed:
                            await self._stream.send(data)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as e:
                        self._write_failed = True
                        self._lost(f"connection closed while writing: {_reason(e)}")
                    finally:
                        if batch is not None:
                            batch.set()
        finally:
            self._writing = False

    async def aclose(self) -> None:
        """Closes the connection (GOAWAY if possible, then the socket)."""
        if self.error is None and not self.goaway_sent:
            self._queue_goaway(ErrorCodes.NO_ERROR)
            with anyio.move_on_after(1, shield=True), contextlib.suppress(Exception):
                await self._flush()
        self._lost("connection closed")
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await self._stream.aclose()
