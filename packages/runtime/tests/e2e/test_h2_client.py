"""The client's own HTTP/2 connection, frame by frame.

A raw server (``hyperframe`` to read the client's frames, ``hpack`` for header
blocks: code independent of the client's) answers with exactly the frames a test
needs: CONTINUATION, padding, informational responses, PING, small windows and
frame sizes, a stream limit, a header table size of 0, resets, GOAWAY with an
error, and a list of protocol violations, each of which must end the connection
with GOAWAY and the call as ``unavailable``. The HPACK encoder and the decoder's
cache are checked against ``hpack`` itself.
"""

from __future__ import annotations

import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

import anyio
import hpack
import pytest
from _support.service import EchoRequest, EchoResponse, echo_app
from anyio.abc import SocketAttribute, SocketStream
from connectanyio.testing.v1 import testing_connect
from e2e._servers import custom_server
from e2e._wire import Waitable, settle
from h2.errors import ErrorCodes
from hpack.table import HeaderTable
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from connect_anyio import Code, ConnectError, HTTPClient, HTTPVersion, ProtocolType
from connect_anyio._http2 import STATIC_TABLE, Decoder, Encoder, encode_field

pytestmark = pytest.mark.anyio

Client = testing_connect.EchoServiceClient
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def raw_frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    n = len(payload)
    return struct.pack(">BHBBL", n >> 16, n & 0xFFFF, kind, flags, stream_id) + payload


@dataclass
class FrameConnection:
    """One client connection as the raw server sees it."""

    stream: SocketStream
    frames: list[Frame] = field(default_factory=list)
    changes: Waitable = field(default_factory=Waitable)
    closed: bool = False
    encoder: hpack.Encoder = field(default_factory=hpack.Encoder)
    decoder: hpack.Decoder = field(default_factory=hpack.Decoder)
    blocks: dict[int, bytes] = field(default_factory=dict)
    """Each stream's request header block, as received."""
    request_headers: dict[int, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    bodies: dict[int, bytes] = field(default_factory=dict)
    ended: set[int] = field(default_factory=set)
    _pending_block: tuple[int, bytes] | None = None

    async def read_frames(self) -> None:
        buffer = b""
        while len(buffer) < len(PREFACE):
            buffer += await self.stream.receive()
        assert buffer.startswith(PREFACE)
        buffer = buffer[len(PREFACE) :]
        try:
            while True:
                while len(buffer) >= 9:
                    f, length = Frame.parse_frame_header(memoryview(buffer[:9]))
                    if len(buffer) < 9 + length:
                        break
                    f.parse_body(memoryview(buffer[9 : 9 + length]))
                    buffer = buffer[9 + length :]
                    self._note(f)
                    self.frames.append(f)
                    self.changes.changed()
                buffer += await self.stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            pass
        finally:
            self.closed = True
            self.changes.changed()

    def _note(self, f: Frame) -> None:
        if isinstance(f, HeadersFrame | ContinuationFrame):
            sid = f.stream_id
            block = (self._pending_block[1] if self._pending_block else b"") + f.data
            if "END_HEADERS" in f.flags:
                self._pending_block = None
                self.blocks[sid] = block
                self.request_headers[sid] = list(self.decoder.decode(block, raw=True))
            else:
                self._pending_block = (sid, block)
        if isinstance(f, DataFrame):
            self.bodies[f.stream_id] = self.bodies.get(f.stream_id, b"") + f.data
        if isinstance(f, HeadersFrame | DataFrame) and "END_STREAM" in f.flags:
            self.ended.add(f.stream_id)

    def of_type(self, kind: type[Frame]) -> list[Frame]:
        return [f for f in self.frames if isinstance(f, kind)]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        await self.changes.wait_for(lambda: predicate() or self.closed)

    async def request(self, index: int = 0) -> int:
        """The stream id of the ``index``-th request once it ended."""

        def ended() -> bool:
            ids = sorted(self.request_headers)
            return len(ids) > index and ids[index] in self.ended

        await self.wait_for(ended)
        return sorted(self.request_headers)[index]

    async def send(self, *frames: bytes | Frame) -> None:
        data = b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames)
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await self.stream.send(data)

    def block(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        return self.encoder.encode(headers)

    def headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], *flags: str) -> Frame:
        f = HeadersFrame(stream_id, self.block(headers))
        f.flags.add("END_HEADERS")
        for flag in flags:
            f.flags.add(flag)
        return f

    async def respond_stream(self, stream_id: int, text: str) -> None:
        """A whole Connect streaming response: one message and the end of stream."""
        message = EchoResponse(text=text).SerializeToString()
        body = b"\x00" + len(message).to_bytes(4, "big") + message + b"\x02\x00\x00\x00\x02{}"
        data = DataFrame(stream_id, body)
        data.flags.add("END_STREAM")
        head = [(b":status", b"200"), (b"content-type", b"application/connect+proto")]
        await self.send(self.headers(stream_id, head), data)

    async def respond(self, stream_id: int, text: str = "ok") -> None:
        """A whole Connect unary response."""
        body = EchoResponse(text=text).SerializeToString()
        data = DataFrame(stream_id, body)
        data.flags.add("END_STREAM")
        await self.send(self.headers(stream_id, OK_HEAD), data)


