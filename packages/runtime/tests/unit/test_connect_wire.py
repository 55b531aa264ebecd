"""Connect wire formats: error JSON, end-stream JSON, Connect-Timeout-Ms, GET queries,
content types."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs

import pytest
from _support import memory
from _support.service import EchoRequest
from connectanyio.testing.v1.testing_connect import EchoServiceMethods
from google.protobuf import any_pb2, wrappers_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from connect_anyio import Code, ConnectError, Headers, ProtocolType
from connect_anyio import _protocol as p
from connect_anyio import _protocol_connect as connect
from connect_anyio._envelope import FLAG_COMPRESSED, FLAG_CONNECT_END_STREAM, encode_envelope

SETTINGS = settings(deadline=None, database=None, derandomize=True, max_examples=100)
ECHO = EchoServiceMethods.Echo
SERVER_STREAM = EchoServiceMethods.ServerStream


def _detail(text: str) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(wrappers_pb2.StringValue(value=text))
    return packed


# -- error JSON ----------------------------------------------------------------


def test_error_json_shape() -> None:
    error = ConnectError(Code.NOT_FOUND, "no such hat", [wrappers_pb2.StringValue(value="x")])
    body = json.loads(connect.error_to_json(error))
    value = wrappers_pb2.StringValue(value="x").SerializeToString()
    assert body == {
        "code": "not_found",
        "message": "no such hat",
        "details": [
            {
                "type": "google.protobuf.StringValue",
                "value": base64.b64encode(value).decode().rstrip("="),
            }
        ],
    }


def test_error_json_omits_empty_message_and_details() -> None:
    assert json.loads(connect.error_to_json(ConnectError(Code.INTERNAL))) == {"code": "internal"}


@SETTINGS
@given(
    code=st.sampled_from(list(Code)),
    message=st.text(max_size=40),
    details=st.lists(st.text(max_size=20), max_size=3),
)
def test_error_json_round_trip(code: Code, message: str, details: list[str]) -> None:
    error = ConnectError(code, message, [wrappers_pb2.StringValue(value=d) for d in details])
    back = connect.error_from_dict(json.loads(connect.error_to_json(error)), fallback=Code.UNKNOWN)
    assert back is not None
    assert back.code is code
    assert back.message == message
    assert [d.value for d in back.unpack_details(wrappers_pb2.StringValue)] == details
    assert [(d.type_url, d.value) for d in back.details] == [
        (d.type_url, d.value) for d in error.details
    ]


@pytest.mark.parametrize("pad", [True, False])
@pytest.mark.parametrize("prefix", ["", "type.googleapis.com/"])
def test_error_details_accept_padded_and_unpadded_base64(pad: bool, prefix: str) -> None:
    value = wrappers_pb2.StringValue(value="ab").SerializeToString()  # 4 bytes: needs padding
    encoded = base64.b64encode(value).decode()
    assert encoded.endswith("=")
    data = {
        "code": "aborted",
        "details": [
            {
                "type": prefix + "google.protobuf.StringValue",
                "value": encoded if pad else encoded.rstrip("="),
            }
        ],
    }
    error = connect.error_from_dict(data, fallback=Code.UNKNOWN)
    assert error is not None
    assert error.code is Code.ABORTED
    assert error.details[0].type_url == "type.googleapis.com/google.protobuf.StringValue"
    assert [d.value for d in error.unpack_details(wrappers_pb2.StringValue)] == ["ab"]


@pytest.mark.parametrize("data", [None, [], "internal", 13])
def test_error_json_that_is_not_an_object_is_not_an_error(data: object) -> None:
    assert connect.error_from_dict(data, fallback=Code.UNKNOWN) is None


@pytest.mark.parametrize(
    "data",
    [
        {"message": "m"},
        {"code": "", "message": "m"},
        {"code": None, "message": "m"},
        {"code": 13, "message": "m"},
        {"code": "teapot", "message": "m"},
    ],
)
def test_missing_or_unknown_code_is_the_fallback(data: object) -> None:
    error = connect.error_from_dict(data, fallback=Code.UNAVAILABLE)
    assert error is not None
    assert (error.code, error.message) == (Code.UNAVAILABLE, "m")


def test_malformed_details_are_skipped_not_fatal() -> None:
    good = _detail("ok")
    data: dict[str, Any] = {
        "code": "internal",
        "details": [
            "not an object",
            {"type": 1, "value": "AA"},
            {"type": "x.Y"},
            {"type": "x.Y", "value": "a"},  # not base64
            {"type": "google.protobuf.StringValue", "value": base64.b64encode(good.value).decode()},
        ],
    }
    error = connect.error_from_dict(data, fallback=Code.UNKNOWN)
    assert error is not None
    assert [d.value for d in error.unpack_details(wrappers_pb2.StringValue)] == ["ok"]


def test_error_json_keeps_unicode_message() -> None:
    error = ConnectError(Code.INTERNAL, "caf\u00e9 \u2603 \U0001f600")
    back = connect.error_from_dict(json.loads(connect.error_to_json(error)), fallback=Code.UNKNOWN)
    assert back is not None
    assert back.message == error.message


# -- end-stream JSON -----------------------------------------------------------


def _stream_client(**options: Any) -> p.ClientCall:
    call = memory.client_call(ProtocolType.CONNECT, SERVER_STREAM, **options)
    call.on_response_start(200, [(b"content-type", b"application/connect+proto")])
    return call


def test_end_stream_without_error_carries_trailers() -> None:
    trailers = Headers([("x-t", "1"), ("x-t", "2"), ("x-u-bin", "AQ")])
    body = json.loads(connect.end_stream_json(None, trailers))
    assert body == {"metadata": {"x-t": ["1", "2"], "x-u-bin": ["AQ"]}}
    call = _stream_client()
    assert call.feed(encode_envelope(FLAG_CONNECT_END_STREAM, json.dumps(body).encode())) == []
    assert call.finish(None) == []
    assert call.response_trailers.getall("x-t") == ["1", "2"]
    assert call.response_trailers.getall_binary("x-u-bin") == [b"\x01"]


def test_end_stream_empty_is_an_empty_object() -> None:
    assert connect.end_stream_json(None, None) == b"{}"


def test_end_stream_error_round_trip_with_trailers() -> None:
    error = ConnectError(
        Code.RESOURCE_EXHAUSTED,
        "quota",
        [wrappers_pb2.StringValue(value="d1")],
        metadata=Headers({"x-from-error": "e"}),
    )
    payload = connect.end_stream_json(error, Headers({"x-t": "t"}))
    call = _stream_client()
    call.feed(encode_envelope(FLAG_CONNECT_END_STREAM, payload))
    with pytest.raises(ConnectError) as info:
        call.finish(None)
    got = info.value
    assert (got.code, got.message) == (Code.RESOURCE_EXHAUSTED, "quota")
    assert [d.value for d in got.unpack_details(wrappers_pb2.StringValue)] == ["d1"]
    assert got.metadata["x-t"] == "t"
    assert got.metadata["x-from-error"] == "e"
    assert call.response_trailers["x-t"] == "t"


def test_end_stream_reserved_trailers_are_not_sent() -> None:
    body = json.loads(connect.end_stream_json(None, Headers({"content-type": "x", "x-ok": "1"})))
    assert body == {"metadata": {"x-ok": ["1"]}}


def test_compressed_end_stream_is_decompressed() -> None:
    call = memory.client_call(ProtocolType.CONNECT, SERVER_STREAM, accept=("gzip",))
    call.on_response_start(
        200,
        [(b"content-type", b"application/connect+proto"), (b"connect-content-encoding", b"gzip")],
    )
    gz = memory.compression("gzip")
    assert gz is not None
    payload = connect.end_stream_json(ConnectError(Code.ABORTED, "a"), None)
    call.feed(encode_envelope(FLAG_CONNECT_END_STREAM | FLAG_COMPRESSED, gz.compress(payload)))
    with pytest.raises(ConnectError) as info:
        call.finish(None)
    assert info.value.code is Code.ABORTED


def test_end_stream_error_without_code_is_unknown() -> None:
    call = _stream_client()
    call.feed(encode_envelope(FLAG_CONNECT_END_STREAM, b'{"error": {"message": "m"}}'))
    error = memory.error_of(lambda: call.finish(None))
    assert (error.code, error.message) == (Code.UNKNOWN, "m")


def test_end_stream_null_error_is_no_error() -> None:
    call = _stream_client()
    call.feed(encode_envelope(FLAG_CONNECT_END_STREAM, b'{"error": null}'))
    assert call.finish(None) == []


@pytest.mark.parametrize("payload", [b"not json", b"[]", b'{"error": 1}', b'{"error": "x"}'])
def test_invalid_end_stream_is_internal(payload: bytes) -> None:
    call = _stream_client()
    error = memory.error_of(
        lambda: (
            call.feed(encode_envelope(FLAG_CONNECT_END_STREAM, payload)),
            call.finish(None),
        )
    )
    assert error.code is Code.INTERNAL


def test_missing_end_stream_is_internal() -> None:
    call = _stream_client()
    call.feed(encode_envelope(0, b""))
    error = memory.error_of(lambda: call.finish(None))
    assert error.code is Code.INTERNAL
    assert "end-stream" in error.message


def test_data_after_end_stream_is_internal() -> None:
    call = _stream_client()
    data = encode_envelope(FLAG_CONNECT_END_STREAM, b"{}") + encode_envelope(0, b"")
    assert memory.error_of(lambda: call.feed(data)).code is Code.INTERNAL


# -- Connect-Timeout-Ms --------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ms"), [("1", 1.0), ("0", 0.0), ("  250 ", 250.0), ("9999999999", 9999999999.0)]
)
def test_parse_timeout_ms(value: str, ms: float) -> None:
    assert connect.parse_timeout_ms(value) == ms


def test_parse_timeout_ms_absent() -> None:
    assert connect.parse_timeout_ms(None) is None


@pytest.mark.parametrize("value", ["", "-1", "1.5", "1e3", "abc", "12345678901", "+5", "0x10"])
def test_parse_timeout_ms_rejects_invalid(value: str) -> None:
    error = memory.error_of(lambda: connect.parse_timeout_ms(value))
    assert error.code is Code.INVALID_ARGUMENT


@pytest.mark.parametrize(("timeout", "sent"), [(2500.0, b"2500"), (0.2, b"1"), (1234.9, b"1234")])
def test_client_sends_connect_timeout_ms(timeout: float, sent: bytes) -> None:
    call = memory.client_call(ProtocolType.CONNECT, ECHO, timeout_ms=timeout)
    request = call.unary_request(EchoRequest(), False)
    assert (b"connect-timeout-ms", sent) in request.headers
    assert (b"connect-protocol-version", b"1") in request.headers


# -- GET -----------------------------------------------------------------------


def _get(codec: str, send: str = "identity", message: EchoRequest | None = None) -> tuple[str, Any]:
    call = memory.client_call(ProtocolType.CONNECT, ECHO, codec=codec, send=send)
    request = call.unary_request(message or EchoRequest(text="hi \u2603", payload=b"\xff"), True)
    assert request.method == "GET"
    assert request.body is None
    path, _, query = request.path.partition("?")
    assert path == ECHO.procedure
    return query, request


def test_get_query_proto_is_unpadded_url_safe_base64() -> None:
    message = EchoRequest(text="hi", payload=b"\xfb\xff\xfe")
    query, request = _get("proto", message=message)
    params = parse_qs(query)
    assert params["connect"] == ["v1"]
    assert params["encoding"] == ["proto"]
    assert params["base64"] == ["1"]
    assert "compression" not in params
    text = params["message"][0]
    assert "=" not in text
    assert "+" not in text
    assert "/" not in text
    assert base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)) == message.SerializeToString(
        deterministic=True
    )
    assert not any(k == b"content-type" for k, _ in request.headers)


def test_get_query_json_is_percent_encoded_text() -> None:
    query, _ = _get("json", message=EchoRequest(text="a&b=c d"))
    params = parse_qs(query)
    assert "base64" not in params
    assert params["encoding"] == ["json"]
    assert json.loads(params["message"][0]) == {"text": "a&b=c d"}
    assert "&b=c" not in query


def test_get_query_compressed_is_base64_with_compression() -> None:
    message = EchoRequest(text="x" * 2000)
    query, _ = _get("json", send="gzip", message=message)
    params = parse_qs(query)
    assert params["compression"] == ["gzip"]
    assert params["base64"] == ["1"]
    assert len(params["message"][0]) < 200


@pytest.mark.parametrize("codec", ["proto", "json"])
@pytest.mark.parametrize("send", ["identity", "gzip", "br", "zstd"])
def test_get_round_trip(codec: str, send: str) -> None:
    message = EchoRequest(text="get \u2603" * 300, payload=b"\x00\xff" * 10)
    _, request = _get(codec, send, message)
    scall = memory.server_call(request, ECHO)
    assert scall.request_error is None
    assert scall.http_method == "GET"
    assert memory.read_requests(scall, b"") == [message]


@pytest.mark.parametrize("padded", [True, False])
def test_get_server_accepts_padded_and_unpadded_base64(padded: bool) -> None:
    data = EchoRequest(text="ab").SerializeToString()
    text = base64.urlsafe_b64encode(data).decode()
    if not padded:
        text = text.rstrip("=")
    query = f"encoding=proto&base64=1&message={text}&connect=v1"
    scall = memory.server_call(p.ClientRequest("GET", ECHO.procedure + "?" + query, []), ECHO)
    assert memory.read_requests(scall, b"") == [EchoRequest(text="ab")]


def test_get_without_message_is_the_empty_message() -> None:
    scall = memory.server_call(p.ClientRequest("GET", ECHO.procedure + "?encoding=json", []), ECHO)
    assert memory.read_requests(scall, b"") == [EchoRequest()]


@pytest.mark.parametrize(
    "query",
    [
        "connect=v2&encoding=proto&message=",
        "connect=v1&encoding=proto&base64=1&message=!!!!",
        "connect=v1&encoding=proto&base64=1&message=A",
    ],
)
def test_get_bad_query_is_invalid_argument(query: str) -> None:
    scall = memory.server_call(p.ClientRequest("GET", ECHO.procedure + "?" + query, []), ECHO)
    assert scall.request_error is not None
    assert scall.request_error.code is Code.INVALID_ARGUMENT


def test_get_unknown_compression_is_unimplemented() -> None:
    query = "connect=v1&encoding=proto&base64=1&compression=snappy&message=AA"
    scall = memory.server_call(p.ClientRequest("GET", ECHO.procedure + "?" + query, []), ECHO)
    assert scall.request_error is not None
    assert scall.request_error.code is Code.UNIMPLEMENTED
    assert "identity, gzip, br, zstd" in scall.request_error.message


def test_get_malformed_message_is_invalid_argument() -> None:
    query = "connect=v1&encoding=json&message=%7Bnope"
    scall = memory.server_call(p.ClientRequest("GET", ECHO.procedure + "?" + query, []), ECHO)
    assert scall.request_error is None
    assert memory.error_of(lambda: memory.read_requests(scall, b"")).code is Code.INVALID_ARGUMENT


def test_get_codec_name() -> None:
    assert connect.get_codec_name("connect=v1&encoding=json&message=") == "json"
    assert connect.get_codec_name("message=") is None


# -- content types -------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("application/proto", (False, "proto")),
        ("application/json", (False, "json")),
        ("application/json; charset=utf-8", (False, "json")),
        ("Application/JSON", (False, "json")),
        ("application/connect+proto", (True, "proto")),
        ("application/connect+json", (True, "json")),
        ("application/connect+json;charset=utf-8", (True, "json")),
        ("application/grpc", None),
        ("application/grpc+proto", None),
        ("application/grpc-web+json", None),
        ("text/plain", None),
        ("", None),
    ],
)
def test_connect_classify(content_type: str, kind: tuple[bool, str] | None) -> None:
    assert connect.classify(content_type) == kind
