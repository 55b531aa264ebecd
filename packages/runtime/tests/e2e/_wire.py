"""Test peers that see the wire: a relay that counts connections and reads HTTP/2 frames,
and a scriptable raw HTTP/2 server on ``h2``.

Both run in the test's event loop, so a test waits on their events (a connection
accepted, a frame seen, a request received), never on time.
"""

from __future__ import annotations

import contextlib
import json
import math
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import h2.config
import h2.connection
import h2.events
from anyio.abc import ByteStream, SocketAttribute, SocketStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from hyperframe.frame import GoAwayFrame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# HTTP/2 frame types (RFC 9113, section 6).
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8


async def settle() -> None:
    """Returns once every other task in the process (clients, relays, servers) is blocked.

    anyio's asyncio version of ``wait_all_tasks_blocked`` can answer while I/O that has
    already arrived waits in the event loop's queue behind the caller; asking three
    times in a row, one loop turn apart, lets such I/O wake its reader first.
    """
    for _ in range(3):
        await anyio.wait_all_tasks_blocked()


async def until(predicate: Callable[[], bool]) -> None:
    """Waits until ``predicate()`` holds, testing it whenever every task is blocked
    (state only changes when some task runs). A hang fails after 10 s."""
    with anyio.fail_after(10):
        while not predicate():
            await anyio.wait_all_tasks_blocked()


class Waitable:
    """Something that changes; ``wait_for(predicate)`` returns once the predicate holds."""

    def __init__(self) -> None:
        self._events: list[anyio.Event] = []

    def changed(self) -> None:
        events, self._events = self._events, []
        for event in events:
            event.set()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """A hang fails after 10 s."""
        with anyio.fail_after(10):
            while not predicate():
                event = anyio.Event()
                self._events.append(event)
                await event.wait()


@dataclass(frozen=True)
class Frame:
    type: int
    flags: int
    stream_id: int
    length: int
    error_code: int | None = None
    """RST_STREAM and GOAWAY."""
    last_stream_id: int | None = None
    """GOAWAY."""


class FrameLog(Waitable):
    """The HTTP/2 frames of one direction of one connection, parsed as bytes pass by.

    Payloads are skipped without being buffered, except those of RST_STREAM and GOAWAY.
    Not HTTP/2 (an HTTP/1.1 connection): nothing is recorded.
    """

    def __init__(self, *, client_side: bool, partner: FrameLog | None = None) -> None:
        super().__init__()
        self.frames: list[Frame] = []
        self._buffer = bytearray()
        self._skip = 0
        self._preface = client_side
        self._partner = partner
        self._header: tuple[int, int, int, int] | None = None
        self.http2: bool | None = None

    def feed(self, data: bytes) -> None:
        if self._partner is not None:
            # Server to client: HTTP/2 only if the client opened with the preface (not TLS).
            self.http2 = self._partner.http2
            if self.http2 is None:
                self._buffer += data  # parsed once the client's first bytes have told
                return
        if self.http2 is False:
            return
        self._buffer += data
        buffer = self._buffer
        if self._preface:
            if len(buffer) < len(PREFACE):
                if not PREFACE.startswith(bytes(buffer)):
                    self.http2 = False
                return
            self.http2 = buffer.startswith(PREFACE)
            self._preface = False
            if not self.http2:
                return
            del buffer[: len(PREFACE)]
        new = False
        while True:
            if self._skip:
                n = min(self._skip, len(buffer))
                del buffer[:n]
                self._skip -= n
                if self._skip:
                    break
            if self._header is None:
                if len(buffer) < 9:
                    break
                length = int.from_bytes(buffer[0:3], "big")
                kind, flags = buffer[3], buffer[4]
                stream_id = int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
                del buffer[:9]
                self._header = (length, kind, flags, stream_id)
            length, kind, flags, stream_id = self._header
            if kind in (RST_STREAM, GOAWAY):
                if len(buffer) < length:
                    break
                payload = bytes(buffer[:length])
                del buffer[:length]
                if kind == RST_STREAM:
                    frame = Frame(kind, flags, stream_id, length, struct.unpack(">I", payload)[0])
                else:
                    last, code = struct.unpack(">II", payload[:8])
                    frame = Frame(kind, flags, stream_id, length, code, last & 0x7FFFFFFF)
            else:
                frame = Frame(kind, flags, stream_id, length)
                self._skip = length
            self._header = None
            self.frames.append(frame)
            new = True
        if new:
            self.changed()

    def of_type(self, kind: int) -> list[Frame]:
        return [f for f in self.frames if f.type == kind]


