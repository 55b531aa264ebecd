"""Every bad input gives its precise code: on the server (request headers, bodies, limits,
routing) and on the client (responses that break the protocol)."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from _support import memory
from _support.service import EchoRequest, EchoResponse
from connectanyio.testing.v1.testing_connect import EchoServiceMethods

from connect_anyio import Code, Headers, MethodInfo, ProtocolType
from connect_anyio import _protocol as p
from connect_anyio._envelope import FLAG_COMPRESSED, FLAG_CONNECT_END_STREAM, encode_envelope
from connect_anyio._server_core import select_call

UNARY = EchoServiceMethods.EchoPost
ECHO_GET = EchoServiceMethods.Echo
BIDI = EchoServiceMethods.Bidi
CLIENT_STREAM = EchoServiceMethods.ClientStream

# (protocol, method, content type, encoding header, timeout header)
SHAPES = [
    ("connect-unary", UNARY, "application/proto", "content-encoding", "connect-timeout-ms"),
    (
        "connect-stream",
        BIDI,
        "application/connect+proto",
        "connect-content-encoding",
        "connect-timeout-ms",
    ),
    ("grpc", UNARY, "application/grpc", "grpc-encoding", "grpc-timeout"),
    ("grpc-web", BIDI, "application/grpc-web+proto", "grpc-encoding", "grpc-timeout"),
]
SHAPE_IDS = [s[0] for s in SHAPES]
ENVELOPED = [s for s in SHAPES if s[0] != "connect-unary"]


def _call(
    method: MethodInfo[Any, Any],
    content_type: str,
    headers: dict[str, str] | None = None,
    *,
    read_max_bytes: int | None = None,
    http_method: str = "POST",
    query: str = "",
) -> p.ServerCall:
    h = Headers({"content-type": content_type, **(headers or {})})
    return select_call(
        memory.route(method),
        http_method=http_method,
        content_type=content_type,
        query=query,
        headers=h,
        config=memory.server_config(read_max_bytes=read_max_bytes),
        http_version="2",
        trailers=True,
    )


def _body(shape: str, data: bytes, flags: int = 0) -> bytes:
    return data if shape == "connect-unary" else encode_envelope(flags, data)


# -- request headers -----------------------------------------------------------


@pytest.mark.parametrize(("shape", "method", "ct", "encoding", "_t"), SHAPES, ids=SHAPE_IDS)
def test_unknown_compression_is_unimplemented_listing_supported(
    shape: str, method: Any, ct: str, encoding: str, _t: str
) -> None:
    call = _call(method, ct, {encoding: "snappy"})
    assert call.request_error is not None
    assert call.request_error.code is Code.UNIMPLEMENTED
    assert "snappy" in call.request_error.message
    assert "identity, gzip, br, zstd" in call.request_error.message


@pytest.mark.parametrize(("shape", "method", "ct", "encoding", "_t"), SHAPES, ids=SHAPE_IDS)
def test_identity_and_known_compressions_are_accepted(
    shape: str, method: Any, ct: str, encoding: str, _t: str
) -> None:
    for name in ("identity", "gzip", "br", "zstd", "GZIP"):
        assert _call(method, ct, {encoding: name}).request_error is None


@pytest.mark.parametrize(("shape", "method", "ct", "_e", "timeout"), SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "12345678901234"])
def test_bad_timeout_header_is_invalid_argument(
    shape: str, method: Any, ct: str, _e: str, timeout: str, value: str
) -> None:
    call = _call(method, ct, {timeout: value})
    assert call.request_error is not None
    assert call.request_error.code is Code.INVALID_ARGUMENT
    assert timeout in call.request_error.message


@pytest.mark.parametrize(
    ("header", "value", "ms"),
    [("connect-timeout-ms", "1500", 1500.0), ("grpc-timeout", "2S", 2000.0)],
)
def test_good_timeout_header_sets_the_call_timeout(header: str, value: str, ms: float) -> None:
    ct = "application/proto" if header.startswith("connect") else "application/grpc"
    call = _call(UNARY, ct, {header: value})
    assert call.request_error is None
    assert call.timeout_ms == ms


@pytest.mark.parametrize("ct", ["application/proto", "application/connect+proto"])
def test_wrong_connect_protocol_version_is_invalid_argument(ct: str) -> None:
    method = UNARY if "+" not in ct else BIDI
    call = _call(method, ct, {"connect-protocol-version": "2"})
    assert call.request_error is not None
    assert call.request_error.code is Code.INVALID_ARGUMENT


# -- bodies --------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "method", "ct", "_e", "_t"), SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize(
    ("codec", "garbage"),
    [
        ("proto", b"\xff\xff\xff"),
        ("json", b"{not json"),
        ("json", b'{"text": 5}'),
        ("json", b"\xff"),
    ],
)
def test_malformed_message_is_invalid_argument(
    shape: str, method: Any, ct: str, _e: str, _t: str, codec: str, garbage: bytes
) -> None:
    ct = ct.replace("proto", codec) if "proto" in ct else ct + "+" + codec
    call = _call(method, ct)
    assert call.request_error is None
    assert call.codec.name() == codec
    error = memory.error_of(lambda: memory.read_requests(call, _body(shape, garbage)))
    assert error.code is Code.INVALID_ARGUMENT


@pytest.mark.parametrize(("shape", "method", "ct", "_e", "_t"), ENVELOPED, ids=SHAPE_IDS[1:])
def test_truncated_envelope_is_invalid_argument(
    shape: str, method: Any, ct: str, _e: str, _t: str
) -> None:
    call = _call(method, ct)
    body = encode_envelope(0, EchoRequest(text="abc").SerializeToString())
    error = memory.error_of(lambda: memory.read_requests(call, body[:-1]))
    assert error.code is Code.INVALID_ARGUMENT


def test_connect_end_stream_flag_in_a_request_is_invalid_argument() -> None:
    call = _call(BIDI, "application/connect+proto")
    body = encode_envelope(FLAG_CONNECT_END_STREAM, b"{}")
    assert memory.error_of(lambda: call.feed(body)).code is Code.INVALID_ARGUMENT


@pytest.mark.parametrize(("shape", "method", "ct", "_e", "_t"), ENVELOPED, ids=SHAPE_IDS[1:])
def test_compressed_flag_without_encoding_is_internal(
    shape: str, method: Any, ct: str, _e: str, _t: str
) -> None:
    call = _call(method, ct)
    assert memory.error_of(lambda: call.feed(encode_envelope(FLAG_COMPRESSED, b"x"))).code is (
        Code.INTERNAL
    )


@pytest.mark.parametrize(
    ("shape", "code"),
    [
        ("connect-unary", Code.INVALID_ARGUMENT),
        ("connect-stream", Code.INVALID_ARGUMENT),
        ("grpc", Code.INTERNAL),
        ("grpc-web", Code.INTERNAL),
    ],
)
def test_corrupt_compressed_body(shape: str, code: Code) -> None:
    _, method, ct, encoding, _ = next(s for s in SHAPES if s[0] == shape)
    call = _call(method, ct, {encoding: "gzip"})
    body = _body(shape, b"definitely not gzip", FLAG_COMPRESSED)
    assert memory.error_of(lambda: memory.read_requests(call, body)).code is code


# -- limits --------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "method", "ct", "_e", "_t"), SHAPES, ids=SHAPE_IDS)
def test_message_over_read_max_bytes_is_resource_exhausted(
    shape: str, method: Any, ct: str, _e: str, _t: str
) -> None:
    call = _call(method, ct, read_max_bytes=100)
    body = _body(shape, EchoRequest(payload=b"x" * 200).SerializeToString())
    error = memory.error_of(lambda: memory.read_requests(call, body, memory.byte_by_byte))
    assert error.code is Code.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(("shape", "method", "ct", "_e", "_t"), SHAPES, ids=SHAPE_IDS)
def test_message_at_read_max_bytes_is_accepted(
    shape: str, method: Any, ct: str, _e: str, _t: str
) -> None:
    message = EchoRequest(payload=b"x" * 200)
    size = len(message.SerializeToString())
    call = _call(method, ct, read_max_bytes=size)
    assert memory.read_requests(call, _body(shape, message.SerializeToString())) == [message]


@pytest.mark.parametrize(("shape", "method", "ct", "_e", "_t"), ENVELOPED, ids=SHAPE_IDS[1:])
def test_declared_envelope_length_over_limit_is_rejected_from_the_header(
    shape: str, method: Any, ct: str, _e: str, _t: str
) -> None:
    call = _call(method, ct, read_max_bytes=1 << 20)
    header = b"\x00" + struct.pack(">I", 0x7FFFFFFF)
    error = memory.error_of(lambda: call.feed(header))
    assert error.code is Code.RESOURCE_EXHAUSTED
    assert str(0x7FFFFFFF) in error.message


def test_connect_unary_body_over_limit_fails_while_reading() -> None:
    call = _call(UNARY, "application/proto", read_max_bytes=1000)
    call.feed(b"x" * 1000)
    assert memory.error_of(lambda: call.feed(b"x")).code is Code.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(("shape", "method", "ct", "encoding", "_t"), SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("algorithm", ["gzip", "br", "zstd"])
def test_compressed_bomb_is_resource_exhausted(
    shape: str, method: Any, ct: str, encoding: str, _t: str, algorithm: str
) -> None:
    c = memory.compression(algorithm)
    assert c is not None
    bomb = c.compress(EchoRequest(payload=b"\0" * (4 << 20)).SerializeToString())
    assert len(bomb) < 64 << 10
    call = _call(method, ct, {encoding: algorithm}, read_max_bytes=64 << 10)
    error = memory.error_of(lambda: memory.read_requests(call, _body(shape, bomb, FLAG_COMPRESSED)))
    assert error.code is Code.RESOURCE_EXHAUSTED


@pytest.mark.parametrize("protocol", list(ProtocolType), ids=lambda p: p.name.lower())
@pytest.mark.parametrize("compression", ["identity", "gzip"])
def test_client_read_max_bytes_is_resource_exhausted(
    protocol: ProtocolType, compression: str
) -> None:
    for method in (UNARY, BIDI):
        _, _, got = memory.round_trip(
            protocol,
            method,
            [EchoRequest()],
            [EchoResponse(payload=b"\0" * 5000)],
            client_options={"read_max_bytes": 1000, "accept": (compression,)},
        )
        assert got.error is not None
        assert got.error.code is Code.RESOURCE_EXHAUSTED


# -- routing -------------------------------------------------------------------


def _select(
    method: MethodInfo[Any, Any] | None,
    http_method: str = "POST",
    content_type: str | None = "application/proto",
    query: str = "",
    http_version: str = "2",
    trailers: bool = True,
) -> p.ServerCall:
    return select_call(
        None if method is None else memory.route(method),
        http_method=http_method,
        content_type=content_type,
        query=query,
        headers=Headers(),
        config=memory.server_config(),
        http_version=http_version,
        trailers=trailers,
    )


def _protocol_error(fn: Any) -> p.ProtocolError:
    with pytest.raises(p.ProtocolError) as info:
        fn()
    return info.value


def test_unknown_path_is_404() -> None:
    assert _protocol_error(lambda: _select(None)).status == 404


@pytest.mark.parametrize(("method", "allow"), [(UNARY, b"POST"), (ECHO_GET, b"GET, POST")])
@pytest.mark.parametrize("verb", ["PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405_with_allow(method: Any, allow: bytes, verb: str) -> None:
    error = _protocol_error(lambda: _select(method, verb))
    assert error.status == 405
    assert (b"allow", allow) in error.headers


@pytest.mark.parametrize("method", [UNARY, BIDI, CLIENT_STREAM])
def test_get_without_no_side_effects_is_405(method: Any) -> None:
    error = _protocol_error(lambda: _select(method, "GET", None, "encoding=proto&message="))
    assert error.status == 405
    assert (b"allow", b"POST") in error.headers


@pytest.mark.parametrize("query", ["encoding=xml&message=", "message=", ""])
def test_get_with_unknown_encoding_is_415(query: str) -> None:
    error = _protocol_error(lambda: _select(ECHO_GET, "GET", None, query))
    assert error.status == 415
    assert any(k == b"accept-post" for k, _ in error.headers)


@pytest.mark.parametrize(
    ("method", "ct"),
    [
        (UNARY, "application/xml"),
        (UNARY, None),
        (UNARY, "application/connect+proto"),  # streaming content type on a unary method
        (BIDI, "application/proto"),  # unary content type on a streaming method
        (UNARY, "application/grpc+xml"),
        (UNARY, "application/connect+xml"),
        (UNARY, "text/plain"),
    ],
)
def test_unsupported_content_type_is_415_with_accept_post(method: Any, ct: str | None) -> None:
    error = _protocol_error(lambda: _select(method, content_type=ct))
    assert error.status == 415
    accept_post = dict(error.headers)[b"accept-post"].decode()
    for expected in (
        "application/proto",
        "application/json",
        "application/connect+proto",
        "application/connect+json",
        "application/grpc+proto",
        "application/grpc-web+json",
    ):
        assert expected in accept_post


@pytest.mark.parametrize(
    ("http_version", "trailers"), [("1.1", False), ("1.1", True), ("2", False)]
)
def test_grpc_without_http2_and_trailers_is_refused_not_hung(
    http_version: str, trailers: bool
) -> None:
    error = _protocol_error(
        lambda: _select(
            UNARY, content_type="application/grpc", http_version=http_version, trailers=trailers
        )
    )
    assert error.status == 505
    assert b"HTTP/2" in error.body


def test_grpc_web_is_fine_on_http1() -> None:
    call = _select(UNARY, content_type="application/grpc-web", http_version="1.1", trailers=False)
    assert call.request_error is None


# -- the client reading broken Connect responses -------------------------------


def _unary_client(**options: Any) -> p.ClientCall:
    return memory.client_call(ProtocolType.CONNECT, UNARY, **options)


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (404, Code.UNIMPLEMENTED),
        (502, Code.UNAVAILABLE),
        (401, Code.UNAUTHENTICATED),
        (500, Code.UNKNOWN),
    ],
)
def test_connect_non_json_error_body_uses_the_http_status(status: int, code: Code) -> None:
    call = _unary_client()
    call.on_response_start(status, [(b"content-type", b"text/html")])
    call.feed(b"<html>oops</html>")
    error = memory.error_of(lambda: call.finish(None))
    assert error.code is code


def test_connect_error_json_without_code_uses_the_http_status() -> None:
    call = _unary_client()
    call.on_response_start(429, [(b"content-type", b"application/json")])
    call.feed(json.dumps({"message": "slow down"}).encode())
    error = memory.error_of(lambda: call.finish(None))
    assert (error.code, error.message) == (Code.UNAVAILABLE, "slow down")


def test_connect_error_headers_are_case_insensitive() -> None:
    call = _unary_client()
    call.on_response_start(400, [(b"Content-Type", b"application/json"), (b"Trailer-X-T", b"1")])
    call.feed(b'{"code":"out_of_range"}')
    error = memory.error_of(lambda: call.finish(None))
    assert error.code is Code.OUT_OF_RANGE
    assert call.response_trailers["x-t"] == "1"


@pytest.mark.parametrize(
    ("content_type", "code"),
    [(b"application/json", Code.INTERNAL), (b"text/html", Code.UNKNOWN)],
)
def test_connect_unary_wrong_content_type(content_type: bytes, code: Code) -> None:
    call = _unary_client()
    error = memory.error_of(lambda: call.on_response_start(200, [(b"content-type", content_type)]))
    assert error.code is code


def test_connect_unary_malformed_response_is_internal() -> None:
    call = _unary_client()
    call.on_response_start(200, [(b"content-type", b"application/proto")])
    call.feed(b"\xff\xff")
    assert memory.error_of(lambda: call.finish(None)).code is Code.INTERNAL


def test_connect_unary_unrequested_compression_is_internal() -> None:
    call = _unary_client(accept=("gzip",))
    error = memory.error_of(
        lambda: call.on_response_start(
            200, [(b"content-type", b"application/proto"), (b"content-encoding", b"snappy")]
        )
    )
    assert error.code is Code.INTERNAL


def test_connect_stream_non_200_uses_the_http_status() -> None:
    call = memory.client_call(ProtocolType.CONNECT, BIDI)
    call.on_response_start(503, [(b"content-type", b"text/plain")])
    call.feed(b"busy")
    assert memory.error_of(lambda: call.finish(None)).code is Code.UNAVAILABLE


def test_connect_stream_wrong_content_type() -> None:
    call = memory.client_call(ProtocolType.CONNECT, BIDI, codec="json")
    error = memory.error_of(
        lambda: call.on_response_start(200, [(b"content-type", b"application/connect+proto")])
    )
    assert error.code is Code.INTERNAL
