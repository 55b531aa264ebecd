"""HTTP/2 (RFC 9113) for our client and our server: one connection engine, without I/O.

``H2Connection`` holds everything about an HTTP/2 connection except the socket:
it parses the bytes it is given (``process``) into frames and acts on them, and
queues the frames it owes the peer in ``_out`` (SETTINGS and PING
acknowledgements, window updates, resets, GOAWAY, and whatever the application
sends). A role (``client``) decides what truly differs between the two ends:
who opens streams (the client, odd ids), which header checks apply (a request,
or a response and its trailers), how a malformed message is answered (the
server resets that stream; our client ends the connection), and who sends the
connection preface. Everything else is shared: frame reading and writing, size
limits, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, RST_STREAM, PRIORITY,
CONTINUATION, padding, HPACK (an encoder without the dynamic table and a
decoder behind a cache), flow control both ways and stream bookkeeping.

The I/O edges subclass it thinly: ``_serve._h2`` (the server: a reader task per
connection, writes queued while it handles a batch) and ``_transport._h2client``
(the client: no task of its own, whoever waits reads for everyone). Their
stream classes add the waiting (``anyio`` events) to ``H2Stream``.

Flow control: a stream buffers at most its receive window (1 MiB; 16 MiB for
the connection), and window updates go out as the application consumes data
(once half a window is due), so a slow reader bounds what the peer can send.
A connection error queues GOAWAY with the code RFC 9113 names and loses the
connection; a stream error resets that stream.

Our own rather than ``h2``: measured, ``h2`` (with ``hyperframe`` and ``hpack``)
took more than half of the native server's time on h2c, and about 85 us of CPU
per unary call on the client, more than the rest of a call together.
"""

from __future__ import annotations

import enum
import re
import struct
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import hpack
from hpack.table import HeaderTable

RawHeaders = list[tuple[bytes, bytes]]


class ErrorCodes(enum.IntEnum):
    """HTTP/2 error codes (RFC 9113, 7)."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


DEFAULT_STREAM_WINDOW = 1 << 20
"""Receive window per stream: what one stream may buffer before its reader consumes."""
DEFAULT_CONNECTION_WINDOW = 16 << 20
"""Receive window of the whole connection, across streams."""
DEFAULT_MAX_FRAME = 1 << 16
"""The largest frame we accept (SETTINGS_MAX_FRAME_SIZE)."""
DEFAULT_MAX_HEADER_LIST = 1 << 16
"""The largest decoded header list accepted unless configured otherwise."""
READ_SIZE = 1 << 16
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_STREAM_ID = (1 << 31) - 1

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


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One serialized frame."""
    size = len(payload)
    return _FRAME_HEAD.pack(size >> 8, size & 0xFF, kind, flags, stream_id) + payload


class StreamError(Exception):
    """The stream is gone: reset (``code``), or its connection failed."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class ConnectionLost(StreamError):
    """The connection ended before the stream did."""


class _ConnectionError(Exception):
    """The peer broke HTTP/2: the connection ends with GOAWAY(code)."""

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
# HPACK (RFC 7541)

STATIC_TABLE: tuple[tuple[bytes, bytes], ...] = tuple(HeaderTable.STATIC_TABLE)
_STATIC_FIELD = {field: i + 1 for i, field in reversed(list(enumerate(STATIC_TABLE)))}
_STATIC_NAME = {name: i + 1 for i, (name, _) in reversed(list(enumerate(STATIC_TABLE)))}
_SENSITIVE = frozenset({b"authorization", b"proxy-authorization", b"cookie", b"set-cookie"})
"""Sent as "never indexed", so that no intermediary puts them in a table."""


def encode_integer(value: int, prefix_bits: int, first: int) -> bytes:
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


def encode_field(name: bytes, value: bytes) -> bytes:
    """One field, independent of any dynamic table: indexed if the static table has it
    whole, else a literal without indexing (never indexed for credentials), with the
    static table's name where it has the name. No Huffman coding."""
    index = _STATIC_FIELD.get((name, value))
    if index is not None:
        return encode_integer(index, 7, 0x80)
    first = 0x10 if name in _SENSITIVE else 0x00
    index = _STATIC_NAME.get(name)
    head = (
        encode_integer(index, 4, first)
        if index is not None
        else bytes((first,)) + encode_integer(len(name), 7, 0) + name
    )
    return head + encode_integer(len(value), 7, 0) + value


