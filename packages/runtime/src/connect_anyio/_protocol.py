"""The sans-IO protocol interface that server and client plumbing talk to.

A protocol (Connect, gRPC, gRPC-Web) turns a call into HTTP: which headers to
send, how to frame messages, where errors and trailers go. Plumbing (the ASGI
adapter, the native server, the WSGI adapter, the clients) never asks which
protocol it is dealing with; it feeds bytes in and writes out what it is given.

Nothing here awaits or touches a socket.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .code import Code
from .compression import (
    BrotliCompression,
    Compression,
    DecompressionLimitError,
    GzipCompression,
    ZstdCompression,
)
from .errors import ConnectError

if TYPE_CHECKING:
    from .codec import Codec
    from .method import MethodInfo
    from .request import Headers

RawHeaders = list[tuple[bytes, bytes]]

DEFAULT_COMPRESS_MIN_BYTES = 1024
"""Messages smaller than this are sent uncompressed: compressing them costs more than it saves."""


@dataclass(slots=True)
class ResponseStart:
    """The status line and headers of a response."""

    status: int
    headers: RawHeaders
    trailers: bool = False
    """Whether HTTP trailers follow the body (gRPC)."""


@dataclass(slots=True)
class WholeResponse:
    """A response produced in one piece: start, body, optional HTTP trailers."""

    start: ResponseStart
    body: bytes
    trailers: RawHeaders | None = None
    trailers_only: bool = False
    """The body is empty and a transport that can may send headers and trailers as one
    header block that ends the stream (gRPC's Trailers-Only)."""


class ProtocolError(Exception):
    """A request the server cannot even route to a protocol: answered with a bare HTTP status."""

    def __init__(self, status: int, headers: RawHeaders, body: bytes = b"") -> None:
        super().__init__(status)
        self.status = status
        self.headers = headers
        self.body = body


# ---------------------------------------------------------------------------
# compression


def default_compressions() -> list[Compression]:
    """The algorithms supported when none are configured: gzip, br and zstd."""
    return [GzipCompression(), BrotliCompression(), ZstdCompression()]


def compression_table(compressions: Iterable[Compression] | None) -> dict[str, Compression]:
    chosen = default_compressions() if compressions is None else list(compressions)
    return {c.name(): c for c in chosen if c.name() != "identity"}


def parse_encoding_list(value: str | None) -> list[str]:
    """Names from an ``Accept-Encoding``-style list, in order, without quality values."""
    if not value:
        return []
    out = []
    for part in value.split(","):
        name = part.split(";", 1)[0].strip().lower()
        if name:
            out.append(name)
    return out


def negotiate_response_compression(
    accept: str | None,
    request_encoding: str | None,
    table: Mapping[str, Compression],
    names: list[str] | None = None,
) -> Compression | None:
    """The first encoding the peer accepts that we support; ``None`` for identity.

    Without an accept list, the peer is assumed to accept what it sent with.
    ``names`` is ``accept`` parsed already, when the caller has it.
    """
    if names is None:
        names = parse_encoding_list(accept)
    if not names and request_encoding:
        names = [request_encoding]
    for name in names:
        found = table.get(name)
        if found is not None:
            return found
    return None


_CACHE_MAX = 64
"""Distinct header values a server remembers the parsing of (bounded: clients choose them)."""


class ServerOptions:
    """What every server call of an application reads, with what can be computed once."""

    __slots__ = ("_accept_lists", "accept_value", "compress_min", "read_max", "table")

    def __init__(
        self, table: Mapping[str, Compression], read_max: int | None, compress_min: int
    ) -> None:
        self.table = table
        self.read_max = read_max
        self.compress_min = compress_min
        self.accept_value = ",".join(table).encode()
        """The encodings we accept, as ``Accept-Encoding``-style headers list them."""
        self._accept_lists: dict[str, list[str]] = {}

    def request_compression(self, encoding: str | None) -> tuple[str | None, Compression | None]:
        """The request's encoding name (lower case) and algorithm; raises for an unknown one."""
        if not encoding:
            return None, None
        name = encoding.strip().lower()
        if not name or name == "identity":
            return name, None
        found = self.table.get(name)
        if found is None:
            raise unsupported_encoding(name, self.table)
        return name, found

    def response_compression(
        self, accept: str | None, request_encoding: str | None
    ) -> Compression | None:
        """``negotiate_response_compression`` with the parsing of ``accept`` remembered."""
        if not accept:
            return self.table.get(request_encoding) if request_encoding else None
        names = self._accept_lists.get(accept)
        if names is None:
            names = parse_encoding_list(accept)
            if len(self._accept_lists) < _CACHE_MAX:
                self._accept_lists[accept] = names
        return negotiate_response_compression(None, request_encoding, self.table, names)


def unsupported_encoding(name: str, table: Mapping[str, Compression]) -> ConnectError:
    supported = ", ".join(["identity", *table])
    return ConnectError(
        Code.UNIMPLEMENTED,
        f"unknown compression {name!r}: supported encodings are {supported}",
    )


def decompress(
    compression: Compression, data: bytes | memoryview, limit: int | None, code: Code
) -> bytes:
    """Decompresses a message, mapping failures to ``code`` and the limit to resource_exhausted."""
    try:
        return compression.decompress(data, limit)
    except DecompressionLimitError:
        raise ConnectError(
            Code.RESOURCE_EXHAUSTED,
            f"message is larger than configured max {limit} bytes after decompression",
        ) from None
    except Exception as e:
        raise ConnectError(code, f"decompress ({compression.name()}): {e}") from None


def message_too_large(size: int, limit: int) -> ConnectError:
    return ConnectError(
        Code.RESOURCE_EXHAUSTED,
        f"message size {size} is larger than configured max {limit}",
    )


def decode_message(
    codec: Codec[Any, Any], data: bytes | memoryview, cls: type[Any], code: Code
) -> Any:
    try:
        return codec.decode(data, cls)
    except Exception as e:
        raise ConnectError(code, f"unmarshal into {cls.__name__}: {e}") from None


# ---------------------------------------------------------------------------
# metadata


def encode_binary_header(value: bytes) -> str:
    """Unpadded standard base64, as ``-bin`` metadata travels."""
    return base64.b64encode(value).decode("ascii").rstrip("=")


def decode_binary_header(value: str) -> bytes:
    """Accepts padded and unpadded, standard and URL-safe base64.

    Strict: characters outside the alphabet raise ``ValueError`` (``b64decode`` would
    silently drop them, turning garbage into some other message).
    """
    v = value.strip()
    v += "=" * (-len(v) % 4)
    if "-" in v or "_" in v:
        return base64.b64decode(v, altchars=b"-_", validate=True)
    return base64.b64decode(v, validate=True)


def is_reserved_header(name: str) -> bool:
    """Headers the protocols own; user metadata with these names is not sent."""
    return name in _RESERVED or name.startswith(("connect-", "grpc-", ":"))


_RESERVED = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "accept-encoding",
        "te",
        "transfer-encoding",
        "connection",
        "host",
        "keep-alive",
        "upgrade",
        "trailer",
        "user-agent",
    }
)


