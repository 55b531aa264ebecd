"""HTTP/2 exchanges on our own engine (``connect_anyio._http2``): full duplex and trailers."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup
from anyio.streams.tls import TLSAttribute
from h2.errors import ErrorCodes

from .._http2 import H2Connection, H2Stream, StreamError, strip_pseudo
from .._tls import wrap_tls
from ..code import Code
from ..errors import ConnectError
from . import Origin, _UserError, guard_body, map_errors

if TYPE_CHECKING:
    from .._protocol import ClientRequest

RawHeaders = list[tuple[bytes, bytes]]

_RESET_CODES: dict[int, Code] = {
    ErrorCodes.REFUSED_STREAM: Code.UNAVAILABLE,
    ErrorCodes.CANCEL: Code.CANCELED,
    ErrorCodes.ENHANCE_YOUR_CALM: Code.RESOURCE_EXHAUSTED,
    ErrorCodes.INADEQUATE_SECURITY: Code.PERMISSION_DENIED,
}


def stream_error(e: StreamError) -> ConnectError:
    """gRPC's mapping of RST_STREAM codes; a lost connection is ``unavailable``."""
    from .._http2 import ConnectionLost

    if isinstance(e, ConnectionLost):
        return ConnectError(Code.UNAVAILABLE, str(e))
    return ConnectError(_RESET_CODES.get(e.code, Code.INTERNAL), str(e))


class NotHTTP2(Exception):
    """The TLS server chose HTTP/1.1 by ALPN."""


class HTTP2Response:
    """A response on an HTTP/2 stream; owns the stream until ``aclose``."""

    __slots__ = ("_conn", "_failure", "_pump_scope", "_release", "_stream", "headers", "status")

    def __init__(
        self,
        conn: H2Connection,
        stream: H2Stream,
        release: Callable[[H2Connection], Awaitable[None]],
    ) -> None:
        self._conn = conn
        self._stream = stream
        self._release = release
        self.status = 0
        self.headers: RawHeaders = []
        self._failure: BaseException | None = None
        self._pump_scope: anyio.CancelScope | None = None

    async def _read_head(self) -> None:
        while True:
            raw = await self._stream.receive_headers()
            pseudo, regular = strip_pseudo(raw)
            status = int(pseudo.get(b":status", b"0"))
            if 100 <= status < 200:
                # An informational response: the real one follows.
                self._stream.headers = None
                continue
            self.status = status
            self.headers = regular
            return

    async def receive(self) -> bytes:
        try:
            data = await self._stream.receive_data()
        except StreamError as e:
            if self._failure is not None:
                raise self._failure from None
            raise stream_error(e) from None
        if not data and self._failure is not None:
            raise self._failure
        return data

    def trailers(self) -> RawHeaders | None:
        return self._stream.trailers

    async def aclose(self) -> None:
        if self._pump_scope is not None:
            self._pump_scope.cancel()
        stream = self._stream
        if not stream.closed:
            await stream.reset(ErrorCodes.CANCEL)
        self._conn.forget(stream)
        await self._release(self._conn)

    async def pump(self, body: AsyncIterable[bytes]) -> None:
        """Sends the request body from its own task (full duplex)."""
        with anyio.CancelScope() as scope:
            self._pump_scope = scope
            await self.send_body(body)

    async def send_body(self, body: AsyncIterable[bytes]) -> None:
        stream = self._stream
        chunks = guard_body(body)
        try:
            async for chunk in chunks:
                await stream.send_data(chunk)
            await stream.end()
        except StreamError:
            # The peer reset or answered already; the response side reports it.
            pass
        except _UserError as e:
            self._failure = e.exc
            await stream.reset(ErrorCodes.CANCEL)
        finally:
            await chunks.aclose()