class Encoder:
    """Encodes header lists without the dynamic table, so that a list's encoding depends
    on nothing but the list: it is computed once and looked up afterwards. The first
    block (and the first after the peer changes its table size) starts with a dynamic
    table size update to 0."""

    __slots__ = ("_blocks", "_fields", "size_update")

    def __init__(self) -> None:
        self.size_update = True
        self._blocks: dict[tuple[tuple[bytes, bytes], ...], bytes] = {}
        self._fields: dict[tuple[bytes, bytes], bytes] = {}

    def encode(self, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
        key = tuple(headers)
        block = self._blocks.get(key)
        if block is None:
            fields = self._fields
            parts = []
            for field in key:
                encoded = fields.get(field)
                if encoded is None:
                    encoded = encode_field(field[0], field[1])
                    if len(fields) >= 4096:
                        fields.clear()
                    fields[field] = encoded
                parts.append(encoded)
            block = b"".join(parts)
            if len(block) <= 1024:
                if len(self._blocks) >= 256:
                    self._blocks.clear()
                self._blocks[key] = block
        if self.size_update:
            self.size_update = False
            return b"\x20" + block  # dynamic table size update: 0
        return block


class Decoder:
    """``hpack``'s decoder that remembers the blocks that leave the dynamic table as it
    was: such a block decodes to the same headers for as long as the table does not
    change, and a peer sending the same requests (or responses) over and over sends
    the same few blocks once its table is warm.

    Every change to the table goes through ``decode``, which forgets every block when
    a block changes the table (a new entry object at its front, or another length,
    size or maximum size): a block found in the cache means what it meant. The lists
    returned are shared with the cache: callers must not change them.
    """

    __slots__ = ("_cache", "_decoder", "_table")

    _CACHE_SIZE = 64
    _CACHE_BLOCK = 1024
    """Blocks longer than this are decoded each time (and never kept)."""

    def __init__(self, max_header_list_size: int = DEFAULT_MAX_HEADER_LIST) -> None:
        self._decoder = hpack.Decoder()
        self._decoder.max_header_list_size = max_header_list_size
        self._table: Any = self._decoder.header_table
        self._cache: dict[bytes, RawHeaders] = {}

    def decode(self, data: bytes) -> RawHeaders:
        """Raises ``hpack.HPACKError`` (or ``ValueError``, ``IndexError``) on a bad block."""
        cache = self._cache
        hit = cache.get(data)
        if hit is not None:
            return hit
        table = self._table
        entries = table.dynamic_entries
        front = entries[0] if entries else None
        count, size, maxsize = len(entries), table._current_size, table._maxsize
        try:
            headers: RawHeaders = list(self._decoder.decode(data, raw=True))
        except BaseException:
            cache.clear()  # the table may have changed halfway
            raise
        entries = table.dynamic_entries
        if (
            (entries[0] if entries else None) is front
            and len(entries) == count
            and table._current_size == size
            and table._maxsize == maxsize
        ):
            if len(data) <= self._CACHE_BLOCK:
                if len(cache) >= self._CACHE_SIZE:
                    cache.clear()
                cache[data if type(data) is bytes else bytes(data)] = headers
        elif cache:
            cache.clear()  # the table changed: cached blocks may mean something else now
        return headers


# ---------------------------------------------------------------------------
# streams


class H2Stream:
    """One HTTP/2 stream: its state on the wire and the data received. The I/O edges
    subclass it with the waiting (``_events`` are set by ``_wake``)."""

    __slots__ = (
        "_conn",
        "_content_length",
        "_counted",
        "_data",
        "_events",
        "_out",
        "_out_size",
        "_received",
        "_recv_unacked",
        "buffered",
        "error",
        "headers",
        "id",
        "local_closed",
        "recv_window",
        "remote_ended",
        "send_window",
        "status",
        "trailers",
        "window_waiting",
    )

    def __init__(self, conn: H2Connection, stream_id: int) -> None:
        self._conn = conn
        self.id = stream_id
        self.status = 0
        """A response's status (client role)."""
        self.headers: RawHeaders | None = None
        self.trailers: RawHeaders | None = None
        self._data: deque[bytes] = deque()
        self.buffered = 0
        """Bytes received and not yet taken by the application (at most the window)."""
        self.remote_ended = False
        self.local_closed = False
        self.error: StreamError | None = None
        self._events: list[anyio.Event] = []
        self.window_waiting = False
        self.send_window = conn._peer_initial_window
        self.recv_window = conn._stream_window
        self._recv_unacked = 0
        self._content_length = -1
        self._received = 0
        self._counted = True
        """Whether the stream counts against the concurrency limit (open on the wire)."""
        self._out: list[bytes] = []
        """Data sent with ``flush=False``, not yet framed (it fits the window)."""
        self._out_size = 0

    def _wake(self) -> None:
        events = self._events
        if events:
            self._events = []
            for event in events:
                event.set()

    @property
    def receive_window(self) -> int:
        """What the peer may still send on this stream before the application consumes more."""
        if self.remote_ended or self.error is not None:
            return 0
        return self.recv_window

    @property
    def closed(self) -> bool:
        """Both sides ended (or the stream failed)."""
        return (self.remote_ended and self.local_closed) or self.error is not None

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def _window(self) -> int:
        return min(self.send_window, self._conn._send_window)

    def _taken(self, size: int) -> None:
        """The application took ``size`` bytes: their window is given back when due."""
        self.buffered -= size
        self._conn._consumed(self, size)

    def _give_back(self) -> None:
        """Returns the connection window of data that will now never be read."""
        if self._data:
            self._data.clear()
            self._conn._consumed(None, self.buffered)
            self.buffered = 0

    def _queue_data(self, data: bytes | memoryview, end_stream: bool) -> None:
        """Queues one DATA frame (it fits the window and the peer's frame size)."""
        size = len(data)
        conn = self._conn
        self.send_window -= size
        conn._send_window -= size
        out = conn._out
        out.append(
            _FRAME_HEAD.pack(
                size >> 8, size & 0xFF, _DATA, _END_STREAM if end_stream else 0, self.id
            )
        )
        out.append(bytes(data) if type(data) is not bytes else data)
        if end_stream:
            self._closed_locally()

    def _queue_end(self) -> None:
        """Queues the end of our side (an empty DATA frame with END_STREAM)."""
        if self._out:
            self._frame_out()
        self._conn._out.append(frame(_DATA, _END_STREAM, self.id))
        self._closed_locally()

    def _frame_out(self) -> None:
        """Queues the data sent with ``flush=False`` as DATA frames, as far as the window
        allows (it normally has room for all of it)."""
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

    def _closed_locally(self) -> None:
        self.local_closed = True
        if self.remote_ended:
            self._conn._closed(self)

    def reset_nowait(self, code: int = ErrorCodes.CANCEL) -> None:
        """Aborts the stream; the RST_STREAM leaves with the next write (harmless if the
        stream already ended)."""
        self._conn._reset_now(self, code)


# ---------------------------------------------------------------------------
# the connection


class H2Connection:
    """One end of an HTTP/2 connection, without I/O: ``process`` takes the bytes read,
    ``_out`` holds the frames to write. ``client`` picks the role."""

    stream_class: type[H2Stream] = H2Stream
    """The class of the streams the peer opens (server role)."""

    def __init__(
        self,
        *,
        client: bool,
        max_concurrent_streams: int | None = None,
        stream_window: int = DEFAULT_STREAM_WINDOW,
        connection_window: int = DEFAULT_CONNECTION_WINDOW,
        max_header_list_size: int | None = None,
        on_request: Callable[[Any], None] | None = None,
    ) -> None:
        self.client = client
        self._streams: dict[int, Any] = {}
        self._active = 0
        """Streams open on the wire (they count against MAX_CONCURRENT_STREAMS)."""
        self._out: list[bytes] = []
        """Frames queued for the next write."""
        self._unframed: dict[H2Stream, None] = {}
        """Streams with data sent with ``flush=False`` and not yet framed, in order."""
        self._flush_wanted: anyio.Event | None = None
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
        self._decoder = Decoder(max_header_list_size or DEFAULT_MAX_HEADER_LIST)
        self._encoder = Encoder()
        self._next_id = 1
        """The next stream id we open (client role)."""
        # The peer's.
        self._peer_initial_window = 65535
        self._peer_max_frame = 16384
        self._peer_max_streams = 1 << 32
        self._send_window = 65535
        # Reading.
        self._buf = b""
        self._preface = client
        """Whether the connection preface is behind us (only a client sends one)."""
        self._settings_seen = False
        self._highest = 0
        """The highest stream id in use: the peer's (server role) or ours (client role)."""
        self._headers_pending: tuple[int, int, list[bytes], int] | None = None
        """A header block still waiting for CONTINUATION: stream, flags, fragments, size."""

    def _queue_preface(self) -> None:
        """Queues what opens the connection: the client's preface, our SETTINGS and the
        connection window beyond the default."""
        settings = [
            (_INITIAL_WINDOW_SIZE, self._stream_window),
            (_MAX_FRAME_SIZE, DEFAULT_MAX_FRAME),
        ]
        if self.client:
            settings.insert(0, (_ENABLE_PUSH, 0))
        if self._max_streams is not None:
            settings.append((_MAX_CONCURRENT_STREAMS, self._max_streams))
        if self._max_header_list is not None:
            settings.append((_MAX_HEADER_LIST_SIZE, self._max_header_list))
        payload = b"".join(_SETTING.pack(key, value) for key, value in settings)
        out = frame(_SETTINGS, 0, 0, payload)
        extra = self._connection_window - 65535
        if extra > 0:
            self._recv_window += extra
            out += frame(_WINDOW_UPDATE, 0, 0, _U32.pack(extra))
        self._out.append(PREFACE + out if self.client else out)

    # -- state ----------------------------------------------------------------

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

    def has_capacity(self) -> bool:
        """Whether we may open a stream now (client role)."""
        return self.accepting and self._active < self._peer_max_streams

    @property
    def buffered(self) -> int:
        """Bytes received on all streams and not yet taken by the application."""
        return sum(stream.buffered for stream in self._streams.values())

    def _queue_goaway(self, code: int, message: str = "") -> None:
        self.goaway_sent = True
        # The last stream the peer opened that we process (a client processes none).
        last = 0 if self.client else self._highest
        self._goaway_last_sent = last
        payload = _GOAWAY_HEAD.pack(last, code) + message.encode()[:256]
        self._out.append(frame(_GOAWAY, 0, 0, payload))

    # -- hooks for the I/O edges ---------------------------------------------------

    def _capacity_changed(self) -> None:
        """A stream slot may have opened, or the connection stopped accepting."""

    def flush_soon(self) -> None:
        """Has the connection's writer write what is queued once the current task lets it
        run: frames queued meanwhile leave in the same write. Without a writer, nothing
        happens (the caller flushes itself)."""
        wanted = self._flush_wanted
        if wanted is not None and not wanted.is_set():
            wanted.set()

    # -- reading -----------------------------------------------------------------

    def process(self, data: bytes) -> None:
        """Processes bytes read from the socket; what they call for is queued in ``_out``.
        A connection error queues GOAWAY and loses the connection; a stream error
        resets that stream."""
        lost = self.error is not None  # (not narrowing ``self.error``: handlers change it)
        if lost:
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
                    raise _ConnectionError(
                        ErrorCodes.FRAME_SIZE_ERROR, f"frame of {length} bytes is too large"
                    )
                end = pos + 9 + length
                if end > size:
                    break
                payload = buf[pos + 9 : end]
                pos = end
                stream_id &= 0x7FFFFFFF
                if self._headers_pending is not None and kind != _CONTINUATION:
                    raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "CONTINUATION expected")
                if not self._settings_seen:
                    if kind != _SETTINGS or flags & _ACK:
                        raise _ConnectionError(
                            ErrorCodes.PROTOCOL_ERROR, "the peer's first frame is not SETTINGS"
                        )
                    self._settings_seen = True
                try:
                    if kind == _DATA:
                        self._on_data(flags, stream_id, payload)
                    elif kind == _HEADERS:
                        self._on_headers(flags, stream_id, payload)
                    else:
                        handler = _HANDLERS.get(kind)
                        if handler is not None:
                            handler(self, flags, stream_id, payload)
                except _StreamReset as e:
                    self._reset_id(e.stream_id, e.code)
                if self.error is not None:
                    return
        except _ConnectionError as e:
            self._fail(e.code, str(e))
            return
        self._buf = buf[pos:] if pos < size else b""

    def _fail(self, code: int, message: str) -> None:
        """A connection error: GOAWAY with ``code``, then the connection is lost."""
        if self.error is None and not self._write_failed:
            self._queue_goaway(code, message)
        self._lost(f"HTTP/2 protocol error: {message}")

    def _idle(self, stream_id: int) -> bool:
        """Whether ``stream_id`` names a stream never opened (nobody pushes: even ids never)."""
        return stream_id > self._highest or not stream_id & 1

    def _malformed(self, stream_id: int, code: int, message: str) -> Exception:
        """The error for a malformed message: our client ends the connection, the server
        resets the stream."""
        if self.client:
            return _ConnectionError(code, message)
        return _StreamReset(stream_id, code, message)

    # -- frames in ---------------------------------------------------------------

    def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "DATA on stream 0")
        flow = len(payload)
        self._recv_window -= flow
        if self._recv_window < 0:
            raise _ConnectionError(ErrorCodes.FLOW_CONTROL_ERROR, "connection window exceeded")
        data = payload
        if flags & _PADDED:
            if not payload or payload[0] >= flow:
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "padding exceeds the frame")
            data = payload[1 : flow - payload[0]]
        stream = self._streams.get(stream_id)
        if stream is None or stream.error is not None:
            # Reset or finished: nobody will read it. Hand the window back now.
            self._consumed(None, flow)
            if self._idle(stream_id):
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "DATA on an idle stream")
            return
        if stream.remote_ended or stream.headers is None:
            self._consumed(None, flow)
            if stream.remote_ended:
                raise self._malformed(stream_id, ErrorCodes.STREAM_CLOSED, "DATA after END_STREAM")
            raise self._malformed(stream_id, ErrorCodes.PROTOCOL_ERROR, "DATA before HEADERS")
        stream.recv_window -= flow
        if stream.recv_window < 0:
            self._consumed(None, flow)
            raise _StreamReset(stream_id, ErrorCodes.FLOW_CONTROL_ERROR, "stream window exceeded")
        size = len(data)
        if flow > size:
            self._consumed(stream, flow - size)  # padding is consumed at once
        if size:
            stream._received += size
            stream.buffered += size
            stream._data.append(data)
            if 0 <= stream._content_length < stream._received:
                raise self._malformed(
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
        if self.client and (stream_id > self._highest or not stream_id & 1):
            raise _ConnectionError(
                ErrorCodes.PROTOCOL_ERROR, f"HEADERS on a stream we never opened ({stream_id})"
            )
        # Every block is decoded, even one for a stream we refuse: HPACK's state is shared.
        try:
            headers = self._decoder.decode(block)
        except hpack.OversizedHeaderListError as e:
            raise _ConnectionError(
                ErrorCodes.ENHANCE_YOUR_CALM, f"header list too large: {e}"
            ) from None
        except (hpack.HPACKError, ValueError, IndexError) as e:
            raise _ConnectionError(ErrorCodes.COMPRESSION_ERROR, f"bad header block: {e}") from None
        if flags & _SELF_DEPENDENT:
            raise _StreamReset(stream_id, ErrorCodes.PROTOCOL_ERROR, "depends on itself")
        stream = self._streams.get(stream_id)
        if stream is None:
            if self.client:
                return  # a stream we gave up (the block still had to be decoded)
            self._on_request_head(flags, stream_id, headers)
            return
        if stream.error is not None:
            return
        end_stream = bool(flags & _END_STREAM)
        if stream.remote_ended:
            raise self._malformed(stream_id, ErrorCodes.STREAM_CLOSED, "HEADERS after END_STREAM")
        if self.client and stream.headers is None:
            self._on_response_head(stream, headers, end_stream)
            return
        # Trailers.
        if not end_stream:
            raise self._malformed(
                stream_id, ErrorCodes.PROTOCOL_ERROR, "trailers without END_STREAM"
            )
        if trailer_error(headers) is not None:
            raise self._malformed(stream_id, ErrorCodes.PROTOCOL_ERROR, "malformed trailers")
        stream.trailers = list(headers)
        self._remote_end(stream)
        stream._wake()

    def _on_request_head(self, flags: int, stream_id: int, headers: RawHeaders) -> None:
        """A new stream from the client (server role)."""
        if stream_id <= self._highest:
            if not stream_id & 1:
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "HEADERS on a server stream id")
            return  # a stream that is over (reset or finished): ignored
        if not stream_id & 1:
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "even stream id from a client")
        self._highest = stream_id
        if self.goaway_sent and stream_id > self._goaway_last_sent:
            # Opened after our GOAWAY: never processed, so safe for the peer to retry.
            raise _StreamReset(stream_id, ErrorCodes.REFUSED_STREAM, "after GOAWAY")
        limit = self._max_streams
        if limit is not None and self._active >= limit:
            raise _StreamReset(stream_id, ErrorCodes.REFUSED_STREAM, "too many streams")
        if _request_error_cached(headers) is not None:
            raise _StreamReset(stream_id, ErrorCodes.PROTOCOL_ERROR, "malformed request")
        stream = self.stream_class(self, stream_id)
        stream.headers = headers = list(headers)
        for name, value in headers:
            if name == b"content-length":
                stream._content_length = int(value) if value.isdigit() else -1
                break
        self._streams[stream_id] = stream
        self._active += 1
        if flags & _END_STREAM:
            if stream._content_length > 0:
                raise _StreamReset(
                    stream_id, ErrorCodes.PROTOCOL_ERROR, "less data than content-length"
                )
            stream.remote_ended = True
        if self._on_request is not None:
            self._on_request(stream)

    def _on_response_head(self, stream: H2Stream, fields: RawHeaders, end_stream: bool) -> None:
        """A response head (client role); informational ones are skipped."""
        status, regular = _response_head(fields)
        if status < 200:
            if end_stream:
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "informational END_STREAM")
            return  # an informational response: the real one follows
        stream.status = status
        stream.headers = regular
        for name, value in regular:
            if name == b"content-length":
                if not value.isdigit():
                    raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "bad content-length")
                stream._content_length = int(value)
        if end_stream:
            self._remote_end(stream)
        stream._wake()

    def _remote_end(self, stream: H2Stream) -> None:
        if 0 <= stream._content_length != stream._received:
            raise self._malformed(
                stream.id,
                ErrorCodes.PROTOCOL_ERROR,
                f"content-length {stream._content_length}, body of {stream._received}",
            )
        stream.remote_ended = True
        if stream.local_closed:
            self._closed(stream)

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
        if stream_id == 0 or self._idle(stream_id):
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "RST_STREAM on an idle stream")
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        code = _U32.unpack(payload)[0]
        stream.error = StreamError(code, f"stream reset by peer ({_code_name(code)})")
        self._drop_out(stream)
        if not self.client:
            # A request reset: its body is of no use. (A client keeps what arrived before
            # the reset readable: a whole response, even.)
            stream._give_back()
        self._uncount(stream)
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
                    stream.send_window += delta
                    if stream.send_window > _MAX_WINDOW:
                        raise _ConnectionError(ErrorCodes.FLOW_CONTROL_ERROR, "window too large")
                    if stream.window_waiting:
                        stream._wake()
                if self._unframed:
                    self.flush_soon()
            elif key == _MAX_FRAME_SIZE:
                if not 16384 <= value <= 16777215:
                    raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "invalid MAX_FRAME_SIZE")
                self._peer_max_frame = value
            elif key == _MAX_CONCURRENT_STREAMS:
                self._peer_max_streams = value
                self._capacity_changed()
            elif key == _HEADER_TABLE_SIZE:
                self._encoder.size_update = True  # our blocks keep announcing a table of 0
            elif key == _ENABLE_PUSH and (value > 1 or (value and self.client)):
                # Only a client may enable push (RFC 9113, 6.5.2).
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "invalid ENABLE_PUSH")
        self._out.append(frame(_SETTINGS, _ACK, 0))

    def _on_push_promise(self, flags: int, stream_id: int, payload: bytes) -> None:
        raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "PUSH_PROMISE: push is disabled")

    def _on_ping(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "PING on a stream")
        if len(payload) != 8:
            raise _ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "PING of the wrong size")
        if not flags & _ACK:
            self._out.append(frame(_PING, _ACK, 0, payload))

    def _on_goaway(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "GOAWAY on a stream")
        if len(payload) < 8:
            raise _ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "GOAWAY too short")
        last, code = _GOAWAY_HEAD.unpack_from(payload)
        last &= 0x7FFFFFFF
        self.goaway_received = True
        self.last_stream_id = last
        if self.client:
            for other_id, stream in list(self._streams.items()):
                if other_id > last:
                    # Never processed by the server: safe to retry elsewhere.
                    del self._streams[other_id]
                    stream.error = StreamError(
                        ErrorCodes.REFUSED_STREAM, "stream refused by GOAWAY"
                    )
                    self._drop_out(stream)
                    stream._give_back()
                    self._uncount(stream)
                    stream._wake()
        if code:
            self._lost(f"connection closed by peer (GOAWAY {_code_name(code)})")
        self._capacity_changed()

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
                if self._idle(stream_id):
                    raise _ConnectionError(
                        ErrorCodes.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream"
                    )
                return
            if not increment:
                raise _StreamReset(stream_id, ErrorCodes.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            target.send_window += increment
            if target.send_window > _MAX_WINDOW:
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
        self._capacity_changed()

    def _uncount(self, stream: H2Stream) -> None:
        if stream._counted:
            stream._counted = False
            self._active -= 1
            self._capacity_changed()

    def _closed(self, stream: H2Stream) -> None:
        """Both sides of ``stream`` ended: it no longer counts against the limit, and is
        forgotten once the application took all its data."""
        if stream._counted:
            self._uncount(stream)
        if not stream._data and self._streams.get(stream.id) is stream:
            del self._streams[stream.id]

    def _consumed(self, stream: H2Stream | None, size: int) -> None:
        """``size`` bytes of flow-controlled data are consumed: the window they took is
        given back in WINDOW_UPDATEs, once half a window is due."""
        unacked = self._recv_unacked + size
        if unacked >= self._connection_window // 2 or self._recv_window < (
            self._connection_window // 4
        ):
            if unacked:
                self._recv_window += unacked
                self._out.append(frame(_WINDOW_UPDATE, 0, 0, _U32.pack(unacked)))
            unacked = 0
        self._recv_unacked = unacked
        if stream is None or stream.remote_ended or stream.error is not None:
            return
        unacked = stream._recv_unacked + size
        if unacked >= self._stream_window // 2:
            stream.recv_window += unacked
            self._out.append(frame(_WINDOW_UPDATE, 0, stream.id, _U32.pack(unacked)))
            unacked = 0
        stream._recv_unacked = unacked

    def _drop_out(self, stream: H2Stream) -> None:
        if stream._out:
            stream._out.clear()
            stream._out_size = 0
            self._unframed.pop(stream, None)

    def _reset_id(self, stream_id: int, code: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None:
            self._reset_now(stream, code)
        else:
            self._out.append(frame(_RST_STREAM, 0, stream_id, _U32.pack(code)))

    def _reset_now(self, stream: H2Stream, code: int) -> None:
        """Resets a stream (queues RST_STREAM unless it is over)."""
        if self._streams.get(stream.id) is stream:
            del self._streams[stream.id]
        self._drop_out(stream)
        send = not (stream.remote_ended and stream.local_closed) and stream.error is None
        if stream.error is None:
            stream.error = StreamError(code, "stream reset")
        stream._give_back()
        self._uncount(stream)
        if send and self.error is None:
            self._out.append(frame(_RST_STREAM, 0, stream.id, _U32.pack(code)))
        stream._wake()

    def forget(self, stream: H2Stream) -> None:
        """The application is done with ``stream``: drops it from the bookkeeping and
        gives back the window of what it left unread."""
        if self._streams.get(stream.id) is stream:
            del self._streams[stream.id]
        if stream._data:
            stream._give_back()
        if stream._counted:
            self._uncount(stream)

    # -- writing -----------------------------------------------------------------

    def _queue_headers(self, stream_id: int, headers: RawHeaders, end_stream: bool) -> None:
        block = self._encoder.encode(headers)
        flags = _END_STREAM if end_stream else 0
        max_frame = self._peer_max_frame
        if len(block) <= max_frame:
            self._out.append(frame(_HEADERS, flags | _END_HEADERS, stream_id, block))
            return
        self._out.append(frame(_HEADERS, flags, stream_id, block[:max_frame]))
        pos = max_frame
        while pos < len(block):
            chunk = block[pos : pos + max_frame]
            pos += len(chunk)
            last = _END_HEADERS if pos >= len(block) else 0
            self._out.append(frame(_CONTINUATION, last, stream_id, chunk))

    def _open_stream(
        self, stream: H2Stream, headers: RawHeaders, end_stream: bool, body: bytes
    ) -> bytes:
        """Opens ``stream`` (client role; its id from ``_next_id``): queues its headers and,
        when the windows and the frame size admit it, ``body`` (then the stream ends with
        ``end_stream``). Returns the part of the body still to send."""
        stream_id = stream.id
        self._next_id = stream_id + 2
        self._highest = stream_id
        self._streams[stream_id] = stream
        self._active += 1
        fits = len(body) <= min(self._send_window, stream.send_window, self._peer_max_frame)
        closes = end_stream and not body
        self._queue_headers(stream_id, headers, closes)
        if closes:
            stream.local_closed = True
        if body and fits:
            stream._queue_data(body, end_stream)
            body = b""
        return body


_HANDLERS: dict[int, Callable[[H2Connection, int, int, bytes], None]] = {
    _PRIORITY: H2Connection._on_priority,
    _RST_STREAM: H2Connection._on_rst_stream,
    _SETTINGS: H2Connection._on_settings,
    _PUSH_PROMISE: H2Connection._on_push_promise,
    _PING: H2Connection._on_ping,
    _GOAWAY: H2Connection._on_goaway,
    _WINDOW_UPDATE: H2Connection._on_window_update,
    _CONTINUATION: H2Connection._on_continuation,
}
"""Handlers of the frame types other than DATA and HEADERS; frames of unknown types are
ignored (RFC 9113, 4.1)."""


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


# ---------------------------------------------------------------------------
# header checks (RFC 9113, 8.2 and 8.3)


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
    """Why a trailer section is malformed (a pseudo-header, a bad name or value, a
    connection-specific field), or None."""
    for name, value in headers:
        if name not in _GOOD_NAMES:
            if _H2_NAME.fullmatch(name) is None:
                return f"invalid field name {name!r}"
            if name in _CONNECTION_SPECIFIC:
                return f"connection-specific field {name!r}"
            if len(_GOOD_NAMES) < 1024:
                _GOOD_NAMES.add(name)
        if value and _BAD_VALUE.search(value) is not None:
            return f"invalid value for field {name!r}"
    return None


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
            if name not in _GOOD_NAMES:
                if _H2_NAME.fullmatch(name) is None or name in _CONNECTION_SPECIFIC:
                    raise _ConnectionError(
                        ErrorCodes.PROTOCOL_ERROR, f"malformed header name {name!r}"
                    )
                if len(_GOOD_NAMES) < 1024:
                    _GOOD_NAMES.add(name)
            regular.append(field)
    if status < 0:
        raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "response without :status")
    return status, regular


_GOOD_NAMES: set[bytes] = set()
"""Regular field names already found well-formed (the same few come again and again)."""
