"""gRPC (HTTP/2 with trailers) and gRPC-Web (status in a final body frame), both ends."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from google.rpc import status_pb2

from . import _protocol as p
from ._envelope import (
    FLAG_COMPRESSED,
    FLAG_GRPC_WEB_TRAILERS,
    EnvelopeDecoder,
    EnvelopeTooLargeError,
    encode_envelope,
)
from .code import Code
from .errors import ConnectError
from .request import Headers

if TYPE_CHECKING:
    from .codec import Codec
    from .compression import Compression
    from .method import MethodInfo

USER_AGENT = b"grpc-python-connect-anyio/0.1.0"

_UNITS = {"H": 3_600_000.0, "M": 60_000.0, "S": 1000.0, "m": 1.0, "u": 0.001, "n": 0.000001}


def parse_timeout(value: str | None) -> float | None:
    """``grpc-timeout`` in milliseconds: up to 8 digits and a unit (H M S m u n)."""
    if value is None:
        return None
    v = value.strip()
    digits, unit = v[:-1], v[-1:]
    if not digits.isdigit() or len(digits) > 8 or unit not in _UNITS:
        raise ConnectError(Code.INVALID_ARGUMENT, f"protocol error: invalid grpc-timeout {value!r}")
    return int(digits) * _UNITS[unit]


def format_timeout(ms: float) -> str:
    """The most precise ``grpc-timeout`` that fits in 8 digits."""
    ms = max(ms, 0.0)
    for unit, scale in (("n", 0.000001), ("u", 0.001), ("m", 1.0), ("S", 1000.0), ("M", 60_000.0)):
        value = int(ms / scale)
        if value < 100_000_000:
            return f"{max(value, 1)}{unit}"
    return f"{min(int(ms / 3_600_000.0), 99_999_999)}H"


def encode_message_header(message: str) -> bytes:
    """``grpc-message``: UTF-8, percent-encoding everything outside printable ASCII and ``%``."""
    out = bytearray()
    for b in message.encode():
        if 0x20 <= b <= 0x7E and b != 0x25:
            out.append(b)
        else:
            out += b"%%%02X" % b
    return bytes(out)


def decode_message_header(value: str) -> str:
    return unquote(value, errors="replace")


def status_trailers(error: ConnectError | None, trailers: Headers | None) -> p.RawHeaders:
    """``grpc-status``, ``grpc-message``, ``grpc-status-details-bin`` and the user's trailers."""
    raw: p.RawHeaders = []
    if error is None:
        raw.append((b"grpc-status", b"0"))
    else:
        raw.append((b"grpc-status", str(error.code.grpc_number).encode()))
        if error.message:
            raw.append((b"grpc-message", encode_message_header(error.message)))
        if error.details:
            status = status_pb2.Status(
                code=error.code.grpc_number, message=error.message, details=list(error.details)
            )
            raw.append(
                (
                    b"grpc-status-details-bin",
                    base64.b64encode(status.SerializeToString()).rstrip(b"="),
                )
            )
        if error._metadata:
            raw.extend(p.user_headers(error.metadata))
    if trailers:
        raw.extend(p.user_headers(trailers))
    return raw


def error_from_status(headers: Headers, metadata: Headers) -> ConnectError | None:
    """The error described by gRPC status headers (trailers), ``None`` for OK.

    Raises ``ConnectError`` (internal) when there is no valid ``grpc-status``.
    """
    raw_status = headers.get("grpc-status")
    if raw_status is None:
        raise ConnectError(
            Code.INTERNAL, "protocol error: no grpc-status in trailers", metadata=metadata
        )
    try:
        number = int(raw_status.strip())
    except ValueError:
        raise ConnectError(
            Code.INTERNAL, f"protocol error: invalid grpc-status {raw_status!r}", metadata=metadata
        ) from None
    code = Code.from_grpc_number(number)
    if code is None:
        return None
    message = decode_message_header(headers.get("grpc-message", ""))
    details: list[Any] = []
    details_bin = headers.get("grpc-status-details-bin")
    if details_bin:
        try:
            status = status_pb2.Status.FromString(p.decode_binary_header(details_bin))
            details = list(status.details)
        except Exception:
            details = []
    return ConnectError(code, message, details, metadata=metadata)


