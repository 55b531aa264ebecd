"""The client transport seam: one interface over HTTP/1.1 and HTTP/2.

The client plumbing asks for an exchange (request head, body, response) and
never knows which HTTP version carries it. Network and HTTP library exceptions
become ``ConnectError`` here, once.
"""

from __future__ import annotations

import enum
import ssl
from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

import anyio

from ..code import Code
from ..errors import ConnectError

if TYPE_CHECKING:
    from .._protocol import RawHeaders


class HTTPVersion(enum.Enum):
    """Which HTTP version a client speaks."""

    AUTO = "auto"
    """HTTP/1.1 for ``http://``; for ``https://``, whatever ALPN picks (h2 preferred)."""
    HTTP1 = "http1"
    """HTTP/1.1 only. Bidirectional calls are half-duplex."""
    HTTP2 = "http2"
    """HTTP/2 only: prior knowledge (h2c) for ``http://``, ALPN ``h2`` for ``https://``."""


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"

    def url(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{path}"


class Response(Protocol):
    """A response being received."""

    status: int
    headers: RawHeaders

    async def receive(self) -> bytes:
        """The next body chunk; ``b""`` at the end."""
        ...

    def trailers(self) -> RawHeaders | None:
        """HTTP trailers, once the body has ended (HTTP/2 only)."""
        ...

    async def aclose(self) -> None:
        """Ends the exchange; before the end of the response this aborts it on the wire."""
        ...


class RemoteProtocolError(Exception):
    """The server broke HTTP/1.1 (a malformed response head, a body cut short)."""


class LocalProtocolError(Exception):
    """A request that HTTP/1.1 cannot carry (a header value with a line break, say)."""


class ClosedDuringConnect(Exception):
    """The HTTP client was closed while a call was connecting."""

    def __init__(self) -> None:
        super().__init__("the HTTP client was closed")


class _UserError(Exception):
    """Carries an exception raised by the caller's request iterator through the HTTP library."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(exc)
        self.exc = exc


async def guard_body(body: AsyncIterable[bytes]) -> AsyncGenerator[bytes, None]:
    """Wraps the caller's exceptions in ``_UserError`` so they are not taken for network errors.

    Closing it early (the peer answered or reset before the body ended) closes ``body``'s
    iterator too: an async generator left unfinished for the garbage collector is a
    ResourceWarning under trio.
    """
    iterator = body.__aiter__()
    try:
        while True:
            try:
                chunk = await iterator.__anext__()
            except StopAsyncIteration:
                return
            except Exception as e:
                raise _UserError(e) from e
            yield chunk
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


_NETWORK_ERRORS = (
    ClosedDuringConnect,
    RemoteProtocolError,
    LocalProtocolError,
    OSError,
    ssl.SSLError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)


class _MapErrors:
    """Network failures -> ``unavailable``; the caller's own exceptions pass through unchanged.

    A class rather than ``@contextmanager``: it is entered several times per call, and
    a generator-based context manager costs a generator and two frames each time.
    """

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            return
        if isinstance(exc, _UserError):
            raise exc.exc from None
        if isinstance(exc, _NETWORK_ERRORS) and not isinstance(exc, ConnectError):
            raise ConnectError(Code.UNAVAILABLE, describe(exc)) from exc


_MAP_ERRORS = _MapErrors()


def map_errors() -> _MapErrors:
    """Network failures -> ``unavailable``; the caller's own exceptions pass through unchanged."""
    return _MAP_ERRORS


def describe(e: BaseException) -> str:
    """``Type: message``; an exception without a message (trio's ``BrokenResourceError``
    around a TLS alert, say) is described by the first cause that has one,
    such as the ``ssl`` error that says which certificate check failed."""
    cause: BaseException | None = e
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        text = str(cause)
        if text:
            if cause is e:
                return f"{type(e).__name__}: {text}"
            return f"{type(e).__name__}: {type(cause).__name__}: {text}"
        cause = cause.__cause__ or cause.__context__
    return type(e).__name__
