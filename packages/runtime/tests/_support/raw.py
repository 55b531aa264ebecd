"""Raw HTTP requests through httpcore, an HTTP client independent of ours.

For inputs our client would never send (bad content types, methods, bodies) and
for reading responses exactly as the server wrote them.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpcore

from connect_anyio import Headers

from .servers import RunningServer


@dataclass
class RawResponse:
    status: int
    headers: Headers
    body: bytes
    http_version: str


@asynccontextmanager
async def raw_pool(
    srv: RunningServer, *, http2: bool | None = None, client_cert: bool = False
) -> AsyncIterator[httpcore.AsyncConnectionPool]:
    """A connection pool for the server's transport (h1, h2c prior knowledge, or TLS+ALPN)."""
    if http2 is None:
        http2 = srv.transport != "h1"
    context = None
    if srv.tls is not None:
        context = srv.tls.client_context(with_client_cert=client_cert)
    h2c = http2 and srv.tls is None
    async with httpcore.AsyncConnectionPool(
        ssl_context=context, http1=not h2c, http2=http2
    ) as pool:
        yield pool


async def raw_request(
    srv: RunningServer,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes | AsyncIterable[bytes] = b"",
    *,
    http2: bool | None = None,
) -> RawResponse:
    """One request; the whole response."""
    async with raw_pool(srv, http2=http2) as pool:
        response = await pool.request(
            method,
            srv.url + path,
            headers=[(b"host", b"127.0.0.1"), *(headers or [])],
            content=body,
        )
    return RawResponse(
        response.status,
        Headers._from_wire(response.headers),
        response.content,
        response.extensions["http_version"].decode(),
    )
