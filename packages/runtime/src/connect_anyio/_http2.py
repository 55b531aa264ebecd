"""One HTTP/2 connection engine on ``h2`` over an anyio byte stream, for both roles.

The client and the native server share it: frame pump, flow control both ways,
stream bookkeeping, RST_STREAM and GOAWAY.

Reading needs no background task. Whoever waits for something on a stream
reads the socket on behalf of everyone while no one else does ("reader
election"); the others sleep on their own stream's event and are woken when a
frame concerns them, or when the reader leaves and one of them must take over.
The server reads in tasks of its own instead (``receive_bytes``, ``process``,
with writes ``corked`` while it handles a batch; see ``_serve._h2``).

Writes are serialized and shielded; on a stream that can take bytes without
waiting (``send_nowait``) a write that needs no waiting also needs no lock.

Memory stays bounded: a stream buffers at most its flow-control window, and
window updates go out only as the application consumes data.
"""

from __future__ import annotations

import contextlib
import re
import select
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
from anyio.abc import ByteStream, SocketAttribute
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

RawHeaders = list[tuple[bytes, bytes]]

DEFAULT_STREAM_WINDOW = 1 << 20
"""Receive window per stream: what one stream may buffer before its reader consumes."""
DEFAULT_CONNECTION_WINDOW = 16 << 20
"""Receive window of the whole connection, across streams."""
DEFAULT_MAX_FRAME = 1 << 16
READ_SIZE = 1 << 16


class _H2(h2.connection.H2Connection):
    """``h2`` with the graceful GOAWAY that HTTP/2 specifies.

    ``h2`` treats a GOAWAY, sent or received, as the end of the connection: every
    later frame either way is a protocol error, and on receipt whatever was queued
    to send is dropped. HTTP/2 (RFC 9113, 6.8) lets the streams up to the GOAWAY's
    last stream id run to completion. Here a graceful GOAWAY changes no state;
    refusing the streams above that id is ``H2Connection``'s job. A GOAWAY with an
    error code still ends the connection as ``h2`` has it.
    """

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Any], list[Any]]:
        if frame.error_code:
            return super()._receive_goaway_frame(frame)
        event = h2.events.ConnectionTerminated()
        event.error_code = ErrorCodes.NO_ERROR
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    def send_graceful_goaway(self, last_stream_id: int) -> None:
        """Queues GOAWAY(NO_ERROR, ``last_stream_id``); the connection stays usable."""
        frame = GoAwayFrame(stream_id=0, last_stream_id=last_stream_id, error_code=0)
        self._prepare_for_sending([frame])


class _Decoder(hpack.Decoder):
    """``hpack``'s decoder that remembers the blocks that leave the dynamic table as it
    was: such a block decodes to the same headers for as long as the table does not
    change, and a peer sending the same requests (or responses) over and over sends
    the same few blocks once its table is warm.

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


class StreamError(Exception):
    """The stream is gone: reset by the peer (``code``), or its connection failed."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class ConnectionLost(StreamError):
    """The connection ended before the stream did."""


