"""``HTTPClient``: the connections a client (or several clients) share."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterable
from typing import TYPE_CHECKING, TypeVar

from anyio.abc import TaskGroup

from . import HTTPVersion, Origin, Response
from ._http1 import HTTP1Transport
from ._http2 import HTTP2Transport, NotHTTP2

if TYPE_CHECKING:
    from .._protocol import ClientRequest, RawHeaders


_HTTPClient = TypeVar("_HTTPClient", bound="HTTPClient")


def tls_context(
    *,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> ssl.SSLContext:
    """A client TLS context: system CAs (or ``ca_file``), optional client certificate."""
    context = ssl.create_default_context(cafile=ca_file)
    if cert_file is not None:
        context.load_cert_chain(cert_file, key_file)
    return context


class HTTPClient:
    """Pools of HTTP connections, shareable between clients.

    ``http_version`` picks HTTP/1.1, HTTP/2 (h2c prior knowledge on ``http://``)
    or, the default, HTTP/1.1 on ``http://`` and ALPN's choice on ``https://``.
    ``ssl_context`` sets TLS (custom CA, client certificate); see ``tls_context``.
    HTTP/1.1 carries one call per connection: concurrent calls open up to
    ``max_connections`` connections in all (then wait for one), and an idle
    connection is closed after ``keepalive_expiry`` seconds (``None``: never).
    HTTP/2 carries many calls per connection (up to the server's stream limit,
    then more connections, at most 8 per server).
    Close it with ``aclose()`` or ``async with``; a client that creates its own
    closes it with itself; calls in flight then fail as ``unavailable``.
    """

    def __init__(
        self,
        *,
        http_version: HTTPVersion = HTTPVersion.AUTO,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 100,
        keepalive_expiry: float | None = 60.0,
    ) -> None:
        self.http_version = http_version
        self._ssl_context = ssl_context or ssl.create_default_context()
        self._http1 = HTTP1Transport(self._ssl_context, max_connections, keepalive_expiry)
        alpn = ["h2"] if http_version is HTTPVersion.HTTP2 else ["h2", "http/1.1"]
        self._http2 = HTTP2Transport(self._ssl_context, alpn)
        # Origins whose TLS server picked HTTP/1.1 when offered both.
        self._http1_origins: set[Origin] = set()

    def uses_http2(self, origin: Origin, required: bool = False) -> bool:
        """Whether calls to ``origin`` go over HTTP/2 (known once ALPN has answered).

        ``required`` (gRPC) means HTTP/2 even for ``http://`` (h2c prior knowledge).
        """
        if self.http_version is HTTPVersion.HTTP2:
            return True
        if self.http_version is HTTPVersion.HTTP1:
            if required:
                from ..code import Code
                from ..errors import ConnectError

                raise ConnectError(
                    Code.UNAVAILABLE, "gRPC needs HTTP/2, but the HTTP client is HTTP/1.1 only"
                )
            return False
        if required:
            return True
        return origin.tls and origin not in self._http1_origins

    def full_duplex(self, origin: Origin, required: bool = False) -> bool:
        """Whether calls to ``origin`` can send and receive at the same time."""
        return self.uses_http2(origin, required)

    async def unary(
        self, origin: Origin, request: ClientRequest, http2_required: bool = False
    ) -> tuple[int, RawHeaders, bytes, RawHeaders | None]:
        if self.uses_http2(origin, http2_required):
            try:
                return await self._http2.unary(origin, request)
            except NotHTTP2:
                self._not_http2(origin, http2_required)
        return await self._http1.unary(origin, request)

    def _not_http2(self, origin: Origin, required: bool = False) -> None:
        if self.http_version is HTTPVersion.HTTP2 or required:
            from ..code import Code
            from ..errors import ConnectError

            raise ConnectError(
                Code.UNAVAILABLE, f"{origin.authority()} did not agree to HTTP/2 (ALPN)"
            )
        self._http1_origins.add(origin)

    async def open(
        self,
        origin: Origin,
        request: ClientRequest,
        body: AsyncIterable[bytes] | None,
        pump: TaskGroup | None,
        http2_required: bool = False,
    ) -> Response:
        """Starts an exchange. With ``pump``, a full-duplex transport sends ``body`` from a task
        there while the response is read; otherwise the body is sent first."""
        if self.uses_http2(origin, http2_required):
            try:
                return await self._http2.open(origin, request, body, pump)
            except NotHTTP2:
                self._not_http2(origin, http2_required)
        return await self._http1.open(origin, request, body, pump)

    async def aclose(self) -> None:
        await self._http2.aclose()
        await self._http1.aclose()

    async def __aenter__(self: _HTTPClient) -> _HTTPClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