@dataclass
class RelayedConnection:
    index: int
    upstream: FrameLog = field(default_factory=lambda: FrameLog(client_side=True))
    """Client to server."""
    downstream: FrameLog = field(init=False)
    """Server to client."""
    upstream_bytes: int = 0
    downstream_bytes: int = 0
    client_eof: anyio.Event = field(default_factory=anyio.Event)
    """The client closed (or half-closed) its side."""
    server_eof: anyio.Event = field(default_factory=anyio.Event)
    """The server closed (or half-closed) its side."""

    def __post_init__(self) -> None:
        self.downstream = FrameLog(client_side=False, partner=self.upstream)


class Relay(Waitable):
    """A TCP relay on 127.0.0.1 that records every connection through it.

    Connection ``i`` goes to ``targets[min(i, len(targets) - 1)]``: with two
    targets, the first connection reaches one server and every later one the other.
    """

    def __init__(self, port: int, targets: list[int]) -> None:
        super().__init__()
        self.port = port
        self.targets = targets
        self.connections: list[RelayedConnection] = []

    @property
    def accepted(self) -> int:
        return len(self.connections)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def downstream_bytes(self) -> int:
        return sum(c.downstream_bytes for c in self.connections)

    @property
    def upstream_bytes(self) -> int:
        return sum(c.upstream_bytes for c in self.connections)

    def closed_by_client(self) -> int:
        return sum(1 for c in self.connections if c.client_eof.is_set())


@asynccontextmanager
async def relay(*targets: int) -> AsyncIterator[Relay]:
    """Forwards connections to ``127.0.0.1:targets[...]`` until the block exits."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    state = Relay(listener.extra(SocketAttribute.local_port), list(targets))

    async def pump(source: ByteStream, sink: ByteStream, conn: RelayedConnection, up: bool) -> None:
        log = conn.upstream if up else conn.downstream
        eof = conn.client_eof if up else conn.server_eof
        try:
            while True:
                try:
                    chunk = await source.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    break
                if up:
                    conn.upstream_bytes += len(chunk)
                else:
                    conn.downstream_bytes += len(chunk)
                log.feed(chunk)
                state.changed()
                try:
                    await sink.send(chunk)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    break
        finally:
            eof.set()
            state.changed()
            with contextlib.suppress(Exception):
                await sink.send_eof()  # type: ignore[attr-defined]

    async def handle(client: SocketStream) -> None:
        conn = RelayedConnection(len(state.connections))
        state.connections.append(conn)
        state.changed()
        target = state.targets[min(conn.index, len(state.targets) - 1)]
        try:
            server = await anyio.connect_tcp("127.0.0.1", target)
        except OSError:
            conn.client_eof.set()
            conn.server_eof.set()
            await client.aclose()
            return
        async with client, server, anyio.create_task_group() as tg:
            tg.start_soon(pump, client, server, conn, True)
            tg.start_soon(pump, server, client, conn, False)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield state
        finally:
            tg.cancel_scope.cancel()


# -- a raw HTTP/2 server ---------------------------------------------------------------


class RawRequest:
    """One request stream on the raw server; the test answers it."""

    def __init__(self, conn: RawConnection, stream_id: int, headers: list[tuple[bytes, bytes]]):
        self.conn = conn
        self.stream_id = stream_id
        self.headers = dict(headers)
        self.body = bytearray()
        self.ended = anyio.Event()
        self.reset = anyio.Event()
        self.reset_code: int | None = None

    @property
    def content_type(self) -> str:
        return self.headers.get(b"content-type", b"").decode()

    async def respond(self, message: bytes) -> None:
        """A successful unary response carrying ``message`` in the request's protocol."""
        content_type = self.content_type
        if content_type.startswith("application/grpc-web"):
            trailer = b"grpc-status: 0\r\n"
            body = _envelope(message) + _envelope(trailer, flags=0x80)
            await self.conn.send_headers(self.stream_id, 200, content_type)
            await self.conn.send_data(self.stream_id, body, end=True)
        elif content_type.startswith("application/grpc"):
            await self.conn.send_headers(self.stream_id, 200, content_type)
            await self.conn.send_data(self.stream_id, _envelope(message))
            await self.conn.send_trailers(self.stream_id, [(b"grpc-status", b"0")])
        else:
            await self.conn.send_headers(self.stream_id, 200, content_type)
            await self.conn.send_data(self.stream_id, message, end=True)

    async def start_stream(self, first: bytes) -> None:
        """Starts a Connect streaming response with one message; the stream stays open."""
        await self.conn.send_headers(self.stream_id, 200, self.content_type)
        await self.conn.send_data(self.stream_id, _envelope(first))

    async def end_stream(self) -> None:
        end = _envelope(json.dumps({}).encode(), flags=0x02)
        await self.conn.send_data(self.stream_id, end, end=True)