OK_HEAD = [(b":status", b"200"), (b"content-type", b"application/proto")]

Script = Callable[[FrameConnection], Awaitable[None]]


def _acked(conn: FrameConnection) -> bool:
    """Whether the client acknowledged our SETTINGS."""
    return any("ACK" in f.flags for f in conn.of_type(SettingsFrame))


def settings(**values: int) -> SettingsFrame:
    codes = {
        "header_table_size": SettingsFrame.HEADER_TABLE_SIZE,
        "max_concurrent_streams": SettingsFrame.MAX_CONCURRENT_STREAMS,
        "initial_window_size": SettingsFrame.INITIAL_WINDOW_SIZE,
        "max_frame_size": SettingsFrame.MAX_FRAME_SIZE,
    }
    return SettingsFrame(0, settings={codes[k]: v for k, v in values.items()})


@dataclass
class FrameServer:
    port: int
    connections: list[FrameConnection] = field(default_factory=list)
    changes: Waitable = field(default_factory=Waitable)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def frame_server(script: Script, **server_settings: int) -> AsyncIterator[FrameServer]:
    """Sends SETTINGS (``server_settings``), then runs ``script`` on each connection while
    a task reads the client's frames."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    server = FrameServer(listener.extra(SocketAttribute.local_port))

    async def handle(stream: SocketStream) -> None:
        conn = FrameConnection(stream)
        server.connections.append(conn)
        server.changes.changed()
        async with stream, anyio.create_task_group() as tg:
            tg.start_soon(conn.read_frames)
            await conn.send(settings(**server_settings))
            await script(conn)
            await conn.wait_for(lambda: False)  # until the client closes
            tg.cancel_scope.cancel()

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()


def h2() -> HTTPClient:
    return HTTPClient(http_version=HTTPVersion.HTTP2)


# -- what the client reads -----------------------------------------------------------------


async def test_continuation_padding_informational_ping_and_trailers() -> None:
    async def script(conn: FrameConnection) -> None:
        sid = await conn.request()
        ping = PingFrame(0, b"12345678")
        # 103 Early Hints, its block split over HEADERS and CONTINUATION.
        hints = conn.block([(b":status", b"103"), (b"link", b"</a>; rel=preload")])
        first = HeadersFrame(sid, hints[:2])
        rest = ContinuationFrame(sid, hints[2:])
        rest.flags.add("END_HEADERS")
        # The response head padded and with a priority, the body padded in two frames.
        head = HeadersFrame(sid, conn.block([*OK_HEAD, (b"x-extra", b"yes")]))
        for flag in ("END_HEADERS", "PADDED", "PRIORITY"):
            head.flags.add(flag)
        head.pad_length = 7
        body = EchoResponse(text="padded").SerializeToString()
        one = DataFrame(sid, body[:3])
        one.flags.add("PADDED")
        one.pad_length = 11
        two = DataFrame(sid, body[3:])
        two.flags.add("PADDED")
        two.flags.add("END_STREAM")
        two.pad_length = 0
        await conn.send(ping, first, rest, head, one, two)

    async with (
        frame_server(script) as server,
        h2() as http,
        Client(server.url, http_client=http) as client,
    ):
        with anyio.fail_after(10):
            assert (await client.echo(EchoRequest(text="x"))).text == "padded"
        (conn,) = server.connections
        await conn.wait_for(lambda: any("ACK" in f.flags for f in conn.of_type(PingFrame)))
        (ack,) = [f for f in conn.of_type(PingFrame) if "ACK" in f.flags]
        assert ack.opaque_data == b"12345678"


async def test_grpc_trailers_and_trailers_only() -> None:
    async def script(conn: FrameConnection) -> None:
        for index in range(2):
            sid = await conn.request(index)
            head = [(b":status", b"200"), (b"content-type", b"application/grpc")]
            if index == 0:
                message = EchoResponse(text="with trailers").SerializeToString()
                start = conn.headers(sid, head)  # encoded in the order they are sent
                data = DataFrame(sid, b"\x00" + len(message).to_bytes(4, "big") + message)
                trailers = conn.headers(sid, [(b"grpc-status", b"0")], "END_STREAM")
                await conn.send(start, data, trailers)
            else:
                only = [*head, (b"grpc-status", b"5"), (b"grpc-message", b"nope")]
                await conn.send(conn.headers(sid, only, "END_STREAM"))

    async with (
        frame_server(script) as server,
        h2() as http,
        Client(server.url, protocol=ProtocolType.GRPC, http_client=http) as client,
    ):
        with anyio.fail_after(10):
            assert (await client.echo(EchoRequest(text="x"))).text == "with trailers"
            with pytest.raises(ConnectError) as caught:
                await client.echo(EchoRequest(text="x"))
        assert (caught.value.code, caught.value.message) == (Code.NOT_FOUND, "nope")


# -- what the client sends -------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2])
async def test_the_server_stream_limit_is_respected(limit: int) -> None:
    """Calls beyond MAX_CONCURRENT_STREAMS wait or go to another connection: no
    connection ever has more requests open at once."""
    most_open: list[int] = []

    async def script(conn: FrameConnection) -> None:
        answered = 0
        while not conn.closed:
            await conn.wait_for(lambda: len(conn.request_headers) > answered)  # noqa: B023
            if conn.closed:
                return
            await settle()  # the client sent all it would before an answer
            if _acked(conn):  # once the client knows the limit
                most_open.append(len(conn.request_headers) - answered)
            sid = await conn.request(answered)
            answered += 1
            await conn.respond(sid)

    async with (
        frame_server(script, max_concurrent_streams=limit) as server,
        h2() as http,
        Client(server.url, http_client=http) as client,
    ):
        with anyio.fail_after(10):
            # The first call learns the server's settings.
            await client.echo(EchoRequest(text="x"))
            async with anyio.create_task_group() as tg:
                for _ in range(12):
                    tg.start_soon(client.echo, EchoRequest(text="x"))
        assert max(most_open) == limit
        assert sum(len(c.request_headers) for c in server.connections) == 13
        assert len(server.connections) <= 8


async def test_small_windows_and_frames_are_respected() -> None:
    """The server allows 100 bytes per stream and 16 KiB frames; the client's body of
    70 KiB goes out in window-sized pieces as WINDOW_UPDATEs arrive."""
    payload = os.urandom(70 * 1024)  # incompressible
    sizes: list[int] = []

    async def script(conn: FrameConnection) -> None:
        await conn.respond(await conn.request(0))  # the client learns the settings
        await conn.wait_for(lambda: len(conn.request_headers) > 1)
        sid = sorted(conn.request_headers)[1]
        received = 0
        while sid not in conn.ended and not conn.closed:
            await conn.wait_for(lambda: len(conn.bodies.get(sid, b"")) > received)  # noqa: B023
            now = len(conn.bodies.get(sid, b""))
            sizes.append(now - received)
            await conn.send(WindowUpdateFrame(sid, window_increment=now - received))
            await conn.send(WindowUpdateFrame(0, window_increment=now - received))
            received = now
        await conn.respond_stream(sid, "got it")

    async def requests() -> AsyncIterator[EchoRequest]:
        yield EchoRequest(text="big", payload=payload)

    async with (
        frame_server(script, initial_window_size=100) as server,
        h2() as http,
        Client(server.url, http_client=http) as client,
    ):
        with anyio.fail_after(20):
            await client.echo(EchoRequest(text="x"))
            assert (await client.client_stream(requests())).text == "got it"
        (conn,) = server.connections
        sid = sorted(conn.request_headers)[1]
        data = [f for f in conn.of_type(DataFrame) if f.data and f.stream_id == sid]
        assert all(len(f.data) <= 100 for f in data)
        assert max(sizes) <= 100
        assert len(conn.bodies[sid]) > len(payload)


async def test_large_headers_go_out_in_continuation_frames() -> None:
    big = "v" * 40_000

    async def script(conn: FrameConnection) -> None:
        await conn.respond(await conn.request())

    async with (
        frame_server(script) as server,
        h2() as http,
        Client(server.url, http_client=http) as client,
    ):
        with anyio.fail_after(10):
            await client.echo(EchoRequest(text="x"), headers={"x-big": big})
        (conn,) = server.connections
        assert conn.of_type(ContinuationFrame)
        assert all(len(f.data) <= 16384 for f in conn.of_type(HeadersFrame | ContinuationFrame))
        sid = min(conn.request_headers)
        assert (b"x-big", big.encode()) in conn.request_headers[sid]


async def test_a_header_table_size_change_is_acknowledged_in_the_next_block() -> None:
    async def script(conn: FrameConnection) -> None:
        sid = await conn.request(0)
        # The new setting goes out with the first response: the client reads both at once.
        await conn.send(settings(header_table_size=0))
        await conn.respond(sid)
        await conn.respond(await conn.request(1))
        await conn.respond(await conn.request(2))

    async with (
        frame_server(script) as server,
        h2() as http,
        Client(server.url, http_client=http) as client,
    ):
        with anyio.fail_after(10):
            for text in ("1", "2", "3"):
                await client.echo(EchoRequest(text=text))
        (conn,) = server.connections
        first, second, third = (conn.blocks[s] for s in sorted(conn.blocks))
        # A size update to 0 opens the first block, and the first one after the change.
        assert first[:1] == b"\x20"
        assert second[:1] == b"\x20"
        assert third[:1] != b"\x20"
        assert sum("ACK" in f.flags for f in conn.of_type(SettingsFrame)) == 2


# -- failures ----------------------------------------------------------------------------------


RESETS = [
    (ErrorCodes.CANCEL, Code.CANCELED),
    (ErrorCodes.REFUSED_STREAM, Code.UNAVAILABLE),
    (ErrorCodes.ENHANCE_YOUR_CALM, Code.RESOURCE_EXHAUSTED),
    (ErrorCodes.INADEQUATE_SECURITY, Code.PERMISSION_DENIED),
    (ErrorCodes.PROTOCOL_ERROR, Code.INTERNAL),
]


@pytest.mark.parametrize(("reset", "code"), RESETS, ids=[r.name for r, _ in RESETS])
async def test_a_reset_stream_maps_to_its_code(reset: ErrorCodes, code: Code) -> None:
    async def script(conn: FrameConnection) -> None:
        sid = await conn.request()
        await conn.send(RstStreamFrame(sid, error_code=reset))
        await conn.respond(await conn.request(1))

    async with (
        frame_server(script) as server,
        h2() as http,
        Client(server.url, http_client=http) as client,
    ):
        with anyio.fail_after(10):
            with pytest.raises(ConnectError) as caught:
                await client.echo(EchoRequest(text="x"))
            assert caught.value.code is code
            # The connection goes on.
            assert (await client.echo(EchoRequest(text="y"))).text == "ok"
        assert len(server.connections) == 1


def _head(conn: FrameConnection, sid: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    return conn.headers(sid, headers).serialize()


VIOLATIONS: dict[str, Callable[[FrameConnection, int], bytes]] = {
    "data-on-stream-0": lambda c, s: raw_frame(0, 0, 0, b"x"),
    "headers-on-an-even-stream": lambda c, s: _head(c, 2, OK_HEAD),
    "headers-on-an-unopened-stream": lambda c, s: _head(c, s + 20, OK_HEAD),
    "push-promise": lambda c, s: raw_frame(5, 4, s, b"\x00\x00\x00\x02" + c.block(OK_HEAD)),
    "oversized-frame": lambda c, s: raw_frame(0, 0, s, b"x" * 70_000),
    "bad-hpack": lambda c, s: raw_frame(1, 4, s, b"\xff\xff\xff\xff\xff\xff"),
    "upper-case-name": lambda c, s: _head(c, s, [*OK_HEAD, (b"X-Upper", b"1")]),
    "no-status": lambda c, s: _head(c, s, [(b"content-type", b"application/proto")]),
    "request-pseudo-header": lambda c, s: _head(c, s, [*OK_HEAD, (b":path", b"/")]),
    "connection-header": lambda c, s: _head(c, s, [*OK_HEAD, (b"connection", b"close")]),
    "content-length-mismatch": lambda c, s: (
        _head(c, s, [*OK_HEAD, (b"content-length", b"99")]) + raw_frame(0, 1, s, b"short")
    ),
    "data-before-headers": lambda c, s: raw_frame(0, 0, s, b"x"),
    "window-overflow": lambda c, s: raw_frame(8, 0, 0, struct.pack(">L", 0x7FFFFFFF)),
    "zero-window-update": lambda c, s: raw_frame(8, 0, 0, struct.pack(">L", 0)),
    "continuation-without-headers": lambda c, s: raw_frame(9, 4, s, c.block(OK_HEAD)),
    "headers-interrupted": lambda c, s: (
        raw_frame(1, 0, s, c.block(OK_HEAD)[:1]) + raw_frame(6, 0, 0, b"12345678")
    ),
    "bad-settings-length": lambda c, s: raw_frame(4, 0, 0, b"\x00\x01\x00"),
    "bad-max-frame-size": lambda c, s: raw_frame(4, 0, 0, struct.pack(">HL", 5, 100)),
    "bad-ping-length": lambda c, s: raw_frame(6, 0, 0, b"1234"),
    "trailers-with-pseudo-header": lambda c, s: (
        _head(c, s, OK_HEAD) + c.headers(s, [(b":status", b"200")], "END_STREAM").serialize()
    ),
}


@pytest.mark.parametrize("case", list(VIOLATIONS))
async def test_protocol_violations_end_the_connection_as_unavailable(case: str) -> None:
    async def script(conn: FrameConnection) -> None:
        sid = await conn.request()
        await conn.send(VIOLATIONS[case](conn, sid))

    async with (
        frame_server(script) as server,
        h2() as http,
        Client(server.url, http_client=http) as client,
    ):
        with anyio.fail_after(10), pytest.raises(ConnectError) as caught:
            await client.echo(EchoRequest(text="x"))
        assert caught.value.code is Code.UNAVAILABLE, caught.value
        (conn,) = server.connections
        with anyio.fail_after(10):
            await conn.wait_for(lambda: conn.closed)
        goaways = conn.of_type(GoAwayFrame)
        assert goaways, "the client closed without GOAWAY"
        assert goaways[0].error_code != 0


def _padded_too_much(sid: int) -> bytes:
    return raw_frame(0, 0x8, sid, b"\x09" + b"x" * 4)  # 9 bytes of padding in a 5-byte frame


# What the engine shared with the server checks on the client too: each must end the
# connection with GOAWAY and the code RFC 9113 names.
FRAME_ERRORS: dict[str, tuple[Callable[[FrameConnection, int], bytes], ErrorCodes]] = {
    "window-update-of-3-bytes": (
        lambda c, s: raw_frame(8, 0, s, b"\x00\x00\x01"),
        ErrorCodes.FRAME_SIZE_ERROR,
    ),
    "rst-stream-of-3-bytes": (
        lambda c, s: raw_frame(3, 0, s, b"\x00\x00\x08"),
        ErrorCodes.FRAME_SIZE_ERROR,
    ),
    "goaway-of-4-bytes": (
        lambda c, s: raw_frame(7, 0, 0, b"\x00" * 4),
        ErrorCodes.FRAME_SIZE_ERROR,
    ),
    "ping-of-4-bytes": (lambda c, s: raw_frame(6, 0, 0, b"1234"), ErrorCodes.FRAME_SIZE_ERROR),
    "settings-ack-with-payload": (
        lambda c, s: raw_frame(4, 1, 0, struct.pack(">HL", 3, 1)),
        ErrorCodes.FRAME_SIZE_ERROR,
    ),
    "oversized-frame": (
        lambda c, s: raw_frame(0, 0, s, b"x" * 70_000),
        ErrorCodes.FRAME_SIZE_ERROR,
    ),
    "enable-push-from-a-server": (
        lambda c, s: raw_frame(4, 0, 0, struct.pack(">HL", 2, 1)),
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "initial-window-too-large": (
        lambda c, s: raw_frame(4, 0, 0, struct.pack(">HL", 4, 2**31)),
        ErrorCodes.FLOW_CONTROL_ERROR,
    ),
    "settings-on-a-stream": (lambda c, s: raw_frame(4, 0, s, b""), ErrorCodes.PROTOCOL_ERROR),
    "ping-on-a-stream": (lambda c, s: raw_frame(6, 0, s, b"12345678"), ErrorCodes.PROTOCOL_ERROR),
    "priority-on-stream-0": (
        lambda c, s: raw_frame(2, 0, 0, b"\x00\x00\x00\x01\x10"),
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "rst-stream-on-an-idle-stream": (
        lambda c, s: raw_frame(3, 0, s + 2, struct.pack(">L", 8)),
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "data-on-an-even-stream": (lambda c, s: raw_frame(0, 0, 2, b"x"), ErrorCodes.PROTOCOL_ERROR),
    "padding-beyond-the-frame": (lambda c, s: _padded_too_much(s), ErrorCodes.PROTOCOL_ERROR),
    "stream-window-update-on-an-idle-stream": (
        lambda c, s: raw_frame(8, 0, s + 2, struct.pack(">L", 1)),
        ErrorCodes.PROTOCOL_ERROR,
    ),
}


@pytest.mark.parametrize(("make", "code"), FRAME_ERRORS.values(), ids=FRAME_ERRORS.keys())
async def test_frame_errors_end_the_connection_with_the_rfcs_code(
    make: Callable[[FrameConnection, int], bytes], code: ErrorCodes
) -> None:
    async def script(conn: FrameConnection) -> None:
        await conn.wait_for(lambda: _acked(conn))
        sid = await conn.request()
        await conn.send(make(conn, sid))

    async with (
        frame_server(script) as server,
        h2() as http,
        Client(server.url, http_client=http) as client,
    ):
        with anyio.fail_after(10), pytest.raises(ConnectError) as caught:
            await client.echo(EchoRequest(text="x"))
        assert caught.value.code is Code.UNAVAILABLE, caught.value
        (conn,) = server.connections
        with anyio.fail_after(10):
            await conn.wait_for(lambda: conn.closed)
        assert [f.error_code for f in conn.of_type(GoAwayFrame)] == [code]


STREAM_ERRORS: dict[str, tuple[Callable[[int], bytes], ErrorCodes]] = {
    "stream-window-overflow": (
        lambda s: raw_frame(8, 0, s, struct.pack(">L", 2**31 - 1)),
        ErrorCodes.FLOW_CONTROL_ERROR,
    ),
    "stream-window-update-of-0": (
        lambda s: raw_frame(8, 0, s, struct.pack(">L", 0)),
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "priority-on-itself": (
        lambda s: raw_frame(2, 0, s, struct.pack(">LB", s, 16)),
        ErrorCodes.PROTOCOL_ERROR,
    ),
    "priority-of-4-bytes": (lambda s: raw_frame(2, 0, s, b"\x00" * 4), ErrorCodes.FRAME_SIZE_ERROR),
}


@pytest.mark.parametrize(("make", "code"), STREAM_ERRORS.values(), ids=STREAM_ERRORS.keys())
async def test_a_stream_error_resets_only_that_stream(
    make: Callable[[int], bytes], code: ErrorCodes
) -> None:
    """The client answers a stream error with RST_STREAM; its call fails, the connection
    goes on."""
    reset: list[int] = []

    async def script(conn: FrameConnection) -> None:
        sid = await conn.request()
        await conn.send(make(sid))
        await conn.wait_for(lambda: bool(conn.of_type(RstStreamFrame)))
        reset.extend(f.error_code for f in conn.of_type(RstStreamFrame) if f.stream_id == sid)
        await conn.respond(await conn.request(1))

    async with (
        frame_server(script) as server,
        h2() as http,
        Client(server.url, http_client=http) as client,
    ):
        with anyio.fail_after(10):
            with pytest.raises(ConnectError) as caught:
                await client.echo(EchoRequest(text="x"))
            assert caught.value.code is Code.INTERNAL, caught.value
            assert (await client.echo(EchoRequest(text="y"))).text == "ok"
        assert reset == [code]
        (conn,) = server.connections
        assert not conn.of_type(GoAwayFrame)


async def test_a_graceful_goaway_mid_call_refuses_only_the_later_streams() -> None:
    """GOAWAY(NO_ERROR) naming the first of two streams in flight: the first is answered,
    the second fails as unavailable (never processed), and the next call opens a new
    connection."""

    async def script(conn: FrameConnection) -> None:
        if len(server.connections) > 1:
            await conn.respond(await conn.request(), "new")
            return
        first = await conn.request(0)
        await conn.request(1)
        await conn.send(GoAwayFrame(0, last_stream_id=first, error_code=0))
        await conn.respond(first, "first")

    async with (
        frame_server(script) as server,
        h2() as http,
        Client(server.url, http_client=http) as client,
    ):
        results: list[str | Code] = ["", ""]

        async def call(index: int) -> None:
            try:
                results[index] = (await client.echo(EchoRequest(text="x"))).text
            except ConnectError as e:
                results[index] = e.code

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, 0)
                await server.changes.wait_for(lambda: bool(server.connections))
                first = server.connections[0]
                await first.wait_for(lambda: 1 in first.ended)
                tg.start_soon(call, 1)
            assert results == ["first", Code.UNAVAILABLE]
            assert (await client.echo(EchoRequest(text="z"))).text == "new"
        assert len(server.connections) == 2


async def test_a_first_frame_other_than_settings_is_a_protocol_error() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(SocketAttribute.local_port)

    async def handle(stream: SocketStream) -> None:
        async with stream:
            await stream.send(raw_frame(6, 0, 0, b"12345678"))
            with suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                while True:
                    await stream.receive()

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        async with h2() as http, Client(f"http://127.0.0.1:{port}", http_client=http) as client:
            with anyio.fail_after(10), pytest.raises(ConnectError) as caught:
                await client.echo(EchoRequest(text="x"))
            assert caught.value.code is Code.UNAVAILABLE
            assert "SETTINGS" in caught.value.message
        tg.cancel_scope.cancel()


async def test_goaway_with_an_error_fails_the_calls_in_flight() -> None:
    async def script(conn: FrameConnection) -> None:
        sid = await conn.request(1)
        await conn.send(GoAwayFrame(0, last_stream_id=sid, error_code=ErrorCodes.INTERNAL_ERROR))

    async with (
        frame_server(script) as server,
        h2() as http,
        Client(server.url, http_client=http) as client,
    ):
        errors: list[ConnectError] = []

        async def call() -> None:
            try:
                await client.echo(EchoRequest(text="x"))
            except ConnectError as e:
                errors.append(e)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                tg.start_soon(call)
        assert [e.code for e in errors] == [Code.UNAVAILABLE] * 2
        assert all("GOAWAY INTERNAL_ERROR" in e.message for e in errors)
        assert len(server.connections) == 1


# -- HPACK -----------------------------------------------------------------------------------


async def test_the_static_table_is_rfc_7541s() -> None:
    assert tuple(HeaderTable.STATIC_TABLE) == STATIC_TABLE


FIELDS = [
    (b":method", b"POST"),
    (b":method", b"PATCH"),
    (b":path", b"/" + b"p" * 300),
    (b"content-type", b"application/proto"),
    (b"x-custom", b""),
    (b"x-" + b"n" * 200, b"v" * 5000),
    (b"authorization", b"Bearer secret"),
    (b"cookie", b"a=b"),
    (b"te", b"trailers"),
]


async def test_the_encoder_is_stateless_and_hpack_reads_it() -> None:
    decoder = hpack.Decoder()
    decoder.max_header_list_size = 1 << 20
    encoder = Encoder()
    for _ in range(3):
        block = encoder.encode(FIELDS)
        assert [(n, v) for n, v in decoder.decode(block, raw=True)] == FIELDS
        assert decoder.header_table.dynamic_entries == type(decoder.header_table.dynamic_entries)()
    assert encode_field(b":method", b"POST") == b"\x83"  # indexed, static entry 3
    sensitive = decoder.decode(encode_field(b"authorization", b"x"))
    assert isinstance(sensitive[0], hpack.NeverIndexedHeaderTuple)


async def test_the_decoder_cache_follows_the_dynamic_table() -> None:
    """Blocks from a server's encoder (dynamic table, Huffman, evictions in a small table),
    decoded with the cache and by a plain ``hpack.Decoder``: always the same headers."""
    server = hpack.Encoder()
    server.header_table_size = 256
    ours = Decoder(1 << 16)
    reference = hpack.Decoder()
    for i in range(400):
        headers = [
            (b":status", b"200"),
            (b"content-type", b"application/proto"),
            (b"x-round", str(i // 7).encode()),  # the same for 7 calls, then a new entry
            (b"x-fixed", b"f" * (i % 3)),
        ]
        block = server.encode(headers)
        expected = [(n, v) for n, v in reference.decode(block, raw=True)]
        assert ours.decode(block) == expected == headers


@pytest.mark.parametrize("server", ["hypercorn", "native"])
async def test_large_unary_bodies_both_ways(server: str) -> None:
    """A request body beyond the initial windows (sent as they open) and a response
    beyond them (windows given back as it is read), over a real server."""
    payload = os.urandom(300 * 1024)  # incompressible
    async with (
        custom_server(echo_app(), server=server) as srv,
        h2() as http,
        # Uncompressed both ways: the sizes on the wire are the sizes in the messages.
        Client(srv.url, http_client=http, send_compression=None, accept_compression=()) as client,
    ):
        with anyio.fail_after(20):
            for _ in range(2):
                request = EchoRequest(text="big", payload=payload, response_payload_size=3_000_000)
                response = await client.echo_post(request)
                assert (response.text, len(response.payload)) == ("big", 3_000_000)
