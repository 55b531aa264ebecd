"""Tools for the native server's own tests: a server handle, a gated echo service that
counts its running handlers, and raw HTTP/1.1 (h11) and HTTP/2 (h2) clients that write
exactly what a test tells them to.
"""

from __future__ import annotations

import json
import ssl
import struct
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import h2.config
import h2.connection
import h2.events
import h11
import pytest
from _support.service import EchoRequest, EchoResponse, EchoServiceImpl, Observations
from anyio.abc import ByteStream
from anyio.streams.tls import TLSStream
from connectanyio.testing.v1 import testing_connect

from connect_anyio import _serve, serve
from connect_anyio._serve._h1 import H1Connection
from connect_anyio._serve._h2 import H2ServerConnection

WAIT = 10
"""Generous bound on anything a test waits for: a hang fails, it never blocks the suite."""

SERVICE = "/connectanyio.testing.v1.EchoService"
Ctx = Any


# ---------------------------------------------------------------------------
# the service


class GatedEcho(EchoServiceImpl):
    """``EchoServiceImpl`` whose blocking requests (``wait_for_cancel``) wait for the test to
    open their gate (``release(tag)``) or for cancellation, and which counts the handlers
    running right now.

    Requests without a tag block on a gate that never opens and record nothing per call,
    so that thousands of them leave nothing behind in the service itself.
    """

    def __init__(self) -> None:
        super().__init__(Observations())
        self.gates: dict[str, anyio.Event] = defaultdict(anyio.Event)
        self._never = anyio.Event()
        self.active = 0
        self.calls = 0
        self.cancellations = 0
        self._idle = anyio.Event()
        self._idle.set()

    def release(self, tag: str) -> None:
        self.gates[tag].set()

    async def wait_idle(self) -> None:
        """Waits until no handler runs (a hang fails after ``WAIT``)."""
        with anyio.fail_after(WAIT):
            await self._idle.wait()

    def _enter(self) -> None:
        self.active += 1
        self.calls += 1
        if self._idle.is_set():
            self._idle = anyio.Event()

    def _leave(self) -> None:
        self.active -= 1
        if self.active == 0:
            self._idle.set()

    async def _block_if_asked(self, request: EchoRequest) -> None:
        if not request.wait_for_cancel:
            return
        tag = request.tag
        try:
            if tag:
                self.observations.started[tag].set()
                await self.gates[tag].wait()
            else:
                await self._never.wait()
        except anyio.get_cancelled_exc_class():
            self.cancellations += 1
            if tag:
                self.observations.cancelled[tag].set()
            raise

    async def echo(self, request: EchoRequest, ctx: Ctx) -> EchoResponse:
        self._enter()
        try:
            return await super().echo(request, ctx)
        finally:
            self._leave()

    async def client_stream(self, request: AsyncIterator[EchoRequest], ctx: Ctx) -> EchoResponse:
        self._enter()
        try:
            return await super().client_stream(request, ctx)
        finally:
            self._leave()

    async def server_stream(self, request: EchoRequest, ctx: Ctx) -> AsyncIterator[EchoResponse]:
        self._enter()
        try:
            async with aclosing(super().server_stream(request, ctx)) as responses:
                async for response in responses:
                    yield response
        finally:
            self._leave()

    async def bidi(
        self, request: AsyncIterator[EchoRequest], ctx: Ctx
    ) -> AsyncIterator[EchoResponse]:
        self._enter()
        try:
            async with aclosing(super().bidi(request, ctx)) as responses:
                async for response in responses:
                    yield response
        finally:
            self._leave()


def gated_app(service: GatedEcho) -> testing_connect.EchoServiceASGIApplication:
    return testing_connect.EchoServiceASGIApplication(service)


# ---------------------------------------------------------------------------
# the server


@dataclass
class Native:
    """A native server running in the test's event loop."""

    port: int
    addresses: list[tuple[str, int]]
    scope: anyio.CancelScope
    done: anyio.Event

    def stop(self) -> None:
        """Cancels ``serve()`` (graceful shutdown)."""
        self.scope.cancel()

    async def wait_stopped(self) -> None:
        with anyio.fail_after(WAIT):
            await self.done.wait()


