"""The native server's HTTP/2 connection: frames, HPACK, flow control and streams.

Our own implementation of the server side of RFC 9113 over an anyio byte
stream (``h2`` cost more than half of the server's time on h2c; the client has
its own connection in ``_transport._h2client``). It reads and writes frames
itself, decodes header blocks with ``hpack`` (behind a cache) and encodes them
without the dynamic table, so an encoding depends on nothing but the fields.

The server reads in tasks of its own (``receive_bytes`` then ``process``, with
writes ``corked`` while it handles a batch; see ``_serve._h2``): a call waiting
on a stream never reads. Writes are queued as frames and serialized; a write
the socket takes at once (``send_nowait``) needs no lock, and a write is
shielded (a half-written frame would break every stream).

Flow control both ways: a stream buffers at most its receive window (1 MiB; 16
MiB for the connection), and window updates go out as the application consumes
data, so a slow reader bounds what the peer can send. A malformed request or a
stream-level violation resets that stream; a connection-level one ends the
connection with GOAWAY and the error code RFC 9113 names.
"""

from __future__ import annotations

import contextlib
import re
import struct
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import hpack
from anyio.abc import ByteStream
from h2.errors import ErrorCodes
from hpack.table import HeaderTable

RawHeaders = list[tuple[bytes, bytes]]

DEFAULT_STREAM_WINDOW = 1 << 20
"""Receive window per stream: what one stream may buffer before its reader consumes."""
DEFAULT_CONNECTION_WINDOW = 16 << 20
"""Receive window of the whole connection, across streams."""
DEFAULT_MAX_FRAME = 1 << 16
"""The largest frame we accept (SETTINGS_MAX_FRAME_SIZE)."""
READ_SIZE = 1 << 16
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

_MAX_WINDOW = 2**31 - 1
_MAX_HEADER_BLOCK = 1 << 20
"""The largest encoded header block (HEADERS and CONTINUATION frames) buffered."""

# Frame types and flags (RFC 9113, 6).
_DATA = 0x0
_HEADERS = 0x1
_PRIORITY = 0x2
_RST_STREAM = 0x3
_SETTINGS = 0x4
_PUSH_PROMISE = 0x5
_PING = 0x6
_GOAWAY = 0x7
_WINDOW_UPDATE = 0x8
_CONTINUATION = 0x9
_END_STREAM = 0x1
_ACK = 0x1
_END_HEADERS = 0x4
_PADDED = 0x8
_PRIORITY_FLAG = 0x20
_SELF_DEPENDENT = 0x100
"""Not a flag on the wire: a HEADERS frame whose priority names its own stream."""

# Settings (RFC 9113, 6.5.2).
_HEADER_TABLE_SIZE = 0x1
_ENABLE_PUSH = 0x2
_MAX_CONCURRENT_STREAMS = 0x3
_INITIAL_WINDOW_SIZE = 0x4
_MAX_FRAME_SIZE = 0x5
_MAX_HEADER_LIST_SIZE = 0x6

_FRAME_HEAD = struct.Struct(">HBBBL")
"""length (high 16 bits), length (low 8 bits), type, flags, stream id"""
_U32 = struct.Struct(">L")
_SETTING = struct.Struct(">HL")
_GOAWAY_HEAD = struct.Struct(">LL")


def _frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    size = len(payload)
    return _FRAME_HEAD.pack(size >> 8, size & 0xFF, kind, flags, stream_id) + payload