def _web_trailer_block(raw: p.RawHeaders) -> bytes:
    return b"".join(k.lower() + b": " + v + b"\r\n" for k, v in raw)


def _parse_web_trailer_block(data: bytes) -> p.RawHeaders:
    out: p.RawHeaders = []
    for line in data.split(b"\r\n"):
        if not line.strip():
            continue
        key, sep, value = line.partition(b":")
        if not sep:
            raise ConnectError(Code.INTERNAL, "protocol error: invalid gRPC-Web trailer line")
        out.append((key.strip().lower(), value.strip()))
    return out


# ---------------------------------------------------------------------------
# server


class GRPCServerCall(p.ServerCall):
    """A gRPC or gRPC-Web call on the server."""

    def __init__(
        self,
        web: bool,
        content_type: bytes,
        method: MethodInfo[Any, Any],
        headers: Headers,
        codec: Codec[Any, Any],
        opts: p.ServerOptions,
    ) -> None:
        self.web = web
        self.method = method
        self.http_method = "POST"
        self.codec = codec
        self._content_type = content_type
        self._opts = opts
        self._table = opts.table
        self._read_max = opts.read_max
        self._compress_min = opts.compress_min
        self.request_error: ConnectError | None = None
        self.timeout_ms: float | None = None
        self._req_compression: Compression | None = None
        self._res_compression: Compression | None = None
        self._decoder = EnvelopeDecoder(opts.read_max)
        get = headers._get_lower
        try:
            timeout = get("grpc-timeout")
            if timeout is not None:
                self.timeout_ms = parse_timeout(timeout)
            name, self._req_compression = opts.request_compression(get("grpc-encoding"))
            self._res_compression = opts.response_compression(get("grpc-accept-encoding"), name)
        except ConnectError as e:
            self.request_error = e

    def feed(self, chunk: bytes) -> list[Any]:
        try:
            envelopes = self._decoder.feed(chunk)
        except EnvelopeTooLargeError as e:
            raise p.message_too_large(e.size, e.limit) from None
        out = []
        for flags, data in envelopes:
            if flags & FLAG_COMPRESSED:
                if self._req_compression is None:
                    raise ConnectError(
                        Code.INTERNAL, "protocol error: compressed message without grpc-encoding"
                    )
                payload: bytes | memoryview = p.decompress(
                    self._req_compression, data, self._read_max, Code.INTERNAL
                )
            else:
                if self._read_max is not None and len(data) > self._read_max:
                    raise p.message_too_large(len(data), self._read_max)
                payload = data
            out.append(
                p.decode_message(self.codec, payload, self.method.input, Code.INVALID_ARGUMENT)
            )
        return out

    def finish(self) -> list[Any]:
        if self._decoder.pending:
            raise ConnectError(
                Code.INVALID_ARGUMENT, "protocol error: incomplete envelope at end of request"
            )
        return []

    def read_hint(self) -> int | None:
        return self._decoder.needed

    def _head(self, headers: Headers | None) -> p.RawHeaders:
        raw: p.RawHeaders = [(b"content-type", self._content_type)]
        if self._res_compression is not None:
            raw.append((b"grpc-encoding", self._res_compression.name().encode()))
        raw.append((b"grpc-accept-encoding", self._opts.accept_value))
        if headers:
            raw.extend(p.user_headers(headers))
        return raw

    def start_stream(self, headers: Headers | None) -> p.ResponseStart:
        return p.ResponseStart(200, self._head(headers), trailers=not self.web)

    def encode_message(self, message: Any) -> bytes:
        data = self.codec.encode(message)
        c = self._res_compression
        if c is not None and len(data) >= self._compress_min:
            return encode_envelope(FLAG_COMPRESSED, c.compress(data))
        return encode_envelope(0, data)

    def end_stream(
        self, error: ConnectError | None, trailers: Headers | None
    ) -> tuple[bytes, p.RawHeaders | None]:
        status = status_trailers(error, trailers)
        if self.web:
            return encode_envelope(FLAG_GRPC_WEB_TRAILERS, _web_trailer_block(status)), None
        return b"", status

    def whole_response(
        self,
        message: Any | None,
        error: ConnectError | None,
        headers: Headers | None,
        trailers: Headers | None,
    ) -> p.WholeResponse:
        if error is not None:
            status = status_trailers(error, trailers)
            if headers and p.user_headers(headers):
                # Custom headers must stay headers: Trailers-Only would turn them into
                # trailers. Send headers, then the status as trailers.
                start = self.start_stream(headers)
                tail, http_trailers = self.end_stream(error, trailers)
                return p.WholeResponse(start, tail, http_trailers)
            if self.web:
                # Trailers-only: the status travels in the only header block.
                return p.WholeResponse(p.ResponseStart(200, self._head(headers) + status), b"")
            start = p.ResponseStart(200, self._head(headers), trailers=True)
            return p.WholeResponse(start, b"", status, trailers_only=True)
        start = self.start_stream(headers)
        # No message: a response stream that ended before its first message.
        body = b"" if message is None else self.encode_message(message)
        tail, http_trailers = self.end_stream(None, trailers)
        return p.WholeResponse(start, body + tail, http_trailers)


