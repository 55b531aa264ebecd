"""HTTP/1.1 exchanges on httpcore's connection pool (always half-duplex)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterable
from typing import TYPE_CHECKING

import httpcore
from anyio.abc import TaskGroup

from . import Origin, guard_body, map_errors

if TYPE_CHECKING:
    from .._protocol import ClientRequest, RawHeaders


class _Body:
    """A request body of known bytes, for httpcore.

    httpcore wraps ``bytes`` in an async generator; when sending fails halfway (a
    server that rejects our TLS certificate and closes, say) that generator is left
    unfinished, and trio warns about it (ResourceWarning) when it is collected. This
    iterator has nothing to finish.
    """

    __slots__ = ("_data", "_sent")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._sent = False

    def __aiter__(self) -> _Body:
        return _Body(self._data)

    async def __anext__(self) -> bytes:
        if self._sent:
            raise StopAsyncIteration
        self._sent = True
        return self._data


class HTTP1Response:
    __slots__ = ("_chunks", "_reading", "_response", "headers", "status")

    def __init__(self, response: httpcore.Response) -> None:
        self._response = response
        self.status = response.status
        self.headers: RawHeaders = list(response.headers)
        self._chunks = response.aiter_stream()
        self._reading = False

    async def aclose(self) -> None:
        """Releases the connection; one closed before the end of the body is dropped."""
        with map_errors():
            await self._response.aclose()
        if self._reading:
            self._reading = False
            await self._finish_generators()

    async def _finish_generators(self) -> None:
        """Runs httpcore's body generators to their end on the now closed connection.

        httpcore reads a body through a chain of nested async generators; closing the
        outermost one leaves the inner ones suspended, and trio warns (ResourceWarning)
        about every unfinished async generator that is garbage collected. Reading on
        from a closed connection ends the whole chain with an error instead.
        """
        try:
            while True:
                await self._chunks.__anext__()
        except Exception:
            # StopAsyncIteration, or the closed connection's error: either way done.
            pass

    async def receive(self) -> bytes:
        self._reading = True
        with map_errors():
            try:
                return bytes(await self._chunks.__anext__())
            except StopAsyncIteration:
                self._reading = False
                return b""

    def trailers(self) -> RawHeaders | None:
        return None


class HTTP1Transport:
    """A pool of HTTP/1.1 connections."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None,
        max_connections: int,
        keepalive_expiry: float | None,
    ) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=max_connections,
            keepalive_expiry=keepalive_expiry,
            http1=True,
            http2=False,
        )

    @staticmethod
    def _headers(origin: Origin, request: ClientRequest, streaming: bool = False) -> RawHeaders:
        headers = [(b"host", origin.authority().encode()), *request.headers]
        if streaming:
            headers.append((b"transfer-encoding", b"chunked"))
        elif request.body is not None:
            headers.append((b"content-length", str(len(request.body)).encode()))
        return headers

    async def unary(
        self, origin: Origin, request: ClientRequest
    ) -> tuple[int, RawHeaders, bytes, RawHeaders | None]:
        with map_errors():
            response = await self._pool.request(
                request.method,
                origin.url(request.path),
                headers=self._headers(origin, request),
                content=_Body(request.body or b""),
            )
        return response.status, list(response.headers), response.content, None

    async def open(
        self,
        origin: Origin,
        request: ClientRequest,
        body: AsyncIterable[bytes] | None,
        pump: TaskGroup | None,
    ) -> HTTP1Response:
        # HTTP/1.1 sends the whole request before the response is read: always half-duplex.
        chunks = guard_body(body) if body is not None else None
        try:
            with map_errors():
                response = await self._pool.handle_async_request(
                    httpcore.Request(
                        request.method,
                        origin.url(request.path),
                        headers=self._headers(origin, request, streaming=body is not None),
                        content=chunks if chunks is not None else _Body(request.body or b""),
                    )
                )
        finally:
            # The request has been sent (or abandoned): finish the body generator.
            if chunks is not None:
                await chunks.aclose()
        return HTTP1Response(response)

    async def aclose(self) -> None:
        await self._pool.aclose()
