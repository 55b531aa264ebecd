"""``HTTPClient``: the connections a client (or several clients) share."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterable
from typing import TYPE_CHECKING

from anyio.abc import TaskGroup

from . import HTTPVersion, Origin, Response
from ._http1 import HTTP1Transport

if TYPE_CHECKING:
    from .._protocol import ClientRequest, RawHeaders


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
    Close it with ``aclose()`` or ``async with``; a client that creates its own
    closes it with itself.
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

    def _transport(self, origin: Origin) -> HTTP1Transport:
        return self._http1

    def full_duplex(self, origin: Origin) -> bool:
        """Whether calls to ``origin`` can send and receive at the same time."""
        return False

    async def unary(
        self, origin: Origin, request: ClientRequest
    ) -> tuple[int, RawHeaders, bytes, RawHeaders | None]:
        return await self._transport(origin).unary(origin, request)

    async def open(
        self,
        origin: Origin,
        request: ClientRequest,
        body: AsyncIterable[bytes] | None,
        pump: TaskGroup | None,
    ) -> Response:
        """Starts an exchange. With ``pump``, a full-duplex transport sends ``body`` from a task
        there while the response is read; otherwise the body is sent first."""
        return await self._transport(origin).open(origin, request, body, pump)

    async def aclose(self) -> None:
        await self._http1.aclose()

    async def __aenter__(self) -> HTTPClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