def classify(content_type: str) -> tuple[bool, str] | None:
    """``(web, codec name)`` for a gRPC or gRPC-Web content type, else ``None``."""
    ct = content_type.split(";", 1)[0].strip().lower()
    for prefix, web in (("application/grpc-web", True), ("application/grpc", False)):
        if ct == prefix:
            return web, "proto"
        if ct.startswith(prefix + "+"):
            return web, ct[len(prefix) + 1 :]
    return None


# ---------------------------------------------------------------------------
# client


_CONTENT_TYPES: dict[tuple[bool, str], bytes] = {}


def _request_content_type(web: bool, codec_name: str) -> bytes:
    found = _CONTENT_TYPES.get((web, codec_name))
    if found is None:
        prefix = "application/grpc-web+" if web else "application/grpc+"
        found = _CONTENT_TYPES[web, codec_name] = (prefix + codec_name).encode()
    return found


class GRPCClientCall(p.ClientCall):
    """A gRPC or gRPC-Web call on the client; unary calls are streams of one."""

    def __init__(
        self,
        *,
        web: bool,
        method: MethodInfo[Any, Any],
        codec: Codec[Any, Any],
        path_prefix: str,
        headers: Headers,
        timeout_ms: float | None,
        send_compression: Compression | None,
        accept: Mapping[str, Compression],
        read_max_bytes: int | None,
        compress_min_bytes: int,
    ) -> None:
        self.web = web
        self.method = method
        self.codec = codec
        self._path = path_prefix + method.procedure
        self._headers = headers
        self._timeout_ms = timeout_ms
        self._send = send_compression
        self._accept = accept
        self._read_max = read_max_bytes
        self._compress_min = compress_min_bytes
        self.response_headers = Headers()
        self.response_trailers = Headers()
        self._decoder = EnvelopeDecoder(read_max_bytes)
        self._status = 0
        self._res_compression: Compression | None = None
        self._status_in_headers = False
        self._body_seen = False
        self._web_trailers: p.RawHeaders | None = None

    def _request(self, body: bytes | None) -> p.ClientRequest:
        raw: p.RawHeaders = [(b"content-type", _request_content_type(self.web, self.codec.name()))]
        if not self.web:
            raw.append((b"te", b"trailers"))
        if self._timeout_ms is not None:
            raw.append((b"grpc-timeout", format_timeout(self._timeout_ms).encode()))
        if self._send is not None:
            raw.append((b"grpc-encoding", self._send.name().encode()))
        if self._accept:
            raw.append((b"grpc-accept-encoding", ",".join(self._accept).encode()))
        raw.append((b"user-agent", USER_AGENT))
        if self.web:
            raw.append((b"x-grpc-web", b"1"))
        raw.extend(p.user_headers(self._headers))
        return p.ClientRequest("POST", self._path, raw, body)

    def unary_request(self, message: Any, use_get: bool) -> p.ClientRequest:
        return self._request(self.encode_message(message))

    def stream_request(self) -> p.ClientRequest:
        return self._request(None)

    def encode_message(self, message: Any) -> bytes:
        data = self.codec.encode(message)
        c = self._send
        if c is not None and len(data) >= self._compress_min:
            return encode_envelope(FLAG_COMPRESSED, c.compress(data))
        return encode_envelope(0, data)

    def _meta(self) -> Headers:
        out = self.response_headers.copy()
        for k, v in self.response_trailers.allitems():
            out.add(k, v)
        return out

    def on_response_start(self, status: int, headers: p.RawHeaders) -> None:
        self._status = status
        h = Headers._from_wire(headers)
        self.response_headers = h
        if status != 200:
            raise ConnectError(
                Code.from_http_status(status), f"HTTP status {status}", metadata=self._meta()
            )
        # A grpc-status here makes a trailers-only response only if nothing follows (no
        # body, no trailers): ``finish`` decides. Until then these are headers.
        self._status_in_headers = "grpc-status" in h
        ct = (h.get("content-type") or "").split(";", 1)[0].strip().lower()
        expected = "application/grpc-web" if self.web else "application/grpc"
        if not (ct == expected or ct.startswith(expected + "+")):
            raise ConnectError(
                Code.UNKNOWN,
                f"invalid content-type: {ct!r}; expecting {expected!r}",
                metadata=self._meta(),
            )
        name = h.get("grpc-encoding")
        if name and name != "identity":
            found = self._accept.get(name)
            if found is None and self._status_in_headers:
                # Likely trailers-only; a compressed message would fail on its own.
                return
            if found is None:
                raise ConnectError(
                    Code.INTERNAL,
                    f"protocol error: server used compression {name!r}, which was not requested",
                    metadata=self._meta(),
                )
            self._res_compression = found

    def feed(self, chunk: bytes) -> list[Any]:
        if chunk:
            self._body_seen = True
        try:
            envelopes = self._decoder.feed(chunk)
        except EnvelopeTooLargeError as e:
            raise p.message_too_large(e.size, e.limit) from None
        out = []
        for flags, data in envelopes:
            if self._web_trailers is not None:
                raise ConnectError(Code.INTERNAL, "protocol error: data after gRPC-Web trailers")
            payload: bytes | memoryview = data
            if flags & FLAG_COMPRESSED:
                if self._res_compression is None:
                    raise ConnectError(
                        Code.INTERNAL, "protocol error: compressed message without grpc-encoding"
                    )
                payload = p.decompress(self._res_compression, data, self._read_max, Code.INTERNAL)
            elif self._read_max is not None and len(data) > self._read_max:
                raise p.message_too_large(len(data), self._read_max)
            if self.web and flags & FLAG_GRPC_WEB_TRAILERS:
                self._web_trailers = _parse_web_trailer_block(bytes(payload))
                continue
            out.append(p.decode_message(self.codec, payload, self.method.output, Code.INTERNAL))
        return out

    def finish(self, trailers: p.RawHeaders | None) -> list[Any]:
        if self._decoder.pending:
            raise ConnectError(
                Code.INTERNAL, "protocol error: incomplete envelope at end of response"
            )
        raw = self._web_trailers if self.web else trailers
        if self._status_in_headers and not self._body_seen and not raw:
            # Trailers-only: the one header block was the trailers. Cleared in place, so
            # whoever already holds the headers object sees it empty.
            self.response_trailers = self.response_headers.copy()
            self.response_headers.clear()
        else:
            if raw is None:
                raise ConnectError(
                    Code.INTERNAL,
                    "protocol error: response ended without trailers",
                    metadata=self._meta(),
                )
            self.response_trailers = Headers._from_wire(raw)
        status = self.response_trailers._get_lower("grpc-status")
        if status is not None and status.strip() == "0":
            return []  # OK: no error, so no metadata to attach to one
        error = error_from_status(self.response_trailers, self._meta())
        if error is not None:
            raise error
        return []


def client_call(*, web: bool, stream: bool, **kwargs: Any) -> p.ClientCall:
    return GRPCClientCall(web=web, **kwargs)
