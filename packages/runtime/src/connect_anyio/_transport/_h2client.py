"""A lean HTTP/2 connection for the client role.

Why not the shared engine (``connect_anyio._http2``, on ``h2``): measured
in-process, ``h2`` (with ``hyperframe`` and ``hpack``) spent about 85 us of CPU
on the client side of one unary call (its state machines, frame and event
objects, header validation), more than everything else in a call together. A
client needs far less of it: it opens streams and never accepts them, so this
module reads and writes frames itself, with a stateless HPACK encoder and
``hpack``'s decoder (``_hpack``). The server keeps using the engine.

The shape is the engine's: no background task. Whoever waits for something on
a stream reads the socket for everyone while no one else does (reader
election); the others sleep on their own event, woken when a frame concerns
them or when the reader leaves and one of them must take over. Writes are
queued and whoever finds no write in progress sends everything queued, so the
requests of many tasks leave in one write; a write in progress is never
abandoned halfway (shielded), since that would break every stream.

Flow control: 1 MiB per stream and 16 MiB per connection receive windows,
window updates as the application consumes data (``h2``'s rule: after half a
window, or sooner when a window is empty), so a slow reader bounds what the
server can send.
"""

from __future__ import annotations

import contextlib
import select
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import hpack
from anyio.abc import ByteStream, SocketAttribute
from h2.errors import ErrorCodes

from .._http2 import (
    DEFAULT_CONNECTION_WINDOW,
    DEFAULT_MAX_FRAME,
    DEFAULT_STREAM_WINDOW,
    ConnectionLost,
    StreamError,
)
from ._hpack import TABLE_SIZE_ZERO, Decoder, Encoder

RawHeaders = list[tuple[bytes, bytes]]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
READ_SIZE = 1 << 16
MAX_HEADER_LIST_SIZE = 1 << 16
"""The largest decoded header list accepted (``h2``'s default)."""
MAX_HEADER_BLOCK = 1 << 20
"""The largest encoded header block (HEADERS and CONTINUATION frames) buffered."""
MAX_WINDOW = (1 << 31) - 1
_WRITE_BATCH = 1 << 16
"""A body is written at least every this many bytes."""
MAX_STREAM_ID = (1 << 31) - 1

# Frame types (RFC 9113, section 6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 8, 9
# Flags.
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
# Settings.
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS = 1, 2, 3
S_INITIAL_WINDOW_SIZE, S_MAX_FRAME_SIZE = 4, 5

_HEAD = struct.Struct(">BHBBL")
_U32 = struct.Struct(">L")
_SETTING = struct.Struct(">HL")
_GOAWAY = struct.Struct(">LL")

_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _HEAD.pack(n >> 16, n & 0xFFFF, kind, flags, stream_id) + payload


def _code_name(code: int) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return str(code)


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


def _reason(e: BaseException) -> str:
    """The exception's type, and the first message along its causes."""
    cause: BaseException | None = e
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if str(cause):
            prefix = "" if cause is e else f"{type(cause).__name__}: "
            return f"{type(e).__name__}: {prefix}{cause}"
        cause = cause.__cause__ or cause.__context__
    return type(e).__name__