class StreamError(Exception):
    """The stream is gone: reset by the peer (``code``), or its connection failed."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class ConnectionLost(StreamError):
    """The connection ended before the stream did."""


class _ConnectionError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _StreamReset(Exception):
    """A stream error: that stream is reset with ``code``."""

    def __init__(self, stream_id: int, code: int, message: str) -> None:
        super().__init__(message)
        self.stream_id = stream_id
        self.code = code


# ---------------------------------------------------------------------------
# HPACK


class _Decoder(hpack.Decoder):
    """``hpack``'s decoder that remembers the blocks that leave the dynamic table as it
    was: such a block decodes to the same headers for as long as the table does not
    change, and a peer sending the same requests over and over sends the same few
    blocks once its table is warm.

    Any change to the table puts a new entry object at its front, or changes its
    length, size or maximum size; the cache holds for one such state at a time.
    """

    _CACHE_SIZE = 64
    _CACHE_BLOCK = 1024
    """Blocks longer than this are decoded each time (and never kept)."""

    def __init__(self) -> None:
        super().__init__()
        self._cache: dict[bytes, list[Any]] = {}
        self._cached_for: tuple[Any, int, int, int] | None = None

    def _table_state(self) -> tuple[Any, int, int, int]:
        table = self.header_table
        entries = table.dynamic_entries
        return (entries[0] if entries else None, len(entries), table._current_size, table._maxsize)

    def _same(self, a: tuple[Any, int, int, int] | None, b: tuple[Any, int, int, int]) -> bool:
        return a is not None and a[0] is b[0] and a[1:] == b[1:]

    def decode(self, data: bytes, raw: bool = False) -> Any:
        if not raw or len(data) > self._CACHE_BLOCK:
            return super().decode(data, raw)
        key = data if type(data) is bytes else bytes(data)
        before = self._table_state()
        if self._same(self._cached_for, before):
            hit = self._cache.get(key)
            if hit is not None:
                return list(hit)
        headers = super().decode(data, raw)
        after = self._table_state()
        if self._same(before, after):
            if not self._same(self._cached_for, before) or len(self._cache) >= self._CACHE_SIZE:
                self._cache.clear()
                self._cached_for = before
            self._cache[key] = list(headers)
        return headers


_STATIC = HeaderTable.STATIC_TABLE
_STATIC_FIELD = {field: i + 1 for i, field in reversed(list(enumerate(_STATIC)))}
_STATIC_NAME = {name: i + 1 for i, (name, _) in reversed(list(enumerate(_STATIC)))}


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    """An HPACK integer (RFC 7541, 5.1) whose first byte carries ``first``'s high bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(name: bytes, value: bytes) -> bytes:
    """One field: indexed if the static table has it whole, else a literal without
    indexing (with the static table's name where it has the name)."""
    index = _STATIC_FIELD.get((name, value))
    if index is not None:
        return _integer(index, 7, 0x80)
    index = _STATIC_NAME.get(name)
    head = (
        _integer(index, 4, 0x00)
        if index is not None
        else b"\x00" + _integer(len(name), 7, 0) + name
    )
    return head + _integer(len(value), 7, 0) + value


