"""``ResponseMetadata``: headers and trailers of the calls made inside a ``with`` block."""

from __future__ import annotations

import contextvars
from types import TracebackType
from typing import Any

from .request import Headers, RequestContext

_current: contextvars.ContextVar[ResponseMetadata | None] = contextvars.ContextVar(
    "connect_anyio_response_metadata", default=None
)


class ResponseMetadata:
    """Captures response headers and trailers, which calls do not return.

    Calls made inside ``with ResponseMetadata() as meta:`` record their headers
    and trailers here (the last call wins). It uses a context variable, so
    concurrent tasks each see their own. Headers are recorded as soon as they
    arrive, before the first streamed message.

    Example::

        with ResponseMetadata() as meta:
            hat = await client.make_hat(Size(inches=10))
        print(meta.headers(), meta.trailers())
    """

    __slots__ = ("_headers", "_token", "_trailers")

    def __init__(self) -> None:
        self._headers = Headers()
        self._trailers = Headers()
        self._token: contextvars.Token[ResponseMetadata | None] | None = None

    def __enter__(self) -> ResponseMetadata:
        self._token = _current.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None

    def headers(self) -> Headers:
        """The response headers."""
        return self._headers

    def trailers(self) -> Headers:
        """The response trailers."""
        return self._trailers


def record_headers(headers: Headers, ctx: RequestContext[Any, Any]) -> None:
    """A client call received its response headers: on its context and the current metadata."""
    ctx._response_headers = headers
    meta = _current.get()
    if meta is not None:
        meta._headers = headers
        meta._trailers = Headers()


def record_trailers(trailers: Headers, ctx: RequestContext[Any, Any]) -> None:
    """A client call ended: its trailers, on its context and the current metadata."""
    ctx._response_trailers = trailers
    meta = _current.get()
    if meta is not None:
        meta._trailers = trailers


def record_both(headers: Headers, trailers: Headers, ctx: RequestContext[Any, Any]) -> None:
    """A unary client call ended: ``record_headers`` and ``record_trailers`` at once."""
    ctx._response_headers = headers
    ctx._response_trailers = trailers
    meta = _current.get()
    if meta is not None:
        meta._headers = headers
        meta._trailers = trailers