class _ConnectionError(Exception):
    """The peer broke HTTP/2: the connection ends with GOAWAY(code)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _window_increment(window: int, size: int, processed: int) -> int:
    """How much window to give back once ``processed`` bytes were consumed (0: not yet).
    ``h2``'s rule: half a window at a time, or sooner when the window is used up."""
    if processed and ((window == 0 and processed > min(1024, size // 4)) or processed >= size // 2):
        return min(processed, size - window)
    return 0


class ClientStream:
    """One request stream: our headers and body out, the response in."""

    __slots__ = (
        "_conn",
        "_consumed",
        "_counted",
        "_data",
        "_events",
        "_expected_length",
        "_received_length",
        "buffered",
        "error",
        "headers",
        "id",
        "local_closed",
        "receive_window",
        "remote_ended",
        "send_window",
        "status",
        "trailers",
        "window_waiting",
    )

    def __init__(self, conn: H2ClientConnection, stream_id: int) -> None:
        self._conn = conn
        self.id = stream_id
        self.status = 0
        self.headers: RawHeaders | None = None
        self.trailers: RawHeaders | None = None
        self._data: deque[bytes] = deque()
        self.buffered = 0
        """Bytes received and not yet taken by the application (at most the window)."""
        self._consumed = 0
        """Bytes taken by the application and not yet given back as window."""
        self.receive_window = conn._stream_window
        """What the peer may still send on this stream."""
        self.send_window = conn._peer_initial_window
        self.remote_ended = False
        self.local_closed = False
        self.error: StreamError | None = None
        self._events: list[anyio.Event] = []
        self.window_waiting = False
        self._expected_length = -1
        self._received_length = 0
        self._counted = True

    def _wake(self) -> None:
        events = self._events
        if events:
            self._events = []
            parked = self._conn._parked
            for event in events:
                parked.pop(event, None)
                event.set()

    @property
    def closed(self) -> bool:
        """Both sides ended (or the stream failed)."""
        return (self.remote_ended and self.local_closed) or self.error is not None

    # -- receiving ---------------------------------------------------------------------

    def _head_ready(self) -> bool:
        return self.headers is not None or self.error is not None

    def _data_ready(self) -> bool:
        return bool(self._data) or self.remote_ended or self.error is not None

    def _end_ready(self) -> bool:
        return self.remote_ended or self.error is not None

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

    def _taken(self, n: int) -> None:
        """The application consumed ``n`` bytes: give window back when due."""
        self.buffered -= n
        conn = self._conn
        if not self.remote_ended and self.error is None:
            self._consumed += n
            increment = _window_increment(self.receive_window, conn._stream_window, self._consumed)
            if increment:
                self._consumed -= increment
                self.receive_window += increment
                conn._queue(frame(WINDOW_UPDATE, 0, self.id, _U32.pack(increment)))
        conn._taken(n)

    # -- sending -----------------------------------------------------------------------

    def _window_ready(self) -> bool:
        return (
            min(self.send_window, self._conn._send_window) > 0
            or self.error is not None
            or self._conn.error is not None
        )

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
                    conn._queue(frame(DATA, END_STREAM, self.id))
                    self._closed_locally()
                await conn._flush()
                return
            window = min(self.send_window, conn._send_window)
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
            flags = END_STREAM if end_stream and last else 0
            conn._queue(frame(DATA, flags, self.id, bytes(view[pos : pos + n])))
            self.send_window -= n
            conn._send_window -= n
            pos += n
            unflushed += n
            if flags:
                self._closed_locally()
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
        self._conn._queue(frame(DATA, END_STREAM, self.id))
        self._closed_locally()
        await self._conn._flush()

    async def reset(self, code: int = ErrorCodes.CANCEL) -> None:
        """Aborts the stream (RST_STREAM); harmless if it already ended."""
        self.reset_nowait(code)
        await self._conn._flush()

    def reset_nowait(self, code: int = ErrorCodes.CANCEL) -> None:
        """Aborts the stream; the RST_STREAM leaves with the next write."""
        conn = self._conn
        conn._streams.pop(self.id, None)
        if self.error is None:
            self.error = StreamError(code, "stream reset")
        send = not (self.remote_ended and self.local_closed) and conn.error is None
        self._give_back()
        conn._uncount(self)
        self._wake()
        if send:
            conn._queue(frame(RST_STREAM, 0, self.id, _U32.pack(code)))

    def _give_back(self) -> None:
        """Returns the connection window of data that will now never be read."""
        if self._data:
            self._data.clear()
            self._conn._taken(self.buffered)
            self.buffered = 0

    def _closed_locally(self) -> None:
        self.local_closed = True
        if self.remote_ended:
            self._conn._uncount(self)

    def _check(self) -> None:
        if self.error is not None:
            raise self.error


class H2ClientConnection:
    """An HTTP/2 client connection over an established byte stream."""

    def __init__(
        self,
        stream: ByteStream,
        *,
        stream_window: int = DEFAULT_STREAM_WINDOW,
        connection_window: int = DEFAULT_CONNECTION_WINDOW,
    ) -> None:
        self._stream = stream
        sock = stream.extra(SocketAttribute.raw_socket, None)
        self._readable = _Readable(sock) if sock is not None else None
        self._streams: dict[int, ClientStream] = {}
        self._next_id = 1
        self._active = 0
        """Streams that count against the peer's MAX_CONCURRENT_STREAMS."""
        self._encoder = Encoder()
        self._decoder = Decoder(MAX_HEADER_LIST_SIZE)
        self._table_size_update = True
        # Receiving.
        self._inbuf = b""
        self._stream_window = stream_window
        self._connection_window = connection_window
        self._receive_window = connection_window
        self._consumed = 0
        self._continuation: tuple[int, int, list[bytes]] | None = None
        self._settings_seen = False
        # Sending.
        self._peer_initial_window = 65535
        self._peer_max_frame = 16384
        self._peer_max_streams = 1 << 32
        self._send_window = 65535
        self._out: list[bytes] = []
        self._writing = False
        self._batch: anyio.Event | None = None
        self._write_failed = False
        # Reader election.
        self._reading = False
        self._parked: dict[anyio.Event, None] = {}
        self._capacity_waiters: list[anyio.Event] = []
        self.error: StreamError | None = None
        self.goaway_received = False
        self.goaway_sent = False
        self.last_stream_id: int | None = None

    async def start(self) -> None:
        """Sends the preface, our settings and the connection window."""
        settings = b"".join(
            _SETTING.pack(k, v)
            for k, v in (
                (S_ENABLE_PUSH, 0),
                (S_INITIAL_WINDOW_SIZE, self._stream_window),
                (S_MAX_FRAME_SIZE, DEFAULT_MAX_FRAME),
            )
        )
        out = PREFACE + frame(SETTINGS, 0, 0, settings)
        extra = self._connection_window - 65535
        if extra > 0:
            out += frame(WINDOW_UPDATE, 0, 0, _U32.pack(extra))
        self._queue(out)
        await self._flush()
        # The server's SETTINGS (its stream limit, windows, frame size) before any
        # stream: a burst of calls on a new connection must not exceed a limit the
        # client has not read yet (those streams would be refused, as unavailable).
        while not self._settings_seen and self.error is None:
            await self._read_once()
        if self.error is not None:
            raise self.error

    # -- state -------------------------------------------------------------------------

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def accepting(self) -> bool:
        """Whether new streams may be opened on this connection."""
        return (
            self.error is None
            and not self.goaway_received
            and not self.goaway_sent
            and self._next_id <= MAX_STREAM_ID
        )

    @property
    def buffered(self) -> int:
        """Bytes received on all streams and not yet taken by the application."""
        return sum(stream.buffered for stream in self._streams.values())

    def has_capacity(self) -> bool:
        return self.accepting and self._active < self._peer_max_streams

    def _uncount(self, stream: ClientStream) -> None:
        if stream._counted:
            stream._counted = False
            self._active -= 1
            self._capacity_changed()

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

    # -- opening streams ---------------------------------------------------------------

    async def open_stream(
        self, headers: RawHeaders, end_stream: bool = False, body: bytes = b""
    ) -> tuple[ClientStream, bytes]:
        """Starts a request stream. ``body`` (then ``end_stream``) leaves with the headers in
        one write when the windows admit it; else the stream stays open and the body is
        returned, for the caller to send with ``send_data``."""
        if not self.accepting:
            raise self.error or ConnectionLost(ErrorCodes.REFUSED_STREAM, "connection is closing")
        stream_id = self._next_id
        self._next_id += 2
        stream = ClientStream(self, stream_id)
        self._streams[stream_id] = stream
        self._active += 1
        block = self._encoder.encode(headers)
        if self._table_size_update:
            self._table_size_update = False
            block = TABLE_SIZE_ZERO + block
        fits = len(body) <= min(self._send_window, stream.send_window, self._peer_max_frame)
        flags = END_STREAM if end_stream and not body else 0
        max_frame = self._peer_max_frame
        if len(block) <= max_frame:
            out = [frame(HEADERS, flags | END_HEADERS, stream_id, block)]
        else:
            out = [frame(HEADERS, flags, stream_id, block[:max_frame])]
            for pos in range(max_frame, len(block), max_frame):
                last = pos + max_frame >= len(block)
                piece = block[pos : pos + max_frame]
                out.append(frame(CONTINUATION, END_HEADERS if last else 0, stream_id, piece))
        if flags:
            stream.local_closed = True
        if body and fits:
            out.append(frame(DATA, END_STREAM if end_stream else 0, stream_id, body))
            stream.send_window -= len(body)
            self._send_window -= len(body)
            if end_stream:
                stream.local_closed = True
            body = b""
        self._queue(b"".join(out))
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

    def forget(self, stream: ClientStream) -> None:
        """Drops a finished stream from the bookkeeping."""
        if self._streams.get(stream.id) is stream:
            del self._streams[stream.id]
        stream._give_back()
        self._uncount(stream)

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
        try:
            self._receive(data)
        except _ConnectionError as e:
            self._queue(frame(GOAWAY, 0, 0, _GOAWAY.pack(0, e.code)))
            self.goaway_sent = True
            with contextlib.suppress(Exception):
                await self._flush()
            self._lost(f"HTTP/2 protocol error: {e}")
            return
        if self._out:
            await self._flush(wait=False)

    def _receive(self, data: bytes) -> None:
        """Processes the complete frames received so far."""
        buf = self._inbuf + data if self._inbuf else data
        end_of_buf = len(buf)
        pos = 0
        unpack = _HEAD.unpack_from
        while end_of_buf - pos >= 9:
            high, low, kind, flags, stream_id = unpack(buf, pos)
            length = (high << 16) | low
            if length > DEFAULT_MAX_FRAME:
                raise _ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, f"frame of {length} bytes")
            end = pos + 9 + length
            if end > end_of_buf:
                break
            payload = buf[pos + 9 : end]
            pos = end
            stream_id &= 0x7FFFFFFF
            if self._continuation is not None and kind != CONTINUATION:
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "expected CONTINUATION")
            if not self._settings_seen:
                if kind != SETTINGS or flags & ACK:
                    raise _ConnectionError(
                        ErrorCodes.PROTOCOL_ERROR, "the server's first frame is not SETTINGS"
                    )
                self._settings_seen = True
            if kind == DATA:
                self._on_data(flags, stream_id, payload)
            elif kind == HEADERS:
                self._on_headers(flags, stream_id, payload)
            else:
                self._on_other(kind, flags, stream_id, payload)
            if self.error is not None:
                return
        self._inbuf = buf[pos:] if pos < end_of_buf else b""

    def _check_stream_id(self, stream_id: int) -> None:
        if stream_id == 0 or not stream_id & 1 or stream_id >= self._next_id:
            raise _ConnectionError(
                ErrorCodes.PROTOCOL_ERROR,
                f"frame on a stream the client never opened ({stream_id})",
            )

    def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
        self._check_stream_id(stream_id)
        flow = len(payload)
        data = payload
        if flags & PADDED:
            if not payload or payload[0] >= flow:
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "bad DATA padding")
            data = payload[1 : flow - payload[0]]
        self._receive_window -= flow
        if self._receive_window < 0:
            raise _ConnectionError(ErrorCodes.FLOW_CONTROL_ERROR, "connection window exceeded")
        stream = self._streams.get(stream_id)
        if stream is None or stream.error is not None:
            self._taken(flow)  # nobody will read it: hand the window back now
            return
        if stream.remote_ended or stream.headers is None:
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "DATA outside a response body")
        stream.receive_window -= flow
        if stream.receive_window < 0:
            raise _ConnectionError(ErrorCodes.FLOW_CONTROL_ERROR, "stream window exceeded")
        if flow > len(data):
            # Padding is consumed at once.
            self._taken(flow - len(data))
            stream._consumed += flow - len(data)
        if data:
            stream._data.append(data)
            stream.buffered += len(data)
            stream._received_length += len(data)
        if flags & END_STREAM:
            self._remote_end(stream)
        stream._wake()

    def _remote_end(self, stream: ClientStream) -> None:
        if 0 <= stream._expected_length != stream._received_length:
            raise _ConnectionError(
                ErrorCodes.PROTOCOL_ERROR,
                f"content-length {stream._expected_length}, body of {stream._received_length}",
            )
        stream.remote_ended = True
        if stream.local_closed:
            self._uncount(stream)

    def _on_headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        self._check_stream_id(stream_id)
        start = 0
        stop = len(payload)
        if flags & PADDED:
            if not payload:
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "bad HEADERS padding")
            start = 1
            stop -= payload[0]
        if flags & PRIORITY_FLAG:
            start += 5
        if start > stop:
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "bad HEADERS padding")
        block = payload[start:stop]
        if not flags & END_HEADERS:
            self._continuation = (stream_id, flags, [block])
            return
        self._on_header_block(flags, stream_id, block)

    def _on_continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        pending = self._continuation
        if pending is None or pending[0] != stream_id:
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "unexpected CONTINUATION")
        pending[2].append(payload)
        if sum(len(p) for p in pending[2]) > MAX_HEADER_BLOCK:
            raise _ConnectionError(ErrorCodes.ENHANCE_YOUR_CALM, "header block too large")
        if flags & END_HEADERS:
            self._continuation = None
            self._on_header_block(pending[1], stream_id, b"".join(pending[2]))

    def _on_header_block(self, flags: int, stream_id: int, block: bytes) -> None:
        try:
            fields = self._decoder.decode(block)
        except (hpack.HPACKError, ValueError, IndexError) as e:
            raise _ConnectionError(ErrorCodes.COMPRESSION_ERROR, f"bad header block: {e}") from e
        stream = self._streams.get(stream_id)
        if stream is None or stream.error is not None:
            return  # a stream we gave up (the block still had to be decoded)
        if stream.remote_ended:
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "HEADERS after the end of stream")
        ended = bool(flags & END_STREAM)
        if stream.headers is None:
            status, regular = _response_head(fields)
            if status < 200:
                if ended:
                    raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "informational END_STREAM")
                return  # an informational response: the real one follows
            stream.status = status
            stream.headers = regular
            for name, value in regular:
                if name == b"content-length":
                    if not value.isdigit():
                        raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "bad content-length")
                    stream._expected_length = int(value)
        elif ended:
            stream.trailers = _trailers(fields)
        else:
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "HEADERS in the middle of a body")
        if ended:
            self._remote_end(stream)
        stream._wake()

    def _on_other(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if kind == CONTINUATION:
            self._on_continuation(flags, stream_id, payload)
        elif kind == SETTINGS:
            self._on_settings(flags, stream_id, payload)
        elif kind == WINDOW_UPDATE:
            self._on_window_update(stream_id, payload)
        elif kind == RST_STREAM:
            if stream_id == 0 or len(payload) != 4:
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "bad RST_STREAM")
            self._check_stream_id(stream_id)
            code = _U32.unpack(payload)[0]
            stream = self._streams.pop(stream_id, None)
            if stream is not None:
                # What arrived before the reset stays readable (a whole response, even).
                stream.error = StreamError(code, f"stream reset by peer ({_code_name(code)})")
                self._uncount(stream)
                stream._wake()
        elif kind == PING:
            if stream_id != 0 or len(payload) != 8:
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "bad PING")
            if not flags & ACK:
                self._queue(frame(PING, ACK, 0, payload))
        elif kind == GOAWAY:
            if stream_id != 0 or len(payload) < 8:
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "bad GOAWAY")
            last, code = _GOAWAY.unpack_from(payload)
            self._goaway(code, last & 0x7FFFFFFF)
        elif kind == PUSH_PROMISE:
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "PUSH_PROMISE, push is disabled")
        elif kind == PRIORITY and (stream_id == 0 or len(payload) != 5):
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "bad PRIORITY")
        # Unknown frame types are ignored (RFC 9113, 5.5).

    def _on_settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != 0:
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise _ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise _ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "SETTINGS of a bad length")
        for pos in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, pos)
            if key == S_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise _ConnectionError(ErrorCodes.FLOW_CONTROL_ERROR, "initial window too big")
                delta = value - self._peer_initial_window
                self._peer_initial_window = value
                for stream in self._streams.values():
                    stream.send_window += delta
                    if stream.send_window > MAX_WINDOW:
                        raise _ConnectionError(ErrorCodes.FLOW_CONTROL_ERROR, "window overflow")
                self._wake_window_waiters()
            elif key == S_MAX_FRAME_SIZE:
                if not 16384 <= value <= 16777215:
                    raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "bad SETTINGS_MAX_FRAME_SIZE")
                self._peer_max_frame = value
            elif key == S_MAX_CONCURRENT_STREAMS:
                self._peer_max_streams = value
                self._capacity_changed()
            elif key == S_HEADER_TABLE_SIZE:
                self._table_size_update = True
            elif key == S_ENABLE_PUSH and value > 1:
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "bad SETTINGS_ENABLE_PUSH")
        self._queue(frame(SETTINGS, ACK, 0))

    def _on_window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "WINDOW_UPDATE of a bad length")
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            if increment == 0:
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise _ConnectionError(ErrorCodes.FLOW_CONTROL_ERROR, "connection window overflow")
            self._wake_window_waiters()
            return
        self._check_stream_id(stream_id)
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if increment == 0 or stream.send_window + increment > MAX_WINDOW:
            raise _ConnectionError(ErrorCodes.FLOW_CONTROL_ERROR, "bad stream WINDOW_UPDATE")
        stream.send_window += increment
        stream._wake()

    def _wake_window_waiters(self) -> None:
        for stream in self._streams.values():
            if stream.window_waiting:
                stream._wake()

    def _goaway(self, code: int, last_stream_id: int) -> None:
        self.goaway_received = True
        self.last_stream_id = last_stream_id
        for stream_id, stream in list(self._streams.items()):
            if stream_id > last_stream_id:
                # Never processed by the server: safe to retry elsewhere.
                self._streams.pop(stream_id, None)
                stream.error = StreamError(ErrorCodes.REFUSED_STREAM, "stream refused by GOAWAY")
                stream._give_back()
                self._uncount(stream)
                stream._wake()
        if code:
            self._lost(f"connection closed by peer (GOAWAY {_code_name(code)})")
        self._capacity_changed()

    def _lost(self, message: str) -> None:
        if self.error is None:
            self.error = ConnectionLost(ErrorCodes.INTERNAL_ERROR, message)
        for stream in self._streams.values():
            if stream.error is None and not (stream.remote_ended and stream.local_closed):
                stream.error = self.error
            stream._wake()
        # Whoever waits to read must see the error too.
        parked, self._parked = self._parked, {}
        for event in parked:
            event.set()
        self._capacity_changed()

    def _taken(self, n: int) -> None:
        """``n`` bytes of the connection window were consumed: give them back when due."""
        self._consumed += n
        increment = _window_increment(self._receive_window, self._connection_window, self._consumed)
        if increment:
            self._consumed -= increment
            self._receive_window += increment
            self._queue(frame(WINDOW_UPDATE, 0, 0, _U32.pack(increment)))

    # -- writing -----------------------------------------------------------------------

    def _queue(self, data: bytes) -> None:
        self._out.append(data)

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
            self.goaway_sent = True
            self._queue(frame(GOAWAY, 0, 0, _GOAWAY.pack(0, 0)))
            with anyio.move_on_after(1, shield=True), contextlib.suppress(Exception):
                await self._flush()
        self._lost("connection closed")
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await self._stream.aclose()