def _envelope(data: bytes, flags: int = 0) -> bytes:
    return bytes([flags]) + len(data).to_bytes(4, "big") + data


class RawConnection:
    """One connection of the raw server."""

    def __init__(self, index: int, stream: SocketStream, server: RawH2Server) -> None:
        self.index = index
        self._stream = stream
        self._server = server
        self._h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        self._lock = anyio.Lock()
        self.requests: dict[int, RawRequest] = {}
        self.client_eof = anyio.Event()
        self.goaway_from_client: int | None = None
        """The error code of the client's GOAWAY, once it sent one."""
        self.after_goaway: list[int] = []
        """Streams the client opened after our GOAWAY's last stream id."""
        self._goaway_last: int | None = None

    async def _flush(self) -> None:
        async with self._lock:
            data = self._h2.data_to_send()
            if data:
                with contextlib.suppress(anyio.BrokenResourceError, OSError):
                    await self._stream.send(data)

    async def send_headers(self, stream_id: int, status: int, content_type: str) -> None:
        headers = [(b":status", str(status).encode()), (b"content-type", content_type.encode())]
        self._h2.send_headers(stream_id, headers)
        await self._flush()

    async def send_data(self, stream_id: int, data: bytes, end: bool = False) -> None:
        self._h2.send_data(stream_id, data, end_stream=end)
        await self._flush()

    async def send_trailers(self, stream_id: int, trailers: list[tuple[bytes, bytes]]) -> None:
        self._h2.send_headers(stream_id, trailers, end_stream=True)
        await self._flush()

    async def goaway(self, last_stream_id: int, code: int = 0) -> None:
        """Sends GOAWAY and goes on serving streams up to ``last_stream_id``.

        The frame is written by hand: ``h2`` would close the whole connection.
        """
        self._goaway_last = last_stream_id
        frame = GoAwayFrame(stream_id=0, last_stream_id=last_stream_id, error_code=code)
        async with self._lock:
            pending = self._h2.data_to_send()
            await self._stream.send(pending + frame.serialize())

    async def run(self) -> None:
        self._h2.initiate_connection()
        await self._flush()
        try:
            while True:
                try:
                    data = await self._stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    return
                for event in self._h2.receive_data(data):
                    self._handle(event)
                await self._flush()
        finally:
            self.client_eof.set()
            self._server.changed()

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            assert event.stream_id is not None
            assert event.headers is not None
            if self._goaway_last is not None and event.stream_id > self._goaway_last:
                self.after_goaway.append(event.stream_id)
            request = RawRequest(self, event.stream_id, list(event.headers))  # type: ignore[arg-type]
            self.requests[event.stream_id] = request
            self._server.requests_in.send_nowait(request)
        elif isinstance(event, h2.events.DataReceived):
            assert event.stream_id is not None
            assert event.data is not None
            self.requests[event.stream_id].body += event.data
            self._h2.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            assert event.stream_id is not None
            self.requests[event.stream_id].ended.set()
        elif isinstance(event, h2.events.StreamReset):
            assert event.stream_id is not None
            request = self.requests.get(event.stream_id)
            if request is not None:
                request.reset_code = int(event.error_code or 0)
                request.reset.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway_from_client = int(event.error_code or 0)
        self._server.changed()


class RawH2Server(Waitable):
    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port
        self.connections: list[RawConnection] = []
        send: MemoryObjectSendStream[RawRequest]
        receive: MemoryObjectReceiveStream[RawRequest]
        send, receive = anyio.create_memory_object_stream[RawRequest](math.inf)
        self.requests_in = send
        self.requests = receive

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def next_request(self) -> RawRequest:
        with anyio.fail_after(10):
            return await self.requests.receive()


@asynccontextmanager
async def raw_h2_server() -> AsyncIterator[RawH2Server]:
    """An h2c server that does nothing by itself: the test answers each request."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    server = RawH2Server(listener.extra(SocketAttribute.local_port))

    async def handle(stream: SocketStream) -> None:
        conn = RawConnection(len(server.connections), stream, server)
        server.connections.append(conn)
        server.changed()
        async with stream:
            await conn.run()

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()
            server.requests_in.close()
            server.requests.close()
