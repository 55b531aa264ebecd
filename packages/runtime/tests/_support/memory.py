"""Protocol round trips in memory: a client call's bytes into a server call and back.

No sockets and no event loop: the pure protocol objects (``ClientCall`` and
``ServerCall``) are wired together the way the plumbing wires them, with the
HTTP exchange simulated as lists of headers and byte chunks. Used by the unit
tests to check that messages, headers, trailers and errors survive each
protocol, stream shape, codec and compression.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from connect_anyio import _protocol as p
from connect_anyio import _protocol_connect as connect
from connect_anyio import _protocol_grpc as grpc
from connect_anyio._server_core import Route, ServerConfig, select_call
from connect_anyio.code import Code
from connect_anyio.codec import Codec, proto_binary_codec, proto_json_codec
from connect_anyio.compression import (
    BrotliCompression,
    Compression,
    GzipCompression,
    ZstdCompression,
)
from connect_anyio.errors import ConnectError
from connect_anyio.method import MethodInfo
from connect_anyio.protocol import ProtocolType
from connect_anyio.request import Headers

CODECS: dict[str, Codec[Any, Any]] = {"proto": proto_binary_codec(), "json": proto_json_codec()}
COMPRESSIONS: dict[str, Callable[[], Compression] | None] = {
    "identity": None,
    "gzip": GzipCompression,
    "br": BrotliCompression,
    "zstd": ZstdCompression,
}
Chunker = Callable[[bytes], Iterable[bytes]]


def whole(data: bytes) -> list[bytes]:
    """The body in one chunk."""
    return [data]


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def compression(name: str) -> Compression | None:
    factory = COMPRESSIONS[name]
    return None if factory is None else factory()


def client_call(
    protocol: ProtocolType,
    method: MethodInfo[Any, Any],
    *,
    codec: str = "proto",
    send: str = "identity",
    accept: Sequence[str] = ("gzip", "br", "zstd"),
    headers: Headers | None = None,
    timeout_ms: float | None = None,
    read_max_bytes: int | None = None,
    compress_min_bytes: int = 0,
) -> p.ClientCall:
    """The protocol's client half for ``method``, configured as ``ClientCore`` would."""
    accepted = {name: c for name in accept if (c := compression(name)) is not None}
    kwargs: dict[str, Any] = {
        "stream": method.stream_type.streams_requests or method.stream_type.streams_responses,
        "method": method,
        "codec": CODECS[codec],
        "path_prefix": "",
        "headers": headers if headers is not None else Headers(),
        "timeout_ms": timeout_ms,
        "send_compression": compression(send),
        "accept": accepted,
        "read_max_bytes": read_max_bytes,
        "compress_min_bytes": compress_min_bytes,
    }
    if protocol is ProtocolType.CONNECT:
        return connect.client_call(**kwargs)
    return grpc.client_call(web=protocol is ProtocolType.GRPC_WEB, **kwargs)


def server_config(
    *,
    read_max_bytes: int | None = None,
    compress_min_bytes: int = 0,
    compressions: Iterable[Compression] | None = None,
) -> ServerConfig:
    return ServerConfig.build(
        codecs=None,
        compressions=compressions,
        read_max_bytes=read_max_bytes,
        compress_min_bytes=compress_min_bytes,
    )


def route(method: MethodInfo[Any, Any]) -> Route:
    return Route(method=method, stream_type=method.stream_type, call=None)


def client_request(call: p.ClientCall, requests: Sequence[Any], *, use_get: bool = False) -> Any:
    """The ``ClientRequest`` the plumbing would send, with the whole body filled in."""
    method: MethodInfo[Any, Any] = call.method  # type: ignore[attr-defined]
    stream_type = method.stream_type
    if not stream_type.streams_requests and not stream_type.streams_responses:
        assert len(requests) == 1
        return call.unary_request(requests[0], use_get)
    request = call.stream_request()
    request.body = b"".join(call.encode_message(m) for m in requests)
    return request


def server_call(
    request: p.ClientRequest,
    method: MethodInfo[Any, Any],
    *,
    config: ServerConfig | None = None,
    http_version: str = "2",
    trailers: bool = True,
) -> p.ServerCall:
    """Routes a client request to a server call (raises ``ProtocolError`` for HTTP answers)."""
    path, _, query = request.path.partition("?")
    assert path == method.procedure
    headers = Headers._from_wire(request.headers)
    return select_call(
        route(method),
        http_method=request.method,
        content_type=headers.get("content-type"),
        query=query,
        headers=headers,
        config=config or server_config(),
        http_version=http_version,
        trailers=trailers,
    )