class _Encoder:
    """Encodes header lists without the dynamic table (it announces a table of size 0
    in its first block), so a list's encoding is computed once and reused."""

    def __init__(self) -> None:
        self._first = True
        self._cache: dict[tuple[tuple[bytes, bytes], ...], bytes] = {}

    def encode(self, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
        key = tuple(headers)
        block = self._cache.get(key)
        if block is None:
            block = b"".join([_field(name, value) for name, value in key])
            if len(block) <= 1024:
                if len(self._cache) >= 256:
                    self._cache.clear()
                self._cache[key] = block
        if self._first:
            self._first = False
            return b"\x20" + block  # dynamic table size update: 0
        return block


# ---------------------------------------------------------------------------
# streams


class H2Stream:
    """One HTTP/2 stream: headers, data and trailers in each direction."""

    __slots__ = (
        "_conn",
        "_content_length",
        "_data",
        "_events",
        "_out",
        "_out_size",
        "_received",
        "_recv_unacked",
        "_recv_window",
        "_send_window",
        "error",
        "headers",
        "id",
        "local_closed",
        "remote_ended",
        "trailers",
        "window_waiting",
    )

    def __init__(self, conn: H2Connection, stream_id: int) -> None:
        self._conn = conn
        self.id = stream_id
        self.headers: RawHeaders | None = None
        self.trailers: RawHeaders | None = None
        self._data: deque[tuple[bytes, int]] = deque()
        self.remote_ended = False
        self.local_closed = False
        self.error: StreamError | None = None
        self._events: list[anyio.Event] = []
        self.window_waiting = False
        self._send_window = conn._peer_initial_window
        self._recv_window = conn._stream_window
        self._recv_unacked = 0
        self._content_length = -1
        self._received = 0
        self._out: list[bytes] = []
        """Data sent with ``flush=False``, not yet framed (it fits the window)."""
        self._out_size = 0

    def _wake(self) -> None:
        events = self._events
        if events:
            self._events = []
            for event in events:
                event.set()

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
            data, flow = self._data.popleft()
            if flow:
                conn = self._conn
                conn._consumed(self, flow)
                await conn._flush()
            return data
        if self.error is not None and not self.remote_ended:
            raise self.error
        return b""

    @property
    def buffered(self) -> int:
        """Bytes received and not yet taken by the application (at most the stream's window)."""
        return sum(len(data) for data, _ in self._data)

    @property
    def receive_window(self) -> int:
        """What the peer may still send on this stream before the application consumes more."""
        if self.remote_ended or self.error is not None:
            return 0
        return self._recv_window

    async def wait_reset(self) -> None:
        """Returns once the stream is reset or its connection is lost."""
        await self._wait(lambda: self.error is not None)

    # -- sending ---------------------------------------------------------------

    def _window(self) -> int:
        return min(self._send_window, self._conn._send_window)

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
        if end_stream:
            self._closed_locally()
        await conn._flush()

    def _queue_data(self, data: bytes | memoryview, end_stream: bool) -> None:
        """Queues one DATA frame (it fits the window and the peer's frame size)."""
        size = len(data)
        self._send_window -= size
        self._conn._send_window -= size
        self._conn._out.append(
            _FRAME_HEAD.pack(
                size >> 8, size & 0xFF, _DATA, _END_STREAM if end_stream else 0, self.id
            )
        )
        self._conn._out.append(bytes(data) if type(data) is not bytes else data)

    async def send_data(self, data: bytes, end_stream: bool = False, flush: bool = True) -> None:
        """Sends ``data``, waiting for flow-control window as needed.

        ``flush=False``: the data may stay queued (when the window has room for it) and
        leave with what follows in as few frames as fit; the caller has the connection
        write it soon (``H2Connection.flush_soon``)."""
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
                    conn._out.append(_frame(_DATA, _END_STREAM, self.id))
                    self._closed_locally()
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
            if end_stream and last:
                self._closed_locally()
            if not last or flush or end_stream:
                await conn._flush()
            if last:
                return

    def _frame_out(self) -> None:
        """Queues the data sent with ``flush=False`` as DATA frames, as far as the window
        allows (it normally has room for all of it: see ``send_data``)."""
        out, self._out = self._out, []
        self._out_size = 0
        conn = self._conn
        conn._unframed.pop(self, None)
        if self.error is not None:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        view = memoryview(data)
        total = len(data)
        pos = 0
        max_frame = conn._peer_max_frame
        while pos < total:
            n = min(total - pos, self._window(), max_frame)
            if n <= 0:
                # The peer shrank the window since (SETTINGS): the rest waits for it.
                self._out = [bytes(view[pos:])]
                self._out_size = total - pos
                conn._unframed[self] = None
                return
            self._queue_data(view[pos : pos + n] if n < total else data, False)
            pos += n

    async def send_trailers(self, trailers: RawHeaders) -> None:
        await self.send_headers(trailers, end_stream=True)

    async def end(self) -> None:
        """Ends our side of the stream."""
        if self.local_closed:
            return
        self._check()
        if self._out:
            self._frame_out()
        self._conn._out.append(_frame(_DATA, _END_STREAM, self.id))
        self._closed_locally()
        await self._conn._flush()

    async def reset(self, code: int = ErrorCodes.CANCEL) -> None:
        """Aborts the stream (RST_STREAM); harmless if it already ended."""
        self._conn._reset_now(self, code)
        await self._conn._flush()

    def _closed_locally(self) -> None:
        self.local_closed = True
        if self.remote_ended:
            self._conn._maybe_forget(self)

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    @property
    def closed(self) -> bool:
        """Both sides ended (or the stream failed)."""
        return (self.remote_ended and self.local_closed) or self.error is not None


# ---------------------------------------------------------------------------
# the connection


class H2Connection:
    """The server side of an HTTP/2 connection over an established byte stream."""

    def __init__(
        self,
        stream: ByteStream,
        *,
        client: bool = False,
        max_concurrent_streams: int | None = None,
        stream_window: int = DEFAULT_STREAM_WINDOW,
        connection_window: int = DEFAULT_CONNECTION_WINDOW,
        max_header_list_size: int | None = None,
        on_request: Callable[[H2Stream], None] | None = None,
    ) -> None:
        if client:
            raise ValueError("H2Connection is the server side; clients use _transport._h2client")
        self.client = False
        self._stream = stream
        self._streams: dict[int, H2Stream] = {}
        self._write_lock = anyio.Lock(fast_acquire=True)
        self._send_nowait: Callable[[bytes], int] | None = getattr(stream, "send_nowait", None)
        self._out: list[bytes] = []
        """Frames queued for the next write."""
        self.corked = False
        """While set, writes stay queued (the server's reader sets it while it handles a
        batch of frames and the calls they complete, then writes once)."""
        self._flush_wanted: anyio.Event | None = None
        self._unframed: dict[H2Stream, None] = {}
        """Streams with data sent with ``flush=False`` and not yet framed, in order."""
        self._on_request = on_request
        self.error: StreamError | None = None
        self.goaway_received = False
        self.goaway_sent = False
        self.last_stream_id: int | None = None
        self._goaway_last_sent = 0
        self._write_failed = False
        # Ours.
        self._max_streams = max_concurrent_streams
        self._stream_window = stream_window
        self._connection_window = connection_window
        self._max_header_list = max_header_list_size
        self._recv_window = 65535
        self._recv_unacked = 0
        self._decoder = _Decoder()
        self._decoder.max_header_list_size = max_header_list_size or 1 << 16
        self._encoder = _Encoder()
        # The peer's.
        self._peer_initial_window = 65535
        self._peer_max_frame = 16384
        self._send_window = 65535
        # Reading.
        self._buf = b""
        self._preface = False
        self._settings_seen = False
        self._highest = 0
        self._headers_pending: tuple[int, int, list[bytes], int] | None = None
        """A header block still waiting for CONTINUATION: stream, flags, fragments, size."""

    async def start(self) -> None:
        """Sends our settings (and the connection window beyond the default)."""
        settings = [
            (_INITIAL_WINDOW_SIZE, self._stream_window),
            (_MAX_FRAME_SIZE, DEFAULT_MAX_FRAME),
        ]
        if self._max_streams is not None:
            settings.append((_MAX_CONCURRENT_STREAMS, self._max_streams))
        if self._max_header_list is not None:
            settings.append((_MAX_HEADER_LIST_SIZE, self._max_header_list))
        payload = b"".join(_SETTING.pack(key, value) for key, value in settings)
        self._out.append(_frame(_SETTINGS, 0, 0, payload))
        extra = self._connection_window - 65535
        if extra > 0:
            self._recv_window += extra
            self._out.append(_frame(_WINDOW_UPDATE, 0, 0, _U32.pack(extra)))
        await self._flush()

    # -- state ----------------------------------------------------------------

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def accepting(self) -> bool:
        """Whether new streams may be opened on this connection."""
        return self.error is None and not self.goaway_received and not self.goaway_sent

    @property
    def buffered(self) -> int:
        """Bytes received on all streams and not yet taken by the application."""
        return sum(stream.buffered for stream in self._streams.values())

    async def send_goaway(self, code: int = ErrorCodes.NO_ERROR) -> None:
        """Tells the peer to open no more streams; streams in flight finish (a GOAWAY with
        an error code ends the connection)."""
        if self.goaway_sent or self.error is not None:
            return
        self._queue_goaway(code)
        with contextlib.suppress(Exception):
            await self._flush()

    def _queue_goaway(self, code: int, message: str = "") -> None:
        self.goaway_sent = True
        self._goaway_last_sent = self._highest
        payload = _GOAWAY_HEAD.pack(self._highest, code) + message.encode()[:256]
        self._out.append(_frame(_GOAWAY, 0, 0, payload))

    # -- reading -----------------------------------------------------------------

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

    async def feed(self, data: bytes) -> None:
        """Processes bytes read from the socket, then writes what that queued."""
        self.process(data)
        with contextlib.suppress(Exception):
            await self._flush()

    def process(self, data: bytes) -> None:
        """Processes bytes read from the socket without writing anything (``_flush``
        writes what it queued). A connection error queues GOAWAY and loses the
        connection; a stream error resets that stream."""
        if self.error is not None:
            return
        buf = self._buf + data if self._buf else data
        pos = 0
        size = len(buf)
        if not self._preface:
            if size < len(PREFACE):
                if not PREFACE.startswith(buf):
                    self._fail(ErrorCodes.PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                    return
                self._buf = buf
                return
            if not buf.startswith(PREFACE):
                self._fail(ErrorCodes.PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                return
            self._preface = True
            pos = len(PREFACE)
        unpack = _FRAME_HEAD.unpack_from
        try:
            while size - pos >= 9:
                high, low, kind, flags, stream_id = unpack(buf, pos)
                length = high << 8 | low
                if length > DEFAULT_MAX_FRAME:
                    raise _ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "frame too large")
                end = pos + 9 + length
                if end > size:
                    break
                payload = buf[pos + 9 : end]
                pos = end
                stream_id &= 0x7FFFFFFF
                if not self._settings_seen:
                    if kind != _SETTINGS or flags & _ACK:
                        raise _ConnectionError(
                            ErrorCodes.PROTOCOL_ERROR, "the preface must end with SETTINGS"
                        )
                    self._settings_seen = True
                if self._headers_pending is not None and kind != _CONTINUATION:
                    raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "CONTINUATION expected")
                try:
                    handler = _HANDLERS.get(kind)
                    if handler is not None:
                        handler(self, flags, stream_id, payload)
                except _StreamReset as e:
                    self._reset_id(e.stream_id, e.code)
                if self._is_lost():
                    return
        except _ConnectionError as e:
            self._fail(e.code, str(e))
            return
        self._buf = buf[pos:] if pos < size else b""

    def _is_lost(self) -> bool:
        return self.error is not None

    def _fail(self, code: int, message: str) -> None:
        """A connection error: GOAWAY with ``code``, then the connection is lost."""
        if self.error is None and not self._write_failed:
            self._queue_goaway(code, message)
        self._lost(f"HTTP/2 protocol error: {message}")

    # -- frames in ---------------------------------------------------------------

    def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "DATA on stream 0")
        flow = len(payload)
        self._recv_window -= flow
        if self._recv_window < 0:
            raise _ConnectionError(ErrorCodes.FLOW_CONTROL_ERROR, "connection window exceeded")
        data = _unpad(flags, payload)
        stream = self._streams.get(stream_id)
        if stream is None or stream.error is not None:
            # Reset or finished: nobody will read it. Hand the window back now.
            self._consumed(None, flow)
            if stream_id > self._highest:
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "DATA on an idle stream")
            return
        if stream.remote_ended:
            self._consumed(None, flow)
            raise _StreamReset(stream_id, ErrorCodes.STREAM_CLOSED, "DATA after END_STREAM")
        stream._recv_window -= flow
        if stream._recv_window < 0:
            self._consumed(None, flow)
            raise _StreamReset(stream_id, ErrorCodes.FLOW_CONTROL_ERROR, "stream window exceeded")
        padding = flow - len(data)
        if padding:
            self._consumed(stream, padding)
        if data:
            stream._received += len(data)
            stream._data.append((data, len(data)))
        if 0 <= stream._content_length < stream._received:
            raise _StreamReset(
                stream_id, ErrorCodes.PROTOCOL_ERROR, "more data than content-length"
            )
        if flags & _END_STREAM:
            self._remote_end(stream)
        stream._wake()

    def _on_headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "HEADERS on stream 0")
        start = 0
        end = len(payload)
        if flags & _PADDED:
            if not payload:
                raise _ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "HEADERS too short")
            start = 1
            end -= payload[0]
        if flags & _PRIORITY_FLAG:
            if end - start < 5:
                raise _ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "HEADERS too short")
            depends = _U32.unpack_from(payload, start)[0] & 0x7FFFFFFF
            start += 5
            if depends == stream_id:
                flags |= _SELF_DEPENDENT  # reset once the block is decoded
        if end < start:
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "padding exceeds the frame")
        fragment = payload[start:end]
        if flags & _END_HEADERS:
            self._on_header_block(flags, stream_id, fragment)
        else:
            self._headers_pending = (stream_id, flags, [fragment], len(fragment))

    def _on_continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        pending = self._headers_pending
        if pending is None or pending[0] != stream_id:
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "unexpected CONTINUATION")
        first_stream, first_flags, fragments, size = pending
        size += len(payload)
        if size > _MAX_HEADER_BLOCK:
            raise _ConnectionError(ErrorCodes.ENHANCE_YOUR_CALM, "header block too large")
        fragments.append(payload)
        if flags & _END_HEADERS:
            self._headers_pending = None
            self._on_header_block(first_flags, stream_id, b"".join(fragments))
        else:
            self._headers_pending = (first_stream, first_flags, fragments, size)

    def _on_header_block(self, flags: int, stream_id: int, block: bytes) -> None:
        # Every block is decoded, even one for a stream we refuse: HPACK's state is shared.
        try:
            headers = self._decoder.decode(block, raw=True)
        except hpack.OversizedHeaderListError as e:
            raise _ConnectionError(
                ErrorCodes.ENHANCE_YOUR_CALM, f"header list too large: {e}"
            ) from None
        except hpack.HPACKError as e:
            raise _ConnectionError(ErrorCodes.COMPRESSION_ERROR, f"HPACK: {e}") from None
        if flags & _SELF_DEPENDENT:
            raise _StreamReset(stream_id, ErrorCodes.PROTOCOL_ERROR, "depends on itself")
        end_stream = bool(flags & _END_STREAM)
        stream = self._streams.get(stream_id)
        if stream is not None:
            # Trailers.
            if stream.remote_ended:
                raise _StreamReset(stream_id, ErrorCodes.STREAM_CLOSED, "HEADERS after END_STREAM")
            if not end_stream:
                raise _StreamReset(
                    stream_id, ErrorCodes.PROTOCOL_ERROR, "trailers without END_STREAM"
                )
            if trailer_error(headers) is not None:
                raise _StreamReset(stream_id, ErrorCodes.PROTOCOL_ERROR, "malformed trailers")
            stream.trailers = list(headers)
            self._remote_end(stream)
            stream._wake()
            return
        if stream_id <= self._highest:
            if stream_id % 2 == 0:
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "HEADERS on a server stream id")
            return  # a stream that is over (reset or finished): ignored
        if stream_id % 2 == 0:
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "even stream id from a client")
        self._highest = stream_id
        if self.goaway_sent and stream_id > self._goaway_last_sent:
            # Opened after our GOAWAY: never processed, so safe for the peer to retry.
            raise _StreamReset(stream_id, ErrorCodes.REFUSED_STREAM, "after GOAWAY")
        limit = self._max_streams
        if limit is not None and len(self._streams) >= limit:
            raise _StreamReset(stream_id, ErrorCodes.REFUSED_STREAM, "too many streams")
        if _request_error_cached(headers) is not None:
            raise _StreamReset(stream_id, ErrorCodes.PROTOCOL_ERROR, "malformed request")
        stream = H2Stream(self, stream_id)
        stream.headers = headers = list(headers)
        for name, value in headers:
            if name == b"content-length":
                stream._content_length = int(value) if value.isdigit() else -1
                break
        self._streams[stream_id] = stream
        if end_stream:
            if stream._content_length > 0:
                self._streams.pop(stream_id, None)
                raise _StreamReset(
                    stream_id, ErrorCodes.PROTOCOL_ERROR, "less data than content-length"
                )
            stream.remote_ended = True
        if self._on_request is not None:
            self._on_request(stream)

    def _remote_end(self, stream: H2Stream) -> None:
        if 0 <= stream._content_length != stream._received:
            raise _StreamReset(
                stream.id, ErrorCodes.PROTOCOL_ERROR, "data differs from content-length"
            )
        stream.remote_ended = True
        self._maybe_forget(stream)

    def _on_priority(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "PRIORITY on stream 0")
        if len(payload) != 5:
            raise _StreamReset(stream_id, ErrorCodes.FRAME_SIZE_ERROR, "PRIORITY of the wrong size")
        if _U32.unpack_from(payload)[0] & 0x7FFFFFFF == stream_id:
            raise _StreamReset(stream_id, ErrorCodes.PROTOCOL_ERROR, "depends on itself")

    def _on_rst_stream(self, flags: int, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "RST_STREAM of the wrong size")
        if stream_id == 0 or stream_id > self._highest:
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "RST_STREAM on an idle stream")
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        code = _U32.unpack(payload)[0]
        stream.error = StreamError(code, f"stream reset by peer ({_code_name(code)})")
        self._drop_out(stream)
        for _, flow in stream._data:
            self._consumed(None, flow)
        stream._data.clear()
        stream._wake()

    def _on_settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & _ACK:
            if payload:
                raise _ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise _ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "SETTINGS of the wrong size")
        for offset in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, offset)
            if key == _INITIAL_WINDOW_SIZE:
                if value > _MAX_WINDOW:
                    raise _ConnectionError(ErrorCodes.FLOW_CONTROL_ERROR, "window too large")
                delta = value - self._peer_initial_window
                self._peer_initial_window = value
                for stream in self._streams.values():
                    stream._send_window += delta
                    if stream._send_window > _MAX_WINDOW:
                        raise _ConnectionError(ErrorCodes.FLOW_CONTROL_ERROR, "window too large")
                    if stream.window_waiting:
                        stream._wake()
                if self._unframed:
                    self.flush_soon()
            elif key == _MAX_FRAME_SIZE:
                if not 16384 <= value <= 16777215:
                    raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "invalid MAX_FRAME_SIZE")
                self._peer_max_frame = value
            elif key == _ENABLE_PUSH and value > 1:
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "invalid ENABLE_PUSH")
            # HEADER_TABLE_SIZE: our encoder keeps no dynamic table. The others limit
            # what we do not do (push) or only advise.
        self._out.append(_frame(_SETTINGS, _ACK, 0))

    def _on_push_promise(self, flags: int, stream_id: int, payload: bytes) -> None:
        raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "PUSH_PROMISE from a client")

    def _on_ping(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "PING on a stream")
        if len(payload) != 8:
            raise _ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "PING of the wrong size")
        if not flags & _ACK:
            self._out.append(_frame(_PING, _ACK, 0, payload))

    def _on_goaway(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "GOAWAY on a stream")
        if len(payload) < 8:
            raise _ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "GOAWAY too short")
        last, code = _GOAWAY_HEAD.unpack_from(payload)
        self.goaway_received = True
        self.last_stream_id = last & 0x7FFFFFFF
        if code:
            self._lost(f"connection closed by peer (GOAWAY {_code_name(code)})")

    def _on_window_update(self, flags: int, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "WINDOW_UPDATE of the wrong size")
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            if not increment:
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > _MAX_WINDOW:
                raise _ConnectionError(ErrorCodes.FLOW_CONTROL_ERROR, "window too large")
            for stream in self._streams.values():
                if stream.window_waiting:
                    stream._wake()
        else:
            target = self._streams.get(stream_id)
            if target is None:
                if stream_id > self._highest:
                    raise _ConnectionError(
                        ErrorCodes.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream"
                    )
                return
            if not increment:
                raise _StreamReset(stream_id, ErrorCodes.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            target._send_window += increment
            if target._send_window > _MAX_WINDOW:
                raise _StreamReset(stream_id, ErrorCodes.FLOW_CONTROL_ERROR, "window too large")
            target._wake()
        if self._unframed:
            self.flush_soon()

    # -- bookkeeping ---------------------------------------------------------------

    def _lost(self, message: str) -> None:
        if self.error is None:
            self.error = ConnectionLost(ErrorCodes.INTERNAL_ERROR, message)
        for stream in self._unframed:
            stream._out.clear()
            stream._out_size = 0
        self._unframed.clear()
        for stream in self._streams.values():
            if stream.error is None and not (stream.remote_ended and stream.local_closed):
                stream.error = self.error
            stream._wake()

    def _maybe_forget(self, stream: H2Stream) -> None:
        if (
            stream.remote_ended
            and stream.local_closed
            and not stream._data
            and self._streams.get(stream.id) is stream
        ):
            del self._streams[stream.id]

    def _consumed(self, stream: H2Stream | None, size: int) -> None:
        """``size`` bytes of flow-controlled data are consumed: the window they took is
        given back in WINDOW_UPDATEs, once half a window is due."""
        unacked = self._recv_unacked + size
        if unacked >= self._connection_window // 2 or self._recv_window < (
            self._connection_window // 4
        ):
            self._recv_window += unacked
            self._out.append(_frame(_WINDOW_UPDATE, 0, 0, _U32.pack(unacked)))
            unacked = 0
        self._recv_unacked = unacked
        if stream is None or stream.remote_ended or stream.error is not None:
            return
        unacked = stream._recv_unacked + size
        if unacked >= self._stream_window // 2:
            stream._recv_window += unacked
            self._out.append(_frame(_WINDOW_UPDATE, 0, stream.id, _U32.pack(unacked)))
            unacked = 0
        stream._recv_unacked = unacked

    def _drop_out(self, stream: H2Stream) -> None:
        stream._out.clear()
        stream._out_size = 0
        self._unframed.pop(stream, None)

    def _reset_id(self, stream_id: int, code: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None:
            self._reset_now(stream, code)
        else:
            self._out.append(_frame(_RST_STREAM, 0, stream_id, _U32.pack(code)))

    def _reset_now(self, stream: H2Stream, code: int) -> None:
        """Resets a stream (queues RST_STREAM; ``_flush`` sends it)."""
        if self._streams.get(stream.id) is stream:
            del self._streams[stream.id]
        self._drop_out(stream)
        if stream.error is None:
            stream.error = StreamError(code, "stream reset")
        # Return the window of data that will now never be read.
        for _, flow in stream._data:
            self._consumed(None, flow)
        stream._data.clear()
        if not (stream.remote_ended and stream.local_closed) and self.error is None:
            self._out.append(_frame(_RST_STREAM, 0, stream.id, _U32.pack(code)))
        stream._wake()

    def forget(self, stream: H2Stream) -> None:
        """Drops a finished stream from the bookkeeping."""
        if self._streams.get(stream.id) is stream:
            del self._streams[stream.id]

    # -- writing -----------------------------------------------------------------

    def _queue_headers(self, stream_id: int, headers: RawHeaders, end_stream: bool) -> None:
        block = self._encoder.encode(headers)
        flags = _END_STREAM if end_stream else 0
        max_frame = self._peer_max_frame
        if len(block) <= max_frame:
            self._out.append(_frame(_HEADERS, flags | _END_HEADERS, stream_id, block))
            return
        self._out.append(_frame(_HEADERS, flags, stream_id, block[:max_frame]))
        pos = max_frame
        while pos < len(block):
            chunk = block[pos : pos + max_frame]
            pos += len(chunk)
            last = _END_HEADERS if pos >= len(block) else 0
            self._out.append(_frame(_CONTINUATION, last, stream_id, chunk))

    def flush_soon(self) -> None:
        """Has ``run_writer`` write what is queued once the current task lets it run
        (it yields or waits): frames queued meanwhile leave in the same write. Without
        a writer running, nothing happens (the caller flushes itself)."""
        wanted = self._flush_wanted
        if wanted is not None and not wanted.is_set():
            wanted.set()

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
        """Closes the connection (GOAWAY if possible, then the socket)."""
        if self.error is None:
            with anyio.move_on_after(1, shield=True):
                await self.send_goaway()
        self._lost("connection closed")
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await self._stream.aclose()


_HANDLERS: dict[int, Callable[[H2Connection, int, int, bytes], None]] = {
    _DATA: H2Connection._on_data,
    _HEADERS: H2Connection._on_headers,
    _PRIORITY: H2Connection._on_priority,
    _RST_STREAM: H2Connection._on_rst_stream,
    _SETTINGS: H2Connection._on_settings,
    _PUSH_PROMISE: H2Connection._on_push_promise,
    _PING: H2Connection._on_ping,
    _GOAWAY: H2Connection._on_goaway,
    _WINDOW_UPDATE: H2Connection._on_window_update,
    _CONTINUATION: H2Connection._on_continuation,
}
"""Frame handlers by type; frames of other types are ignored (RFC 9113, 4.1)."""


def _unpad(flags: int, payload: bytes) -> bytes:
    if not flags & _PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "padding exceeds the frame")
    return payload[1 : len(payload) - payload[0]]