def user_headers(headers: Headers) -> RawHeaders:
    """The non-protocol entries of ``headers``, ready for the wire."""
    out: RawHeaders = []
    for k, v in headers.allitems():
        if not is_reserved_header(k):
            out.append((k.encode("latin-1"), v.encode("latin-1")))
    return out


# ---------------------------------------------------------------------------
# the interfaces


class ServerCall:
    """One call on the server side, for one protocol.

    Request side: ``feed`` body chunks and collect messages, then ``finish``.
    Response side: either ``whole_response`` (a single message or an error, when
    nothing has been sent yet), or ``start_stream``, ``encode_message`` per
    message and ``end_stream``.
    """

    codec: Codec[Any, Any]
    method: MethodInfo[Any, Any]
    timeout_ms: float | None
    request_error: ConnectError | None
    """A problem found in the request headers; the call must fail with it."""
    http_method: str

    def feed(self, chunk: bytes) -> list[Any]:
        raise NotImplementedError

    def finish(self) -> list[Any]:
        """End of the request body: any last messages; raises on a truncated body."""
        raise NotImplementedError

    def read_hint(self) -> int | None:
        """How many more body bytes complete the next request message, when the framing
        tells; ``None`` otherwise. A reader whose reads block until they are filled (WSGI's
        ``wsgi.input``) asks for no more, so it never waits for bytes not yet sent."""
        return None

    def whole_response(
        self,
        message: Any | None,
        error: ConnectError | None,
        headers: Headers | None,
        trailers: Headers | None,
    ) -> WholeResponse:
        raise NotImplementedError

    def start_stream(self, headers: Headers | None) -> ResponseStart:
        raise NotImplementedError

    def encode_message(self, message: Any) -> bytes:
        raise NotImplementedError

    def end_stream(
        self, error: ConnectError | None, trailers: Headers | None
    ) -> tuple[bytes, RawHeaders | None]:
        """The last body bytes and, for protocols that use them, the HTTP trailers."""
        raise NotImplementedError


@dataclass(slots=True)
class ClientRequest:
    """What the client transport must send to start a call."""

    method: str
    path: str
    """Path and query."""
    headers: RawHeaders
    body: bytes | None = None
    """The whole body, when known up front (unary calls)."""


class ClientCall:
    """One call on the client side, for one protocol."""

    response_headers: Headers
    response_trailers: Headers

    def unary_request(self, message: Any, use_get: bool) -> ClientRequest:
        raise NotImplementedError

    def stream_request(self) -> ClientRequest:
        raise NotImplementedError

    def encode_message(self, message: Any) -> bytes:
        raise NotImplementedError

    def on_response_start(self, status: int, headers: RawHeaders) -> None:
        """Checks the response head; raises ``ConnectError`` if it already says the call failed."""
        raise NotImplementedError

    def feed(self, chunk: bytes) -> list[Any]:
        """Body bytes in, messages out; raises ``ConnectError`` if the stream reports one."""
        raise NotImplementedError

    def finish(self, trailers: RawHeaders | None) -> list[Any]:
        """End of the response; raises ``ConnectError`` if the call failed."""
        raise NotImplementedError


def require_single(messages: Sequence[Any], *, what: str, code: Code) -> Any:
    """The one message a unary side must carry."""
    if len(messages) == 1:
        return messages[0]
    if not messages:
        raise ConnectError(code, f"{what}: expected exactly one message, got none")
    raise ConnectError(code, f"{what}: expected exactly one message, got {len(messages)}")