class HTTP2Transport:
    """Pools of HTTP/2 connections, several streams on each."""

    def __init__(
        self, ssl_context: ssl.SSLContext, alpn: list[str], max_connections_per_origin: int = 8
    ) -> None:
        self._ssl_context = ssl_context
        self._alpn = alpn
        self._pools: dict[Origin, list[H2Connection]] = {}
        self._locks: dict[Origin, anyio.Lock] = {}
        self._max_per_origin = max_connections_per_origin

    async def _connect(self, origin: Origin) -> H2Connection:
        with map_errors():
            tcp = await anyio.connect_tcp(origin.host, origin.port)
            stream: anyio.abc.ByteStream = tcp
            if origin.tls:
                try:
                    # ALPN is read when the TLS object is created: set it right before.
                    self._ssl_context.set_alpn_protocols(self._alpn)
                    stream = await wrap_tls(
                        tcp, hostname=origin.host, ssl_context=self._ssl_context, server_side=False
                    )
                except BaseException:
                    await anyio.aclose_forcefully(tcp)
                    raise
                if stream.extra(TLSAttribute.alpn_protocol, None) != "h2":
                    await anyio.aclose_forcefully(stream)
                    raise NotHTTP2
            conn = H2Connection(stream, client=True)
            await conn.start()
            return conn

    async def _release(self, conn: H2Connection) -> None:
        """A stream of ``conn`` ended: a connection that takes no new streams (GOAWAY
        received, or failed) is closed once its last stream is done."""
        if conn.accepting or conn.open_streams:
            return
        for pool in self._pools.values():
            if conn in pool:
                pool.remove(conn)
        with anyio.CancelScope(shield=True):
            await conn.aclose()

    async def _usable(self, conn: H2Connection) -> bool:
        """Whether a new stream may go on ``conn``. An idle connection first takes in what
        the server sent meanwhile: a GOAWAY or a close (idle timeout) retires it."""
        if not conn.has_capacity():
            return False
        if not conn.open_streams:
            await conn.catch_up()
            if not conn.has_capacity():
                await self._release(conn)
                return False
        return True

    async def _connection(self, origin: Origin) -> H2Connection:
        while True:
            pool = self._pools.setdefault(origin, [])
            for conn in [c for c in pool if not (c.accepting or c.open_streams)]:
                await self._release(conn)
            for conn in list(pool):
                if await self._usable(conn):
                    return conn
            lock = self._locks.setdefault(origin, anyio.Lock())
            if len([c for c in pool if c.accepting]) < self._max_per_origin:
                async with lock:
                    # Someone else may have connected while we waited.
                    for conn in list(pool):
                        if await self._usable(conn):
                            return conn
                    conn = await self._connect(origin)
                    pool.append(conn)
                    return conn
            busy = next(c for c in pool if c.accepting)
            await busy.wait_capacity()

    async def _start(
        self, origin: Origin, request: ClientRequest, end: bool
    ) -> tuple[H2Connection, H2Stream]:
        request_headers: RawHeaders = [
            (b":method", request.method.encode()),
            (b":scheme", origin.scheme.encode()),
            (b":authority", origin.authority().encode()),
            (b":path", request.path.encode()),
            *request.headers,
        ]
        for attempt in range(3):
            conn = await self._connection(origin)
            try:
                with map_errors():
                    return conn, await conn.open_stream(request_headers, end_stream=end)
            except StreamError as e:
                # Refused before any processing (GOAWAY raced us): safe to retry elsewhere.
                if e.code != ErrorCodes.REFUSED_STREAM or attempt == 2:
                    raise stream_error(e) from None
        raise AssertionError("unreachable")

    async def unary(
        self, origin: Origin, request: ClientRequest
    ) -> tuple[int, RawHeaders, bytes, RawHeaders | None]:
        body = request.body or b""
        conn, stream = await self._start(origin, request, end=not body)
        response = HTTP2Response(conn, stream, self._release)
        try:
            with map_errors():
                if body:
                    with contextlib.suppress(StreamError):  # answered early: read the answer
                        await stream.send_data(body, end_stream=True)
                await response._read_head()
                chunks = []
                while True:
                    chunk = await response.receive()
                    if not chunk:
                        break
                    chunks.append(chunk)
            return response.status, response.headers, b"".join(chunks), stream.trailers
        except StreamError as e:
            raise stream_error(e) from None
        finally:
            await response.aclose()

    async def open(
        self,
        origin: Origin,
        request: ClientRequest,
        body: AsyncIterable[bytes] | None,
        pump: TaskGroup | None,
    ) -> HTTP2Response:
        conn, stream = await self._start(origin, request, end=body is None and not request.body)
        response = HTTP2Response(conn, stream, self._release)
        try:
            with map_errors():
                if body is None and request.body:
                    with contextlib.suppress(StreamError):  # answered early: read the answer
                        await stream.send_data(request.body, end_stream=True)
                elif body is not None:
                    if pump is not None:
                        pump.start_soon(response.pump, body)
                    else:
                        await response.send_body(body)
                await response._read_head()
        except StreamError as e:
            await response.aclose()
            if response._failure is not None:
                raise response._failure from None
            raise stream_error(e) from None
        except BaseException:
            await response.aclose()
            raise
        return response

    async def aclose(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            for conn in pool:
                await conn.aclose()