def _response_head(fields: RawHeaders) -> tuple[int, RawHeaders]:
    """``:status`` and the regular fields of a response head; a malformed one is a
    protocol error (pseudo-headers other than ``:status``, upper-case or
    connection-specific names)."""
    status = -1
    regular: RawHeaders = []
    for field in fields:
        name = field[0]
        if name[:1] == b":":
            if name != b":status" or status >= 0 or regular:
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, f"bad pseudo-header {name!r}")
            value = field[1]
            if len(value) != 3 or not value.isdigit():
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, f"bad :status {value[:20]!r}")
            status = int(value)
        else:
            _check_name(name)
            regular.append(field)
    if status < 0:
        raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "response without :status")
    return status, regular


def _trailers(fields: RawHeaders) -> RawHeaders:
    for name, _ in fields:
        if name[:1] == b":":
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "pseudo-header in trailers")
        _check_name(name)
    return fields


_GOOD_NAMES: set[bytes] = set()
"""Response header names already checked (the same few come with every response)."""


def _check_name(name: bytes) -> None:
    if name in _GOOD_NAMES:
        return
    if not name or name in _CONNECTION_SPECIFIC or name.lower() != name:
        raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, f"malformed header name {name!r}")
    if len(_GOOD_NAMES) < 1024:
        _GOOD_NAMES.add(name)