def read_requests(call: p.ServerCall, body: bytes, chunker: Chunker = whole) -> list[Any]:
    """What the server decodes from ``body``: messages, or ``ConnectError`` raised."""
    messages: list[Any] = []
    for chunk in chunker(body):
        messages.extend(call.feed(chunk))
    messages.extend(call.finish())
    return messages


@dataclass
class WireResponse:
    """A response as HTTP would carry it."""

    status: int
    headers: p.RawHeaders
    body: bytes
    trailers: p.RawHeaders | None
    trailers_only: bool = False


def respond(
    call: p.ServerCall,
    messages: Sequence[Any],
    *,
    error: ConnectError | None = None,
    headers: Headers | None = None,
    trailers: Headers | None = None,
) -> WireResponse:
    """The response ``run_call`` would produce for these results."""
    if call.request_error is not None:
        return _whole(call.whole_response(None, call.request_error, None, None))
    method = call.method
    if not method.stream_type.streams_responses:
        message = messages[0] if messages and error is None else None
        return _whole(call.whole_response(message, error, headers, trailers))
    if not messages:
        return _whole(call.whole_response(None, error, headers, trailers))
    start = call.start_stream(headers)
    body = b"".join(call.encode_message(m) for m in messages)
    tail, http_trailers = call.end_stream(error, trailers)
    return WireResponse(start.status, start.headers, body + tail, http_trailers)


def _whole(response: p.WholeResponse) -> WireResponse:
    return WireResponse(
        response.start.status,
        response.start.headers,
        response.body,
        response.trailers,
        response.trailers_only,
    )


@dataclass
class ClientResult:
    messages: list[Any] = field(default_factory=list)
    error: ConnectError | None = None


def read_response(
    call: p.ClientCall,
    response: WireResponse,
    *,
    chunker: Chunker = whole,
    trailers_only_block: bool = False,
) -> ClientResult:
    """What the client makes of a response. ``trailers_only_block`` sends a Trailers-Only
    response as one header block (as HTTP/2 servers do) instead of headers then trailers."""
    result = ClientResult()
    try:
        if response.trailers_only and trailers_only_block:
            assert response.trailers is not None
            call.on_response_start(response.status, response.headers + response.trailers)
            result.messages.extend(call.finish(None))
            return result
        call.on_response_start(response.status, response.headers)
        for chunk in chunker(response.body):
            result.messages.extend(call.feed(chunk))
        result.messages.extend(call.finish(response.trailers))
    except ConnectError as e:
        result.error = e
    return result


def round_trip(
    protocol: ProtocolType,
    method: MethodInfo[Any, Any],
    requests: Sequence[Any],
    responses: Sequence[Any],
    *,
    error: ConnectError | None = None,
    response_headers: Headers | None = None,
    response_trailers: Headers | None = None,
    client_options: dict[str, Any] | None = None,
    config: ServerConfig | None = None,
    use_get: bool = False,
    chunker: Chunker = whole,
) -> tuple[list[Any], p.ClientCall, ClientResult]:
    """A whole call: returns what the server decoded, the client call, and what the client got."""
    ccall = client_call(protocol, method, **(client_options or {}))
    request = client_request(ccall, requests, use_get=use_get)
    scall = server_call(request, method, config=config)
    assert scall.request_error is None, scall.request_error
    received = read_requests(scall, request.body or b"", chunker)
    wire = respond(
        scall, responses, error=error, headers=response_headers, trailers=response_trailers
    )
    return received, ccall, read_response(ccall, wire, chunker=chunker)


def error_of(fn: Callable[[], object]) -> ConnectError:
    """The ``ConnectError`` that ``fn`` raises (fails if it raises nothing)."""
    try:
        fn()
    except ConnectError as e:
        return e
    raise AssertionError("expected a ConnectError")


__all__ = [
    "CODECS",
    "COMPRESSIONS",
    "ClientResult",
    "Code",
    "WireResponse",
    "byte_by_byte",
    "client_call",
    "client_request",
    "compression",
    "error_of",
    "read_requests",
    "read_response",
    "respond",
    "round_trip",
    "route",
    "server_call",
    "server_config",
    "whole",
]
