"""Headers and the per-call request context handed to handlers and interceptors."""

from __future__ import annotations

__all__ = ["Headers", "RequestContext"]

import base64
import time
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Generic, TypeVar, overload

if TYPE_CHECKING:
    from .method import MethodInfo

REQ = TypeVar("REQ")
RES = TypeVar("RES")
_T = TypeVar("_T")


class Headers(MutableMapping[str, str]):
    """HTTP headers (or trailers): a case-insensitive multimap of strings.

    As a mapping it shows one value per name, the first one; ``add`` appends a
    value without replacing, ``getall`` returns every value of a name and
    ``allitems`` every pair, duplicates included. Names are stored in lower case.

    Binary metadata (names ending in ``-bin``) travels as base64; ``add_binary``
    and ``getall_binary`` encode and decode it, the other methods see the text.
    """

    __slots__ = ("_store",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] | None = None) -> None:
        self._store: dict[str, list[str]] = {}
        if items is None:
            return
        pairs = items.items() if isinstance(items, Mapping) else items
        if isinstance(items, Headers):
            pairs = items.allitems()
        for key, value in pairs:
            self.add(key, value)

    @classmethod
    def _from_wire(cls, raw: Iterable[tuple[bytes, bytes]]) -> Headers:
        """Builds headers from ``(name, value)`` byte pairs, as ASGI, h11 and h2 give them."""
        headers = cls.__new__(cls)
        store: dict[str, list[str]] = {}
        for key, value in raw:
            k = key.decode("latin-1").lower()
            v = value.decode("latin-1")
            values = store.get(k)
            if values is None:
                store[k] = [v]
            else:
                values.append(v)
        headers._store = store
        return headers

    def _to_wire(self) -> list[tuple[bytes, bytes]]:
        return [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, values in self._store.items()
            for v in values
        ]

    def __getitem__(self, key: str) -> str:
        return self._store[key.lower()][0]

    def __setitem__(self, key: str, value: str) -> None:
        self._store[key.lower()] = [value]

    def __delitem__(self, key: str) -> None:
        del self._store[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._store

    def __iter__(self) -> Iterator[str]:
        return iter(self._store)

    def __len__(self) -> int:
        return len(self._store)

    @overload
    def get(self, key: str, /) -> str | None: ...
    @overload
    def get(self, key: str, /, default: str | _T) -> str | _T: ...
    def get(self, key: str, /, default: object = None) -> object:
        values = self._store.get(key.lower())
        return values[0] if values else default

    def _get_lower(self, key: str) -> str | None:
        """``get`` for a name known to be in lower case (the runtime's own lookups)."""
        values = self._store.get(key)
        return values[0] if values else None

    def add(self, key: str, value: str) -> None:
        """Appends a value for ``key``, keeping the values it has."""
        k = key.lower()
        values = self._store.get(k)
        if values is None:
            self._store[k] = [value]
        else:
            values.append(value)

    def getall(self, key: str) -> list[str]:
        """Every value of ``key``, in order; empty when absent."""
        return list(self._store.get(key.lower(), ()))

    def add_binary(self, key: str, value: bytes) -> None:
        """Appends binary metadata: ``key`` must end in ``-bin``; sent as unpadded base64."""
        if not key.lower().endswith("-bin"):
            raise ValueError(f"binary metadata keys end in '-bin': {key!r}")
        self.add(key, base64.b64encode(value).decode("ascii").rstrip("="))

    def getall_binary(self, key: str) -> list[bytes]:
        """Every value of a ``-bin`` key, decoded (padded or not; values joined by commas split)."""
        out = []
        for value in self.getall(key):
            for part in value.split(","):
                part = part.strip()
                padded = part + "=" * (-len(part) % 4)
                if "-" in part or "_" in part:
                    out.append(base64.urlsafe_b64decode(padded))
                else:
                    out.append(base64.b64decode(padded))
        return out

    def allitems(self) -> Iterator[tuple[str, str]]:
        """Every ``(name, value)`` pair, duplicates included."""
        for k, values in self._store.items():
            for v in values:
                yield k, v

    def clear(self) -> None:
        self._store.clear()

    def copy(self) -> Headers:
        """A copy that shares no state with this one."""
        out = Headers.__new__(Headers)
        out._store = {k: list(v) for k, v in self._store.items()}
        return out

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._store == other._store
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({list(self.allitems())!r})"


class RequestContext(Generic[REQ, RES]):
    """What a handler or interceptor knows about the call besides its messages.

    On the server, handlers and interceptors set response headers and trailers on
    it. On the client, interceptors see the request headers that will be sent.
    """

    __slots__ = (
        "_call_state",
        "_client_address",
        "_deadline",
        "_http_method",
        "_method",
        "_request_headers",
        "_response_headers",
        "_response_trailers",
        "_server_address",
    )

    def __init__(
        self,
        *,
        method: MethodInfo[REQ, RES],
        http_method: str = "POST",
        request_headers: Headers | None = None,
        timeout_ms: float | None = None,
        server_address: str | None = None,
        client_address: str | None = None,
    ) -> None:
        self._method = method
        self._http_method = http_method
        self._request_headers = request_headers if request_headers is not None else Headers()
        self._response_headers: Headers | None = None
        self._response_trailers: Headers | None = None
        self._deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000.0
        self._server_address = server_address
        self._client_address = client_address
        self._call_state: object | None = None

    def method(self) -> MethodInfo[REQ, RES]:
        """The method being called."""
        return self._method

    def http_method(self) -> str:
        """The HTTP method: ``POST``, or ``GET`` for a Connect GET call."""
        return self._http_method

    def request_headers(self) -> Headers:
        """The request headers (custom metadata and protocol headers)."""
        return self._request_headers

    def response_headers(self) -> Headers:
        """Headers to send before the response (server side)."""
        if self._response_headers is None:
            self._response_headers = Headers()
        return self._response_headers

    def response_trailers(self) -> Headers:
        """Trailers to send after the response (server side)."""
        if self._response_trailers is None:
            self._response_trailers = Headers()
        return self._response_trailers

    def timeout_ms(self) -> float | None:
        """Milliseconds left until the call's deadline, or ``None`` without a deadline."""
        if self._deadline is None:
            return None
        return max(0.0, (self._deadline - time.monotonic()) * 1000.0)

    def server_address(self) -> str | None:
        """``host:port`` of the server, when known."""
        return self._server_address

    def client_address(self) -> str | None:
        """``host:port`` of the client, when known (server side only)."""
        return self._client_address

    def _deadline_monotonic(self) -> float | None:
        return self._deadline

    def _has_response_headers(self) -> bool:
        return bool(self._response_headers)

    def _has_response_trailers(self) -> bool:
        return bool(self._response_trailers)
