"""The Connect protocol: unary (POST and GET) and streaming, server and client halves."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from . import _protocol as p
from ._envelope import (
    FLAG_COMPRESSED,
    FLAG_CONNECT_END_STREAM,
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

PROTOCOL_VERSION = "1"
STREAM_PREFIX = _STREAM_PREFIX = "application/connect+"


# ---------------------------------------------------------------------------
# errors and end-stream JSON


def error_to_dict(error: ConnectError) -> dict[str, Any]:
    out: dict[str, Any] = {"code": error.code.value}
    if error.message:
        out["message"] = error.message
    if error.details:
        out["details"] = [
            {
                "type": d.type_url.rsplit("/", 1)[-1],
                "value": base64.b64encode(d.value).decode("ascii").rstrip("="),
            }
            for d in error.details
        ]
    return out


def error_from_dict(
    data: object, *, fallback: Code, metadata: Headers | None = None
) -> ConnectError | None:
    """The error a JSON object describes, or ``None`` if it is not a JSON object.

    A missing, null or unrecognized ``code`` is ``fallback``: the code implied by the HTTP
    status for a unary error, ``unknown`` in an end-stream message (as connect-go does).
    """
    from google.protobuf import any_pb2

    if not isinstance(data, dict):
        return None
    name = data.get("code")
    code = (Code.from_name(name) if isinstance(name, str) else None) or fallback
    message = data.get("message") or ""
    if not isinstance(message, str):
        message = str(message)
    details = []
    raw_details = data.get("details") or []
    if isinstance(raw_details, list):
        for item in raw_details:
            if not isinstance(item, dict):
                continue
            type_name = item.get("type")
            value = item.get("value")
            if not isinstance(type_name, str) or not isinstance(value, str):
                continue
            try:
                raw = p.decode_binary_header(value)
            except ValueError:
                continue
            details.append(
                any_pb2.Any(
                    type_url=type_name if "/" in type_name else f"type.googleapis.com/{type_name}",
                    value=raw,
                )
            )
    return ConnectError(code, message, details, metadata=metadata)


def error_to_json(error: ConnectError) -> bytes:
    return json.dumps(error_to_dict(error), separators=(",", ":")).encode()


def _metadata_dict(trailers: Headers | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if trailers:
        for k, v in trailers.allitems():
            if not p.is_reserved_header(k):
                out.setdefault(k, []).append(v)
    return out


def end_stream_json(error: ConnectError | None, trailers: Headers | None) -> bytes:
    body: dict[str, Any] = {}
    if error is not None:
        body["error"] = error_to_dict(error)
        meta = _metadata_dict(_merged(trailers, error))
    else:
        meta = _metadata_dict(trailers)
    if meta:
        body["metadata"] = meta
    return json.dumps(body, separators=(",", ":")).encode()


def _merged(trailers: Headers | None, error: ConnectError | None) -> Headers | None:
    if error is None or not error._metadata:
        return trailers
    out = trailers.copy() if trailers else Headers()
    for k, v in error.metadata.allitems():
        out.add(k, v)
    return out


def parse_timeout_ms(value: str | None) -> float | None:
    """``Connect-Timeout-Ms``: a positive integer of at most 10 digits."""
    if value is None:
        return None
    v = value.strip()
    if not v.isdigit() or len(v) > 10:
        raise ConnectError(
            Code.INVALID_ARGUMENT, f"protocol error: invalid connect-timeout-ms {value!r}"
        )
    return float(int(v))


def _headers_with_prefixed_trailers(
    raw: p.RawHeaders, headers: Headers | None, trailers: Headers | None
) -> p.RawHeaders:
    if headers:
        raw.extend(p.user_headers(headers))
    if trailers:
        for k, v in trailers.allitems():
            if not p.is_reserved_header(k):
                raw.append((b"trailer-" + k.encode("latin-1"), v.encode("latin-1")))
    return raw


# ---------------------------------------------------------------------------
# server


class _ConnectServerCall(p.ServerCall):
    __slots__ = (
        "_opts",
        "_req_compression",
        "_res_compression",
        "codec",
        "http_method",
        "method",
        "request_error",
        "timeout_ms",
    )

    def __init__(
        self,
        method: MethodInfo[Any, Any],
        http_method: str,
        headers: Headers,
        codec: Codec[Any, Any],
        opts: p.ServerOptions,
        encoding_header: str,
        accept_header: str,
    ) -> None:
        self.method = method
        self.http_method = http_method
        self.codec = codec
        self._opts = opts
        self.request_error: ConnectError | None = None
        self.timeout_ms = None
        self._req_compression: Compression | None = None
        self._res_compression: Compression | None = None
        get = headers._get_lower
        try:
            timeout = get("connect-timeout-ms")
            if timeout is not None:
                self.timeout_ms = parse_timeout_ms(timeout)
            version = get("connect-protocol-version")
            if version is not None and version != PROTOCOL_VERSION:
                raise ConnectError(
                    Code.INVALID_ARGUMENT,
                    f"connect-protocol-version must be {PROTOCOL_VERSION!r}: got {version!r}",
                )
            name, self._req_compression = opts.request_compression(get(encoding_header))
            self._res_compression = opts.response_compression(get(accept_header), name)
        except ConnectError as e:
            self.request_error = e

    def _decompress_limit(self, data: bytes | memoryview, compressed: bool) -> bytes | memoryview:
        read_max = self._opts.read_max
        if compressed:
            if self._req_compression is None:
                raise ConnectError(
                    Code.INTERNAL,
                    "protocol error: compressed message without connect-content-encoding",
                )
            return p.decompress(self._req_compression, data, read_max, Code.INVALID_ARGUMENT)
        if read_max is not None and len(data) > read_max:
            raise p.message_too_large(len(data), read_max)
        return data

    def _compress(self, data: bytes) -> tuple[bytes, bool]:
        c = self._res_compression
        if c is None or len(data) < self._opts.compress_min:
            return data, False
        return c.compress(data), True


class ConnectUnaryServerCall(_ConnectServerCall):
    """Connect unary: a bare message in (POST body or GET query), a message or JSON error out."""

    __slots__ = ("_body", "_content_type", "_get_message")

    def __init__(
        self,
        method: MethodInfo[Any, Any],
        http_method: str,
        headers: Headers,
        codec: Codec[Any, Any],
        opts: p.ServerOptions,
        content_type: bytes,
        query: str = "",
    ) -> None:
        self._body: bytes | bytearray = b""
        self._get_message: bytes | None = None
        self._content_type = content_type
        super().__init__(
            method, http_method, headers, codec, opts, "content-encoding", "accept-encoding"
        )
        if http_method == "GET" and self.request_error is None:
            try:
                self._parse_get(query)
            except ConnectError as e:
                self.request_error = e

    def _parse_get(self, query: str) -> None:
        params = parse_qs(query, keep_blank_values=True)
        version = params.get("connect", [None])[0]
        if version is not None and version != "v" + PROTOCOL_VERSION:
            raise ConnectError(
                Code.INVALID_ARGUMENT, f"connect query parameter must be 'v1': got {version!r}"
            )
        message = params.get("message", [""])[0]
        if params.get("base64", [""])[0] == "1":
            try:
                raw = p.decode_binary_header(message)
            except ValueError as e:
                raise ConnectError(
                    Code.INVALID_ARGUMENT, f"invalid base64 in message: {e}"
                ) from None
        else:
            raw = message.encode()
        compression = params.get("compression", [None])[0]
        self._req_compression = None
        if compression and compression != "identity":
            found = self._opts.table.get(compression)
            if found is None:
                raise p.unsupported_encoding(compression, self._opts.table)
            self._req_compression = found
        self._get_message = raw

    def feed(self, chunk: bytes) -> list[Any]:
        body = self._body
        if not body:
            # Most bodies arrive in one chunk: keep it as it is, no copy.
            body = self._body = chunk if type(chunk) is bytes else bytes(chunk)
        else:
            if not isinstance(body, bytearray):
                body = self._body = bytearray(body)
            body += chunk
        limit = self._opts.read_max
        if limit is not None and self._req_compression is None and len(body) > limit:
            raise p.message_too_large(len(body), limit)
        return []

    def finish(self) -> list[Any]:
        body = self._get_message if self._get_message is not None else self._body
        data: bytes | memoryview = body if isinstance(body, bytes) else memoryview(body)
        if self._req_compression is not None and len(data) > 0:
            data = self._decompress_limit(data, True)
        else:
            limit = self._opts.read_max
            if limit is not None and len(data) > limit:
                raise p.message_too_large(len(data), limit)
        return [p.decode_message(self.codec, data, self.method.input, Code.INVALID_ARGUMENT)]

    def whole_response(
        self,
        message: Any | None,
        error: ConnectError | None,
        headers: Headers | None,
        trailers: Headers | None,
    ) -> p.WholeResponse:
        if error is None:
            body, compressed = self._compress(self.codec.encode(message))
            raw: p.RawHeaders = [(b"content-type", self._content_type)]
            if compressed and self._res_compression is not None:
                raw.append((b"content-encoding", self._res_compression.name().encode()))
            raw.append((b"accept-encoding", self._opts.accept_value))
            if headers or trailers:
                _headers_with_prefixed_trailers(raw, headers, trailers)
            return p.WholeResponse(p.ResponseStart(200, raw), body)
        body, compressed = self._compress(error_to_json(error))
        raw = [(b"content-type", b"application/json")]
        if compressed and self._res_compression is not None:
            raw.append((b"content-encoding", self._res_compression.name().encode()))
        _headers_with_prefixed_trailers(raw, headers, _merged(trailers, error))
        return p.WholeResponse(p.ResponseStart(error.code.http_status, raw), body)


class ConnectStreamServerCall(_ConnectServerCall):
    """Connect streaming: enveloped messages both ways, errors in the end-stream message."""

    __slots__ = ("_content_type", "_decoder")

    def __init__(
        self,
        method: MethodInfo[Any, Any],
        http_method: str,
        headers: Headers,
        codec: Codec[Any, Any],
        opts: p.ServerOptions,
        content_type: bytes,
    ) -> None:
        super().__init__(
            method,
            http_method,
            headers,
            codec,
            opts,
            "connect-content-encoding",
            "connect-accept-encoding",
        )
        self._content_type = content_type
        self._decoder = EnvelopeDecoder(opts.read_max)

    def feed(self, chunk: bytes) -> list[Any]:
        try:
            envelopes = self._decoder.feed(chunk)
        except EnvelopeTooLargeError as e:
            raise p.message_too_large(e.size, e.limit) from None
        out = []
        for flags, data in envelopes:
            if flags & FLAG_CONNECT_END_STREAM:
                raise ConnectError(
                    Code.INVALID_ARGUMENT, "protocol error: end-stream flag in a request"
                )
            payload = self._decompress_limit(data, bool(flags & FLAG_COMPRESSED))
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

    def start_stream(self, headers: Headers | None) -> p.ResponseStart:
        raw: p.RawHeaders = [(b"content-type", self._content_type)]
        if self._res_compression is not None:
            raw.append((b"connect-content-encoding", self._res_compression.name().encode()))
        raw.append((b"connect-accept-encoding", self._opts.accept_value))
        if headers:
            raw.extend(p.user_headers(headers))
        return p.ResponseStart(200, raw)

    def encode_message(self, message: Any) -> bytes:
        data = self.codec.encode(message)
        c = self._res_compression
        if c is not None and len(data) >= self._opts.compress_min:
            return encode_envelope(FLAG_COMPRESSED, c.compress(data))
        return encode_envelope(0, data)

    def end_stream(
        self, error: ConnectError | None, trailers: Headers | None
    ) -> tuple[bytes, p.RawHeaders | None]:
        if error is None and not trailers:
            return _EMPTY_END_STREAM, None
        return encode_envelope(FLAG_CONNECT_END_STREAM, end_stream_json(error, trailers)), None

    def whole_response(
        self,
        message: Any | None,
        error: ConnectError | None,
        headers: Headers | None,
        trailers: Headers | None,
    ) -> p.WholeResponse:
        start = self.start_stream(headers)
        body = b"" if message is None or error is not None else self.encode_message(message)
        tail, _ = self.end_stream(error, trailers)
        return p.WholeResponse(start, body + tail)


_EMPTY_END_STREAM = encode_envelope(FLAG_CONNECT_END_STREAM, b"{}")


def classify(content_type: str) -> tuple[bool, str] | None:
    """``(streaming, codec name)`` for a Connect content type, else ``None``."""
    ct = content_type.split(";", 1)[0].strip().lower()
    if ct.startswith(_STREAM_PREFIX):
        return True, ct[len(_STREAM_PREFIX) :]
    if ct.startswith("application/") and "+" not in ct and not ct.startswith("application/grpc"):
        return False, ct[len("application/") :]
    return None


def get_codec_name(query: str) -> str | None:
    values = parse_qs(query).get("encoding")
    return values[0] if values else None


# ---------------------------------------------------------------------------
# client


class _ConnectClientCall(p.ClientCall):
    def __init__(
        self,
        *,
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
        self._status = 0
        self._res_compression: Compression | None = None

    def _common_headers(self, raw: p.RawHeaders) -> p.RawHeaders:
        raw.append((b"connect-protocol-version", PROTOCOL_VERSION.encode()))
        if self._timeout_ms is not None:
            raw.append((b"connect-timeout-ms", str(max(1, int(self._timeout_ms))).encode()))
        raw.extend(p.user_headers(self._headers))
        return raw

    def _compress(self, data: bytes) -> tuple[bytes, bool]:
        c = self._send
        if c is None or len(data) < self._compress_min:
            return data, False
        return c.compress(data), True

    def _response_compression(self, name: str | None) -> Compression | None:
        if not name or name == "identity":
            return None
        found = self._accept.get(name)
        if found is None:
            raise ConnectError(
                Code.INTERNAL,
                f"protocol error: server used compression {name!r}, which was not requested",
            )
        return found

    def _decompress_limit(self, data: bytes | memoryview, compressed: bool) -> bytes | memoryview:
        if compressed:
            if self._res_compression is None:
                raise ConnectError(
                    Code.INTERNAL, "protocol error: compressed message without an encoding header"
                )
            return p.decompress(self._res_compression, data, self._read_max, Code.INTERNAL)
        if self._read_max is not None and len(data) > self._read_max:
            raise p.message_too_large(len(data), self._read_max)
        return data


class ConnectUnaryClientCall(_ConnectClientCall):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._body = bytearray()

    def unary_request(self, message: Any, use_get: bool) -> p.ClientRequest:
        codec_name = self.codec.name()
        if use_get:
            encode = getattr(self.codec, "encode_deterministic", self.codec.encode)
            data, compressed = self._compress(encode(message))
            query = ["connect=v1"]
            if compressed or codec_name != "json":
                query.append("base64=1")
                text = base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")
            else:
                text = quote(data.decode(), safe="")
            if compressed and self._send is not None:
                query.append("compression=" + self._send.name())
            query.append("encoding=" + quote(codec_name, safe=""))
            query.append("message=" + text)
            raw = self._common_headers([])
            if self._accept:
                raw.append((b"accept-encoding", ",".join(self._accept).encode()))
            return p.ClientRequest("GET", self._path + "?" + "&".join(query), raw)
        data, compressed = self._compress(self.codec.encode(message))
        raw = [(b"content-type", b"application/" + codec_name.encode())]
        if compressed and self._send is not None:
            raw.append((b"content-encoding", self._send.name().encode()))
        if self._accept:
            raw.append((b"accept-encoding", ",".join(self._accept).encode()))
        return p.ClientRequest("POST", self._path, self._common_headers(raw), data)

    def on_response_start(self, status: int, headers: p.RawHeaders) -> None:
        self._status = status
        h = self.response_headers
        for k, v in headers:
            # Header names are case-insensitive; HTTP/1.1 peers send them in any case.
            key = k.decode("latin-1").lower()
            if key.startswith("trailer-"):
                self.response_trailers.add(key[8:], v.decode("latin-1"))
            else:
                h.add(key, v.decode("latin-1"))
        encoding = h.get("content-encoding")
        if status == 200:
            ct = (h.get("content-type") or "").split(";", 1)[0].strip().lower()
            expected = "application/" + self.codec.name()
            if ct != expected:
                raise ConnectError(
                    Code.INTERNAL if ct.startswith("application/") else Code.UNKNOWN,
                    f"invalid content-type: {ct!r}; expecting {expected!r}",
                    metadata=self._meta(),
                )
            self._res_compression = self._response_compression(encoding)
        else:
            try:
                self._res_compression = self._response_compression(encoding)
            except ConnectError:
                self._res_compression = None

    def _meta(self) -> Headers:
        out = self.response_headers.copy()
        for k, v in self.response_trailers.allitems():
            out.add(k, v)
        return out

    def feed(self, chunk: bytes) -> list[Any]:
        self._body += chunk
        limit = self._read_max
        if (
            self._status == 200
            and limit is not None
            and self._res_compression is None
            and len(self._body) > limit
        ):
            raise p.message_too_large(len(self._body), limit)
        return []

    def finish(self, trailers: p.RawHeaders | None) -> list[Any]:
        if self._status != 200:
            raise self._error_from_body()
        payload = self._decompress_limit(
            memoryview(self._body), self._res_compression is not None and bool(self._body)
        )
        return [p.decode_message(self.codec, payload, self.method.output, Code.INTERNAL)]

    def _error_from_body(self) -> ConnectError:
        body: bytes | memoryview = memoryview(self._body)
        if body and self._res_compression is not None:
            try:
                body = self._res_compression.decompress(body, self._read_max)
            except Exception:
                body = b""
        err = None
        ct = (self.response_headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if body and ct == "application/json":
            try:
                err = error_from_dict(
                    json.loads(bytes(body)),
                    fallback=Code.from_http_status(self._status),
                    metadata=self._meta(),
                )
            except ValueError:
                err = None
        if err is None:
            code = Code.from_http_status(self._status)
            err = ConnectError(code, f"HTTP status {self._status}", metadata=self._meta())
        return err


class ConnectStreamClientCall(_ConnectClientCall):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._decoder = EnvelopeDecoder(self._read_max)
        self._ended = False
        self._error_body = bytearray()

    def stream_request(self) -> p.ClientRequest:
        raw: p.RawHeaders = [(b"content-type", (_STREAM_PREFIX + self.codec.name()).encode())]
        if self._send is not None:
            raw.append((b"connect-content-encoding", self._send.name().encode()))
        if self._accept:
            raw.append((b"connect-accept-encoding", ",".join(self._accept).encode()))
        return p.ClientRequest("POST", self._path, self._common_headers(raw))

    def encode_message(self, message: Any) -> bytes:
        data, compressed = self._compress(self.codec.encode(message))
        return encode_envelope(FLAG_COMPRESSED if compressed else 0, data)

    def on_response_start(self, status: int, headers: p.RawHeaders) -> None:
        self._status = status
        for k, v in headers:
            self.response_headers.add(k.decode("latin-1"), v.decode("latin-1"))
        if status != 200:
            # Streams always answer 200; anything else came from outside the protocol.
            return
        ct = (self.response_headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        expected = _STREAM_PREFIX + self.codec.name()
        if ct != expected:
            code = Code.INTERNAL if ct.startswith(_STREAM_PREFIX) else Code.UNKNOWN
            raise ConnectError(code, f"invalid content-type: {ct!r}; expecting {expected!r}")
        self._res_compression = self._response_compression(
            self.response_headers.get("connect-content-encoding")
        )

    def feed(self, chunk: bytes) -> list[Any]:
        if self._status != 200:
            if len(self._error_body) < 65536:
                self._error_body += chunk[: 65536 - len(self._error_body)]
            return []
        if self._ended:
            if chunk:
                raise ConnectError(Code.INTERNAL, "protocol error: data after end-stream message")
            return []
        try:
            envelopes = self._decoder.feed(chunk)
        except EnvelopeTooLargeError as e:
            raise p.message_too_large(e.size, e.limit) from None
        out = []
        for flags, data in envelopes:
            if self._ended:
                raise ConnectError(Code.INTERNAL, "protocol error: data after end-stream message")
            compressed = bool(flags & FLAG_COMPRESSED)
            if flags & FLAG_CONNECT_END_STREAM:
                self._ended = True
                payload = self._decompress_limit(data, compressed) if compressed else data
                self._end_stream(payload)
                continue
            payload = self._decompress_limit(data, compressed)
            out.append(p.decode_message(self.codec, payload, self.method.output, Code.INTERNAL))
        return out

    def _end_stream(self, payload: bytes | memoryview) -> None:
        try:
            body = json.loads(bytes(payload))
        except ValueError:
            raise ConnectError(
                Code.INTERNAL, "protocol error: invalid end-stream message"
            ) from None
        if not isinstance(body, dict):
            raise ConnectError(Code.INTERNAL, "protocol error: invalid end-stream message")
        meta = body.get("metadata") or {}
        if isinstance(meta, dict):
            for k, values in meta.items():
                if isinstance(values, list):
                    for v in values:
                        self.response_trailers.add(str(k), str(v))
        if body.get("error") is not None:
            # ``"error": null`` is no error.
            err = error_from_dict(body["error"], fallback=Code.UNKNOWN, metadata=self._meta())
            if err is None:
                raise ConnectError(
                    Code.INTERNAL, "protocol error: invalid error in end-stream message"
                )
            self._pending_error = err

    _pending_error: ConnectError | None = None

    def _meta(self) -> Headers:
        out = self.response_headers.copy()
        for k, v in self.response_trailers.allitems():
            out.add(k, v)
        return out

    def take_error(self) -> ConnectError | None:
        err, self._pending_error = self._pending_error, None
        return err

    def finish(self, trailers: p.RawHeaders | None) -> list[Any]:
        if self._status != 200:
            err = None
            ct = (self.response_headers.get("content-type") or "").split(";", 1)[0].strip()
            if self._error_body and ct == "application/json":
                try:
                    err = error_from_dict(
                        json.loads(bytes(self._error_body)),
                        fallback=Code.from_http_status(self._status),
                        metadata=self._meta(),
                    )
                except ValueError:
                    err = None
            raise err or ConnectError(
                Code.from_http_status(self._status),
                f"HTTP status {self._status}",
                metadata=self._meta(),
            )
        if self._pending_error is not None:
            raise self.take_error()  # type: ignore[misc]
        if not self._ended:
            raise ConnectError(
                Code.INTERNAL, "protocol error: stream ended without an end-stream message"
            )
        return []


def client_call(*, stream: bool, **kwargs: Any) -> p.ClientCall:
    if stream:
        return ConnectStreamClientCall(**kwargs)
    return ConnectUnaryClientCall(**kwargs)