def _reason(e: BaseException) -> str:
    """The exception's type, and the first message along its causes: anyio's
    ``BrokenResourceError`` has none, the TLS alert under it says why."""
    cause: BaseException | None = e
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if str(cause):
            prefix = "" if cause is e else f"{type(cause).__name__}: "
            return f"{type(e).__name__}: {prefix}{cause}"
        cause = cause.__cause__ or cause.__context__
    return type(e).__name__


def _code_name(code: int) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return str(code)


def strip_pseudo(headers: Iterable[tuple[bytes, bytes]]) -> tuple[dict[bytes, bytes], RawHeaders]:
    """Splits ``:pseudo`` headers from regular ones."""
    pseudo: dict[bytes, bytes] = {}
    regular: RawHeaders = []
    for k, v in headers:
        if k[:1] == b":":
            pseudo[k] = v
        else:
            regular.append((k, v))
    return pseudo, regular


_H2_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
_BAD_VALUE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
_REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path"})


def request_header_error(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Why a request's header list is malformed (RFC 9113, 8.2 and 8.3.1), or None."""
    pseudo: dict[bytes, bytes] = {}
    regular = False
    host: bytes | None = None
    name_ok = _H2_NAME.fullmatch
    bad_value = _BAD_VALUE.search
    for name, value in headers:
        if name[:1] == b":":
            if regular:
                return "pseudo-header field after a regular one"
            if name not in _REQUEST_PSEUDO:
                return f"unknown pseudo-header field {name!r}"
            if name in pseudo:
                return f"repeated pseudo-header field {name!r}"
            pseudo[name] = value
        else:
            regular = True
            if name_ok(name) is None:
                return f"invalid field name {name!r}"
            if name in _CONNECTION_SPECIFIC:
                return f"connection-specific field {name!r}"
            if name == b"te" and value != b"trailers":
                return "te other than trailers"
            if name == b"host":
                host = value
        if value and bad_value(value) is not None:
            return f"invalid value for field {name!r}"
    method = pseudo.get(b":method")
    if not method:
        return "no :method"
    if method == b"CONNECT":
        if not pseudo.get(b":authority") or b":scheme" in pseudo or b":path" in pseudo:
            return "malformed CONNECT request"
    elif not pseudo.get(b":scheme") or not pseudo.get(b":path"):
        return "no :scheme or :path"
    authority = pseudo.get(b":authority")
    if host is not None and authority is not None and host != authority:
        return "host differs from :authority"
    return None


_CHECKED: dict[tuple[tuple[bytes, bytes], ...], str | None] = {}


def _request_error_cached(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """``request_header_error``, remembered for the header lists seen lately (a client
    sends the same few again and again; HPACK's cache hands them out as equal lists)."""
    key = tuple(headers)
    try:
        return _CHECKED[key]
    except KeyError:
        pass
    error = request_header_error(key)
    if len(_CHECKED) >= 256:
        _CHECKED.clear()
    if sum(len(k) + len(v) for k, v in key) <= 2048:
        _CHECKED[key] = error
    return error


def trailer_error(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Why a trailer section is malformed, or None."""
    for name, value in headers:
        if _H2_NAME.fullmatch(name) is None:
            return f"invalid field name {name!r}"
        if name in _CONNECTION_SPECIFIC:
            return f"connection-specific field {name!r}"
        if value and _BAD_VALUE.search(value) is not None:
            return f"invalid value for field {name!r}"
    return None