class H2Stream:
    """One HTTP/2 stream: headers, data and trailers in each direction."""

    __slots__ = (
        "_conn",
        "_data",
        "_events",
        "_out",
        "_out_size",
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
        self._out: list[bytes] = []
        """Data sent with ``flush=False``, not yet framed (it fits the window)."""
        self._out_size = 0
        self.id = stream_id
        self.headers: RawHeaders | None = None
        self.trailers: RawHeaders | None = None
        self._data: deque[tuple[bytes, int]] = deque()
        self.remote_ended = False
        self.local_closed = False
        self.error: StreamError | None = None
        self._events: list[anyio.Event] = []
        self.window_waiting = False

    def _wake(self) -> None:
        events = self._events
        if events:
            self._events = []
            waiters = self._conn._waiters
            for event in events:
                waiters.pop(event, None)
                event.set()

    # -- receiving -------------------------------------------------------------

    async def receive_headers(self) -> RawHeaders:
        """The peer's headers (a response, or on the server side the request)."""
        await self._conn._wait(self, lambda: self.headers is not None or self.error is not None)
        if self.headers is None:
            assert self.error is not None
            raise self.error
        return self.headers

    async def receive_data(self) -> bytes:
        """The next chunk of the body; ``b""`` once the peer ended the stream."""
        conn = self._conn
        await conn._wait(
            self, lambda: bool(self._data) or self.remote_ended or self.error is not None
        )
        if self._data:
            data, flow = self._data.popleft()
            if flow:
                conn._ack(self.id, flow)
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
        try:
            return int(self._conn._h2.remote_flow_control_window(self.id))
        except (h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError, KeyError):
            return 0

    async def wait_reset(self) -> None:
        """Returns once the stream is reset or its connection is lost."""
        await self._conn._wait(self, lambda: self.error is not None)

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
        if body and len(body) > min(self._window(), conn._h2.max_outbound_frame_size):
            conn._h2.send_headers(self.id, headers)
            await conn._flush()
            await self.send_data(body, end_stream=end_stream)
            return
        conn._h2.send_headers(self.id, headers, end_stream=end_stream and not body)
        if body:
            conn._h2.send_data(self.id, body, end_stream=end_stream)
        if end_stream:
            self._closed_locally()
        await conn._flush()

    async def send_data(self, data: bytes, end_stream: bool = False, flush: bool = True) -> None:
        """Sends ``data``, waiting for flow-control window as needed.

        ``flush=False``: the data may stay queued (when the window has room for it) and
        leave with what follows in as few frames as fit; the caller has the connection
        write it soon (``H2Connection.flush_soon``)."""
        conn = self._conn
        h2conn = conn._h2
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
                    h2conn.end_stream(self.id)
                    self._closed_locally()
                    await conn._flush()
                return
            window = self._window()
            if window <= 0:
                await conn._flush()  # the peer needs what we sent to open the window again
                self.window_waiting = True
                try:
                    await conn._wait(self, lambda: self._window() > 0 or self.error is not None)
                finally:
                    self.window_waiting = False
                continue
            n = min(remaining, window, h2conn.max_outbound_frame_size)
            last = pos + n == total
            h2conn.send_data(self.id, view[pos : pos + n], end_stream=end_stream and last)
            pos += n
            if end_stream and last:
                self._closed_locally()
            if not last or flush or end_stream:
                await conn._flush()
            if last:
                return

    async def send_trailers(self, trailers: RawHeaders) -> None:
        await self.send_headers(trailers, end_stream=True)

    def _frame_out(self) -> None:
        """Hands the queued data to h2 as DATA frames, as far as the window allows (it
        normally has room for all of it: see ``send_data``)."""
        out, self._out = self._out, []
        self._out_size = 0
        self._conn._unframed.pop(self, None)
        if self.error is not None:
            return
        h2conn = self._conn._h2
        data = out[0] if len(out) == 1 else b"".join(out)
        view = memoryview(data)
        total = len(data)
        pos = 0
        max_frame = h2conn.max_outbound_frame_size
        while pos < total:
            n = min(total - pos, self._window(), max_frame)
            if n <= 0:
                # The peer shrank the window since (SETTINGS): the rest waits for it.
                self._out = [bytes(view[pos:])]
                self._out_size = total - pos
                self._conn._unframed[self] = None
                return
            h2conn.send_data(self.id, view[pos : pos + n])
            pos += n

    async def end(self) -> None:
        """Ends our side of the stream."""
        if self.local_closed:
            return
        self._check()
        if self._out:
            self._frame_out()
        self._conn._h2.end_stream(self.id)
        self._closed_locally()
        await self._conn._flush()

    async def reset(self, code: int = ErrorCodes.CANCEL) -> None:
        """Aborts the stream (RST_STREAM); harmless if it already ended."""
        await self._conn._reset(self, code)

    def _closed_locally(self) -> None:
        self.local_closed = True
        if self.remote_ended:
            self._conn._capacity_changed()

    def _window(self) -> int:
        try:
            return self._conn._h2.local_flow_control_window(self.id)
        except (h2.exceptions.StreamClosedError, KeyError):
            return 0

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    @property
    def closed(self) -> bool:
        """Both sides ended (or the stream failed)."""
        return (self.remote_ended and self.local_closed) or self.error is not None


class H2Connection:
    """An HTTP/2 connection in either role over an established byte stream."""

    def __init__(
        self,
        stream: ByteStream,
        *,
        client: bool,
        max_concurrent_streams: int | None = None,
        stream_window: int = DEFAULT_STREAM_WINDOW,
        connection_window: int = DEFAULT_CONNECTION_WINDOW,
        max_header_list_size: int | None = None,
        on_request: Callable[[H2Stream], None] | None = None,
    ) -> None:
        self._stream = stream
        self.client = client
        config = h2.config.H2Configuration(
            client_side=client,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            # The server checks request headers itself (``request_header_error``): in one
            # pass instead of h2's chain of generators, and a malformed request resets
            # its stream (RFC 9113, 8.1.1) instead of failing the whole connection.
            validate_inbound_headers=client,
        )
        self._h2 = _H2(config=config)
        self._h2.decoder = _Decoder()
        self._h2.decoder.max_header_list_size = self._h2.DEFAULT_MAX_HEADER_LIST_SIZE
        self._streams: dict[int, H2Stream] = {}
        self._write_lock = anyio.Lock(fast_acquire=True)
        self._send_nowait: Callable[[bytes], int] | None = getattr(stream, "send_nowait", None)
        self.corked = False
        """While set, writes stay queued (the server's reader sets it while it handles a
        batch of frames and the calls they complete, then writes once)."""
        self._flush_wanted: anyio.Event | None = None
        self._unframed: dict[H2Stream, None] = {}
        """Streams with data sent with ``flush=False`` and not yet framed, in order."""
        self._reading = False
        self._waiters: dict[anyio.Event, None] = {}
        self._conn_waiters: list[anyio.Event] = []
        self._on_request = on_request
        self.error: StreamError | None = None
        self.goaway_received = False
        self.goaway_sent = False
        self.last_stream_id: int | None = None
        settings: dict[h2.settings.SettingCodes, int] = {
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: stream_window,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: DEFAULT_MAX_FRAME,
        }
        if client:
            settings[h2.settings.SettingCodes.ENABLE_PUSH] = 0
        if max_concurrent_streams is not None:
            settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = max_concurrent_streams
        if max_header_list_size is not None:
            settings[h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE] = max_header_list_size
        self._h2.local_settings = h2.settings.Settings(client=client, initial_values=settings)
        self._settings = settings
        # Server role: we refuse streams beyond our limit ourselves (see ``start``).
        self._max_inbound_streams = None if client else max_concurrent_streams
        # h2 derives these limits from the settings it was built with and updates them only
        # when a settings change is acknowledged; ours are initial values, so apply them now
        # (else a peer's frames above 16 KiB, which our SETTINGS allow, are a FRAME_SIZE_ERROR).
        self._h2.max_inbound_frame_size = self._h2.local_settings.max_frame_size
        if max_header_list_size is not None:
            self._h2.decoder.max_header_list_size = max_header_list_size
        self._connection_window = connection_window

    async def start(self) -> None:
        """Sends the preface and our settings."""
        self._h2.initiate_connection()
        if self._max_inbound_streams is not None:
            # Our SETTINGS (queued above) advertise the limit; h2 itself would answer a
            # stream beyond it by ending the whole connection (TooManyStreamsError), where
            # RFC 9113 5.1.2 allows refusing just that stream. So h2 gets no limit and
            # ``_dispatch`` refuses extra streams with REFUSED_STREAM (safe to retry).
            unlimited = {
                **self._settings,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 2**31 - 1,
            }
            self._h2.local_settings = h2.settings.Settings(client=False, initial_values=unlimited)
        extra = self._connection_window - 65535
        if extra > 0:
            self._h2.increment_flow_control_window(extra)
        await self._flush()

    # -- state ----------------------------------------------------------------

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def max_outbound_streams(self) -> int:
        return int(self._h2.remote_settings.max_concurrent_streams)

    @property
    def accepting(self) -> bool:
        """Whether new streams may be opened on this connection."""
        return self.error is None and not self.goaway_received and not self.goaway_sent

    @property
    def buffered(self) -> int:
        """Bytes received on all streams and not yet taken by the application."""
        return sum(stream.buffered for stream in self._streams.values())

    def has_capacity(self) -> bool:
        return self.accepting and self._h2.open_outbound_streams < self.max_outbound_streams

    # -- client role -------------------------------------------------------------

    async def open_stream(self, headers: RawHeaders, end_stream: bool = False) -> H2Stream:
        """Starts a request stream (client role)."""
        if not self.accepting:
            raise self.error or ConnectionLost(ErrorCodes.REFUSED_STREAM, "connection is closing")
        stream_id = self._h2.get_next_available_stream_id()
        stream = H2Stream(self, stream_id)
        self._streams[stream_id] = stream
        try:
            self._h2.send_headers(stream_id, headers, end_stream=end_stream)
        except BaseException:
            self._streams.pop(stream_id, None)
            raise
        stream.local_closed = end_stream
        await self._flush()
        return stream

    async def catch_up(self) -> None:
        """Takes in what the peer sent while no one was reading (client role, idle).

        A client connection is read only while a call waits on it, so an idle one
        misses the server's GOAWAY or close (an idle timeout, say) until the next call
        fails on it. Called before reusing an idle connection: whatever the socket
        holds is read now, so a connection the server has left is not reused.
        """
        if self._reading or self.error is not None:
            return
        sock = self._stream.extra(SocketAttribute.raw_socket, None)
        if sock is None:
            return
        self._reading = True
        try:
            while self.error is None and _readable(sock):
                # Readable: the bytes (or the end) are there; a TLS record cut in two
                # needs its rest, which is on its way, so the wait is short and bounded.
                with anyio.move_on_after(_CATCH_UP_TIMEOUT) as scope:
                    await self._read_once()
                if scope.cancelled_caught:
                    self._lost("connection stalled in the middle of a frame")
        finally:
            self._reading = False
            self._hand_off()

    async def wait_capacity(self) -> None:
        """Waits until a stream may be opened (or the connection stops accepting)."""
        while self.accepting and not self.has_capacity():
            event = anyio.Event()
            self._conn_waiters.append(event)
            await event.wait()

    # -- server role -------------------------------------------------------------

    async def send_goaway(self, code: int = ErrorCodes.NO_ERROR) -> None:
        """Tells the peer to open no more streams; streams in flight finish."""
        if self.goaway_sent or self.error is not None:
            return
        self.goaway_sent = True
        last = self._h2.highest_inbound_stream_id if not self.client else 0
        self._goaway_last_sent = last
        if code:
            self._h2.close_connection(error_code=code, last_stream_id=last)
        else:
            self._h2.send_graceful_goaway(last)
        with contextlib.suppress(Exception):
            await self._flush()

    # -- reading -----------------------------------------------------------------

    async def _wait(self, stream: H2Stream, ready: Callable[[], bool]) -> None:
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
            self._waiters[event] = None
            try:
                await event.wait()
            except BaseException:
                self._waiters.pop(event, None)
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
        if self._waiters:
            event = next(iter(self._waiters))
            del self._waiters[event]
            event.set()

    async def _read_once(self) -> None:
        data = await self.receive_bytes()
        if data:
            await self.feed(data)

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
        """Processes bytes read from the socket (also those read before this object existed)."""
        self.process(data)
        if self.error is not None:
            with contextlib.suppress(Exception):
                await self._flush()
            return
        await self._flush()

    def process(self, data: bytes) -> None:
        """Processes bytes read from the socket without writing anything (``_flush`` writes
        what it queued); a protocol error loses the connection."""
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            self._lost(f"HTTP/2 protocol error: {e}")
            return
        for event in events:
            self._dispatch(event)

    def _dispatch(self, event: Any) -> None:
        if isinstance(event, h2.events.DataReceived):
            stream = self._streams.get(event.stream_id)
            if stream is None or stream.error is not None:
                # Nobody will read it: hand the window back now.
                if event.flow_controlled_length:
                    self._ack(event.stream_id, event.flow_controlled_length)
                return
            stream._data.append((event.data, event.flow_controlled_length))
            stream._wake()
        elif isinstance(event, h2.events.ResponseReceived | h2.events.RequestReceived):
            if isinstance(event, h2.events.RequestReceived):
                if self.goaway_sent and event.stream_id > self._goaway_last_sent:
                    # Opened after our GOAWAY: never processed, so safe for the peer to retry.
                    with contextlib.suppress(h2.exceptions.ProtocolError):
                        self._h2.reset_stream(event.stream_id, ErrorCodes.REFUSED_STREAM)
                    return
                limit = self._max_inbound_streams
                if limit is not None and self._open_inbound_streams() >= limit:
                    with contextlib.suppress(h2.exceptions.ProtocolError):
                        self._h2.reset_stream(event.stream_id, ErrorCodes.REFUSED_STREAM)
                    return
                if _request_error_cached(event.headers) is not None:
                    with contextlib.suppress(h2.exceptions.ProtocolError):
                        self._h2.reset_stream(event.stream_id, ErrorCodes.PROTOCOL_ERROR)
                    return
                self._new_inbound(event.stream_id)
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.headers = list(event.headers)
                stream._wake()
                if isinstance(event, h2.events.RequestReceived) and self._on_request is not None:
                    self._on_request(stream)
        elif isinstance(event, h2.events.TrailersReceived):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                if not self.client and trailer_error(event.headers) is not None:
                    self._reset_now(stream, ErrorCodes.PROTOCOL_ERROR)
                    return
                stream.trailers = list(event.headers)
                stream._wake()
        elif isinstance(event, h2.events.StreamEnded):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.remote_ended = True
                stream._wake()
                self._maybe_forget(stream)
        elif isinstance(event, h2.events.StreamReset):
            stream = self._streams.pop(event.stream_id, None)
            if stream is not None:
                stream.error = StreamError(
                    event.error_code, f"stream reset by peer ({_code_name(event.error_code)})"
                )
                stream._wake()
                self._capacity_changed()
        elif isinstance(event, h2.events.WindowUpdated):
            if self._unframed:
                self.flush_soon()
            if event.stream_id == 0:
                self._wake_window_waiters()
            else:
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    stream._wake()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._wake_window_waiters()
            self._capacity_changed()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._goaway(event.error_code, event.last_stream_id)

    def _open_inbound_streams(self) -> int:
        """Streams we accepted that are still open (h2's own count would include the
        streams of this read that ``_dispatch`` has not reached yet)."""
        h2_streams = self._h2.streams
        return sum(
            1 for i in self._streams if (s := h2_streams.get(i)) is not None and not s.closed
        )

    def _new_inbound(self, stream_id: int) -> None:
        if stream_id not in self._streams:
            self._streams[stream_id] = H2Stream(self, stream_id)

    def _goaway(self, code: int | None, last_stream_id: int | None) -> None:
        self.goaway_received = True
        self.last_stream_id = last_stream_id
        for stream_id, stream in list(self._streams.items()):
            if last_stream_id is not None and stream_id > last_stream_id:
                self._streams.pop(stream_id, None)
                stream.error = StreamError(ErrorCodes.REFUSED_STREAM, "stream refused by GOAWAY")
                stream._wake()
        if code:
            self._lost(f"connection closed by peer (GOAWAY {_code_name(code)})")
        self._capacity_changed()

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

    def _wake_window_waiters(self) -> None:
        for stream in self._streams.values():
            if stream.window_waiting:
                stream._wake()

    def _capacity_changed(self) -> None:
        waiters, self._conn_waiters = self._conn_waiters, []
        for event in waiters:
            event.set()

    def _maybe_forget(self, stream: H2Stream) -> None:
        if stream.remote_ended and stream.local_closed and not stream._data:
            self._streams.pop(stream.id, None)
            self._capacity_changed()

    def _ack(self, stream_id: int, size: int) -> None:
        with contextlib.suppress(
            h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError
        ):
            self._h2.acknowledge_received_data(size, stream_id)

    # -- writing -----------------------------------------------------------------

    def flush_soon(self) -> None:
        """Has ``run_writer`` write what is queued once the current task lets it run
        (it yields or waits): frames queued meanwhile leave in the same write. Without
        a writer running, nothing happens (the caller flushes itself)."""
        wanted = self._flush_wanted
        if wanted is not None and not wanted.is_set():
            wanted.set()

    async def run_writer(self) -> None:
        """Writes queued frames whenever ``flush_soon`` asks, until the connection ends
        (server role: run in the connection's task group)."""
        while self.error is None:
            self._flush_wanted = wanted = anyio.Event()
            await wanted.wait()
            await self._flush()

    async def _flush(self) -> None:
        """Writes whatever h2 has queued, in order. Shielded: a half-written frame
        would break the connection for every stream.

        When no write is in progress and the stream can take bytes without waiting
        (``send_nowait``, our server's plain sockets), this neither waits nor yields."""
        if self.corked:
            return
        if self._unframed:
            for stream in list(self._unframed):
                stream._frame_out()
        if not self._h2._data_to_send:
            return
        send_nowait = self._send_nowait
        data = b""
        if send_nowait is not None and not self._write_lock.locked():
            data = self._h2.data_to_send()
            if self.error is not None and self._write_failed:
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
                data += self._h2.data_to_send()
                if not data or (self.error is not None and self._write_failed):
                    return
                try:
                    await self._stream.send(data)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as e:
                    self._write_failed = True
                    self._lost(f"connection closed while writing: {_reason(e)}")

    _write_failed = False
    _goaway_last_sent = 0

    async def _reset(self, stream: H2Stream, code: int) -> None:
        self._reset_now(stream, code)
        await self._flush()

    def _reset_now(self, stream: H2Stream, code: int) -> None:
        """Resets a stream (queues RST_STREAM; ``_flush`` sends it)."""
        self._streams.pop(stream.id, None)
        stream._out.clear()
        stream._out_size = 0
        self._unframed.pop(stream, None)
        if stream.error is None:
            stream.error = StreamError(code, "stream reset")
        # Return the window of data that will now never be read.
        for _, flow in stream._data:
            if flow:
                self._ack(stream.id, flow)
        stream._data.clear()
        if not (stream.remote_ended and stream.local_closed) and self.error is None:
            with contextlib.suppress(
                h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError
            ):
                self._h2.reset_stream(stream.id, error_code=code)
        stream._wake()
        self._capacity_changed()

    def forget(self, stream: H2Stream) -> None:
        """Drops a finished stream from the bookkeeping."""
        if self._streams.get(stream.id) is stream:
            del self._streams[stream.id]
            self._capacity_changed()

    async def aclose(self) -> None:
        """Closes the connection (GOAWAY if possible, then the socket)."""
        if self.error is None:
            with anyio.move_on_after(1, shield=True):
                await self.send_goaway()
        self._lost("connection closed")
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await self._stream.aclose()


_CATCH_UP_TIMEOUT = 1.0


def _readable(sock: Any) -> bool:
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True  # closed or broken: reading says how
    return bool(readable)


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