@asynccontextmanager
async def native(*apps: Any, **options: Any) -> AsyncIterator[Native]:
    """``serve(*apps, port=0, **options)`` for the duration of the block."""
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()
        done = anyio.Event()

        async def run(*, task_status: anyio.abc.TaskStatus[Any]) -> None:
            try:
                with scope:
                    await serve(*apps, port=0, task_status=task_status, **options)
            finally:
                done.set()

        addresses = await tg.start(run)
        server = Native(addresses[0][1], addresses, scope, done)
        try:
            yield server
        finally:
            server.stop()
            await server.wait_stopped()


@dataclass
class Tracked:
    """The connection objects the server created, in order."""

    h1: list[H1Connection] = field(default_factory=list)
    h2: list[H2ServerConnection] = field(default_factory=list)

    @property
    def all(self) -> list[H1Connection | H2ServerConnection]:
        return [*self.h1, *self.h2]


def track_connections(monkeypatch: pytest.MonkeyPatch) -> Tracked:
    """Records every connection the native server makes (for its bookkeeping)."""
    tracked = Tracked()

    class RecordingH1(H1Connection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            tracked.h1.append(self)

    class RecordingH2(H2ServerConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            tracked.h2.append(self)

    monkeypatch.setattr(_serve, "H1Connection", RecordingH1)
    monkeypatch.setattr(_serve, "H2ServerConnection", RecordingH2)
    return tracked


async def wait_until(condition: Callable[[], bool], what: str = "condition") -> None:
    """For state that has no event to wait on (bookkeeping a few scheduler steps behind an
    event the test did wait for): looks again after short pauses, fails after ``WAIT``."""
    with anyio.fail_after(WAIT):
        while not condition():  # noqa: ASYNC110 (no event exists for this state)
            await anyio.sleep(0.005)


# ---------------------------------------------------------------------------
# wire helpers


def envelope(message: dict[str, Any] | bytes, flags: int = 0) -> bytes:
    """One Connect/gRPC envelope around a JSON message (or raw bytes)."""
    data = message if isinstance(message, bytes) else json.dumps(message).encode()
    return struct.pack(">BI", flags, len(data)) + data


def unenvelope(data: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    while data:
        flags, size = struct.unpack(">BI", data[:5])
        out.append((flags, data[5 : 5 + size]))
        data = data[5 + size :]
    return out


def chunked(*parts: bytes) -> bytes:
    """An HTTP/1.1 chunked body made of ``parts``."""
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n\r\n"


def request_head(
    method: str, target: str, headers: Iterable[tuple[str, str]] = (), host: str = "127.0.0.1"
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# ---------------------------------------------------------------------------
# raw HTTP/1.1


@dataclass
class H1Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    informational: list[int]
    chunks: list[bytes]
    """The body as it arrived, piece by piece."""

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class RawH1:
    """A client connection that writes bytes as given and parses responses with h11."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    def expect(self, method: str = "POST", target: str = "/") -> None:
        """Tells the parser that a request was written (by hand), so it can read the answer."""
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        self.h11.send(
            h11.Request(
                method=method,
                target=target,
                headers=[("host", "127.0.0.1"), ("content-length", "0")],
            )
        )
        self.h11.send(h11.EndOfMessage())

    async def _event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await self.stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    data = b""
                self.h11.receive_data(data)
                continue
            return event

    async def head(self) -> tuple[h11.Response, list[int]]:
        """The response head, after any 1xx responses."""
        informational: list[int] = []
        with anyio.fail_after(WAIT):
            while True:
                event = await self._event()
                if isinstance(event, h11.InformationalResponse):
                    informational.append(event.status_code)
                    continue
                assert isinstance(event, h11.Response), event
                return event, informational

    async def chunk(self) -> bytes | None:
        """The next piece of the body; ``None`` at its end."""
        with anyio.fail_after(WAIT):
            while True:
                event = await self._event()
                if isinstance(event, h11.Data):
                    return bytes(event.data)
                if isinstance(event, h11.EndOfMessage):
                    return None
                raise AssertionError(f"unexpected {event!r}")

    async def response(self) -> H1Response:
        head, informational = await self.head()
        chunks: list[bytes] = []
        while (piece := await self.chunk()) is not None:
            chunks.append(piece)
        return H1Response(
            head.status_code,
            {k.lower(): v for k, v in head.headers},
            b"".join(chunks),
            informational,
            chunks,
        )

    async def closed(self) -> bytes:
        """Reads until the server closes the connection; returns what came before."""
        received = b""
        with anyio.fail_after(WAIT):
            while True:
                try:
                    data = await self.stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return received
                if not data:
                    return received
                received += data

    async def aclose(self) -> None:
        await self.stream.aclose()


@asynccontextmanager
async def raw_h1(
    port: int, *, tls: ssl.SSLContext | None = None, alpn: list[str] | None = None
) -> AsyncIterator[RawH1]:
    stream: ByteStream = await anyio.connect_tcp("127.0.0.1", port)
    try:
        if tls is not None:
            if alpn is not None:
                tls.set_alpn_protocols(alpn)
            stream = await TLSStream.wrap(
                stream, hostname="127.0.0.1", ssl_context=tls, standard_compatible=False
            )
        yield RawH1(stream)
    finally:
        await anyio.aclose_forcefully(stream)


# ---------------------------------------------------------------------------
# raw HTTP/2


class RawH2:
    """An HTTP/2 client on the h2 library: it sends what the test says, and keeps every
    event it receives."""

    def __init__(self, stream: ByteStream, *, validate: bool = True) -> None:
        self.stream = stream
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=True,
                header_encoding=None,
                # validate=False: the test may send malformed headers on purpose.
                validate_outbound_headers=validate,
                normalize_outbound_headers=validate,
            )
        )
        self.events: list[Any] = []
        self.closed = False

    async def start(self, *, flush: bool = True) -> None:
        self.h2.initiate_connection()
        if flush:
            await self.flush()

    async def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            await self.stream.send(data)

    def request(
        self,
        path: str,
        body: bytes | None = None,
        *,
        headers: Iterable[tuple[bytes, bytes]] = (),
        content_type: bytes = b"application/json",
        end: bool = True,
    ) -> int:
        """Queues a POST (call ``flush``); returns its stream id."""
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(
            stream_id,
            [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":authority", b"127.0.0.1"),
                (b":path", path.encode()),
                (b"content-type", content_type),
                *headers,
            ],
            end_stream=body is None and end,
        )
        if body is not None:
            self.h2.send_data(stream_id, body, end_stream=end)
        return stream_id

    async def read_once(self) -> list[Any]:
        try:
            data = await self.stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            data = b""
        if not data:
            self.closed = True
            return []
        events = self.h2.receive_data(data)
        for event in events:
            if isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        self.events.extend(events)
        await self.flush()
        return events

    async def wait_for(self, predicate: Callable[[Any], bool]) -> Any:
        """Reads until an event matching ``predicate`` has arrived (a hang fails)."""
        with anyio.fail_after(WAIT):
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                if self.closed:
                    raise AssertionError(f"connection closed; events: {self.events!r}")
                await self.read_once()

    async def wait_closed(self) -> None:
        with anyio.fail_after(WAIT):
            while not self.closed:
                await self.read_once()

    async def wait_ended(self, stream_id: int) -> None:
        await self.wait_for(
            lambda e: (
                isinstance(e, h2.events.StreamEnded | h2.events.StreamReset)
                and e.stream_id == stream_id
            )
        )

    def of(self, stream_id: int, kind: type) -> list[Any]:
        return [
            e
            for e in self.events
            if isinstance(e, kind) and getattr(e, "stream_id", 0) == stream_id
        ]

    def status(self, stream_id: int) -> int:
        for event in self.of(stream_id, h2.events.ResponseReceived):
            return int(dict(event.headers)[b":status"])
        raise AssertionError(f"no response on stream {stream_id}")

    def body(self, stream_id: int) -> bytes:
        return b"".join(e.data for e in self.of(stream_id, h2.events.DataReceived))

    def trailers(self, stream_id: int) -> dict[bytes, bytes]:
        out: dict[bytes, bytes] = {}
        for event in self.of(stream_id, h2.events.TrailersReceived):
            out.update(event.headers)
        return out


@asynccontextmanager
async def raw_h2(
    port: int, *, tls: ssl.SSLContext | None = None, start: bool = True, validate: bool = True
) -> AsyncIterator[RawH2]:
    stream: ByteStream = await anyio.connect_tcp("127.0.0.1", port)
    try:
        if tls is not None:
            tls.set_alpn_protocols(["h2"])
            stream = await TLSStream.wrap(
                stream, hostname="127.0.0.1", ssl_context=tls, standard_compatible=False
            )
        client = RawH2(stream, validate=validate)
        if start:
            await client.start()
        yield client
    finally:
        await anyio.aclose_forcefully(stream)
