"""HTTP/2 exchanges on our client connection (``_h2client``, the ``_http2`` engine in the
client role): pools of connections, full duplex and trailers."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterable
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup
from anyio.streams.tls import TLSAttribute

from .._http2 import ConnectionLost, ErrorCodes, StreamError
from .._tls import wrap_tls
from ..code import Code
from ..errors import ConnectError
from . import ClosedDuringConnect, Origin, _UserError, guard_body, map_errors
from ._h2client import ClientStream, H2ClientConnection

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
    if isinstance(e, ConnectionLost):
        return ConnectError(Code.UNAVAILABLE, str(e))
    return ConnectError(_RESET_CODES.get(e.code, Code.INTERNAL), str(e))


class NotHTTP2(Exception):
    """The TLS server chose HTTP/1.1 by ALPN."""


class HTTP2Response:
    """A response on an HTTP/2 stream; owns the stream until ``aclose``."""

    __slots__ = ("_failure", "_pool", "_pump_scope", "_stream", "headers", "status")

    def __init__(self, pool: HTTP2Transport, stream: ClientStream) -> None:
        self._pool = pool
        self._stream = stream
        self.status = 0
        self.headers: RawHeaders = []
        self._failure: BaseException | None = None
        self._pump_scope: anyio.CancelScope | None = None

    async def _read_head(self) -> None:
        self.headers = await self._stream.receive_headers()
        self.status = self._stream.status

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
        await self._pool.finish(self._stream)

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


async def _first_capacity(connections: list[H2ClientConnection]) -> None:
    """Waits until one of ``connections`` may take a stream (or stops accepting)."""
    async with anyio.create_task_group() as tg:

        async def wait(conn: H2ClientConnection) -> None:
            await conn.wait_capacity()
            tg.cancel_scope.cancel()

        for conn in connections:
            tg.start_soon(wait, conn)


class HTTP2Transport:
    """Pools of HTTP/2 connections, several streams on each."""

    def __init__(
        self, ssl_context: ssl.SSLContext, alpn: list[str], max_connections_per_origin: int = 8
    ) -> None:
        self._ssl_context = ssl_context
        self._alpn = alpn
        self._pools: dict[Origin, list[H2ClientConnection]] = {}
        self._locks: dict[Origin, anyio.Lock] = {}
        self._max_per_origin = max_connections_per_origin
        self._authorities: dict[Origin, list[tuple[bytes, bytes]]] = {}

    async def _connect(self, origin: Origin) -> H2ClientConnection:
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
            conn = H2ClientConnection(stream)
            try:
                await conn.start()
            except StreamError as e:
                await conn.aclose()
                raise stream_error(e) from None
            except BaseException:
                await conn.aclose()
                raise
            return conn

    async def finish(self, stream: ClientStream) -> None:
        """A call is done with its stream: reset it if it is still open, forget it, and
        close its connection if that takes no new streams and this was its last."""
        conn = stream._conn
        if not stream.closed:
            stream.reset_nowait(ErrorCodes.CANCEL)
        conn.forget(stream)
        if not (conn.accepting or conn._streams):
            await self._retire(conn)
        elif conn._out:
            # Cancelled while waiting, the reset still leaves with the write in progress.
            await conn._flush()

    async def _retire(self, conn: H2ClientConnection) -> None:
        for pool in self._pools.values():
            if conn in pool:
                pool.remove(conn)
        with anyio.CancelScope(shield=True):
            await conn.aclose()

    async def _usable(self, conn: H2ClientConnection) -> bool:
        """Whether a new stream may go on ``conn``. An idle connection first takes in what
        the server sent meanwhile: a GOAWAY or a close (idle timeout) retires it."""
        if not conn.has_capacity():
            return False
        if not conn._streams:
            await conn.catch_up()
            if not conn.has_capacity():
                if not (conn.accepting or conn._streams):
                    await self._retire(conn)
                return False
        return True

    async def _connection(self, origin: Origin) -> H2ClientConnection:
        pool = self._pools.get(origin)
        if pool:
            # The common case: a connection with streams in flight and room for more
            # (it is being read, so it is known to be alive).
            for conn in pool:
                if conn._streams and conn.has_capacity():
                    return conn
        while True:
            pool = self._pools.setdefault(origin, [])
            for conn in [c for c in pool if not (c.accepting or c._streams)]:
                await self._retire(conn)
            for conn in list(pool):
                if await self._usable(conn):
                    return conn
            if len([c for c in pool if c.accepting]) < self._max_per_origin:
                lock = self._locks.setdefault(origin, anyio.Lock())
                async with lock:
                    # Someone else may have connected while we waited.
                    for conn in list(pool):
                        if await self._usable(conn):
                            return conn
                    if len([c for c in pool if c.accepting]) < self._max_per_origin:
                        conn = await self._connect(origin)
                        if self._pools.get(origin) is not pool:
                            # aclose() ran while we connected: not the pool's connection.
                            await conn.aclose()
                            with map_errors():
                                raise ClosedDuringConnect
                        pool.append(conn)
                        return conn
            busy = [c for c in pool if c.accepting]
            if busy:
                await _first_capacity(busy)

    def _request_headers(self, origin: Origin, request: ClientRequest) -> RawHeaders:
        start = self._authorities.get(origin)
        if start is None:
            start = self._authorities[origin] = [
                (b":scheme", origin.scheme.encode()),
                (b":authority", origin.authority().encode()),
            ]
        return [
            (b":method", request.method.encode()),
            *start,
            (b":path", request.path.encode()),
            *request.headers,
        ]

    async def _start(
        self, origin: Origin, request: ClientRequest, end: bool, body: bytes
    ) -> ClientStream:
        """Opens a stream with the request head and, if given, the whole body (then the
        stream ends with ``end``)."""
        headers = self._request_headers(origin, request)
        for attempt in range(3):
            conn = await self._connection(origin)
            try:
                with map_errors():
                    stream, rest = await conn.open_stream(headers, end_stream=end, body=body)
                break
            except StreamError as e:
                # Refused before any processing (GOAWAY raced us): safe to retry elsewhere.
                if e.code != ErrorCodes.REFUSED_STREAM or attempt == 2:
                    raise stream_error(e) from None
        if rest:
            try:
                with map_errors():
                    await stream.send_data(rest, end_stream=end)
            except StreamError:
                pass  # answered early, or reset: reading the response says which
            except BaseException:
                await self.finish(stream)
                raise
        return stream

    async def unary(
        self, origin: Origin, request: ClientRequest
    ) -> tuple[int, RawHeaders, bytes, RawHeaders | None]:
        stream = await self._start(origin, request, True, request.body or b"")
        try:
            with map_errors():
                headers = await stream.receive_headers()
                body = await stream.receive_all()
            return stream.status, headers, body, stream.trailers
        except StreamError as e:
            raise stream_error(e) from None
        finally:
            await self.finish(stream)

    async def open(
        self,
        origin: Origin,
        request: ClientRequest,
        body: AsyncIterable[bytes] | None,
        pump: TaskGroup | None,
    ) -> HTTP2Response:
        stream = await self._start(origin, request, body is None, request.body or b"")
        response = HTTP2Response(self, stream)
        try:
            with map_errors():
                if body is not None:
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
