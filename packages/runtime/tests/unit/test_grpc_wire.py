"""gRPC and gRPC-Web wire formats: grpc-timeout, grpc-message, grpc-status-details-bin,
gRPC-Web trailer frames, content types and the client's reading of HTTP-level failures."""

from __future__ import annotations

import base64

import pytest
from _support import memory
from _support.service import EchoRequest, EchoResponse
from connectanyio.testing.v1.testing_connect import EchoServiceMethods
from google.protobuf import wrappers_pb2
from google.rpc import status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from connect_anyio import Code, ConnectError, Headers, ProtocolType
from connect_anyio import _protocol_grpc as grpc
from connect_anyio._envelope import FLAG_COMPRESSED, FLAG_GRPC_WEB_TRAILERS, encode_envelope

SETTINGS = settings(deadline=None, database=None, derandomize=True, max_examples=300)
ECHO = EchoServiceMethods.Echo
GRPC_CT = [(b"content-type", b"application/grpc+proto")]
WEB_CT = [(b"content-type", b"application/grpc-web+proto")]

# -- grpc-timeout --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("1H", 3_600_000.0),
        ("2M", 120_000.0),
        ("3S", 3000.0),
        ("4m", 4.0),
        ("5000u", 5.0),
        ("6000000n", 6.0),
        ("99999999S", 99_999_999_000.0),
        ("0m", 0.0),
        (" 7m ", 7.0),
    ],
)
def test_parse_timeout_every_unit(value: str, ms: float) -> None:
    assert grpc.parse_timeout(value) == pytest.approx(ms)


def test_parse_timeout_absent() -> None:
    assert grpc.parse_timeout(None) is None


@pytest.mark.parametrize(
    "value",
    ["", "S", "1", "1s", "1h", "1x", "-1S", "1.5S", "123456789S", "1 S", "+1S", "1SS", "0x1S"],
)
def test_parse_timeout_rejects_invalid(value: str) -> None:
    error = memory.error_of(lambda: grpc.parse_timeout(value))
    assert error.code is Code.INVALID_ARGUMENT
    assert "grpc-timeout" in error.message


@pytest.mark.parametrize(
    ("ms", "wire"),
    [
        (1.0, "1000000n"),
        (0.5, "500000n"),
        (99.0, "99000000n"),
        (100.0, "100000u"),
        (5000.0, "5000000u"),
        (100_000.0, "100000m"),
        (100_000_000.0, "100000S"),
        (100_000_000_000.0, "1666666M"),
    ],
)
def test_format_timeout_picks_the_most_precise_unit(ms: float, wire: str) -> None:
    assert grpc.format_timeout(ms) == wire


@pytest.mark.parametrize("ms", [0.0, -5.0, 1e-9])
def test_format_timeout_never_sends_zero_or_negative(ms: float) -> None:
    wire = grpc.format_timeout(ms)
    assert wire == "1n"
    assert grpc.parse_timeout(wire) == pytest.approx(1e-6)


def test_format_timeout_caps_at_the_largest_value() -> None:
    assert grpc.format_timeout(1e30) == "99999999H"


@SETTINGS
@given(ms=st.floats(min_value=1e-6, max_value=3.6e14, allow_nan=False))
def test_timeout_round_trip(ms: float) -> None:
    wire = grpc.format_timeout(ms)
    digits = wire[:-1]
    assert digits.isdigit()
    assert 1 <= len(digits) <= 8
    back = grpc.parse_timeout(wire)
    assert back is not None
    # Never longer than asked (beyond float noise), and within the unit's precision.
    assert back <= ms * (1 + 1e-9) + 1e-9
    assert ms - back <= max(ms * 1e-6, 1e-5) + grpc._UNITS[wire[-1]]


# -- grpc-message --------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        ("plain text", b"plain text"),
        ("100%", b"100%25"),
        ("caf\u00e9", b"caf%C3%A9"),
        ("line\nbreak\ttab", b"line%0Abreak%09tab"),
        ("~ !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}", b"~ !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}"),
    ],
)
def test_grpc_message_percent_encoding(message: str, wire: bytes) -> None:
    assert grpc.encode_message_header(message) == wire
    assert grpc.decode_message_header(wire.decode("ascii")) == message


@SETTINGS
@given(message=st.text())
def test_grpc_message_round_trip(message: str) -> None:
    wire = grpc.encode_message_header(message)
    assert all(0x20 <= b <= 0x7E for b in wire)
    assert grpc.decode_message_header(wire.decode("ascii")) == message


@SETTINGS
@given(value=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF)))
def test_grpc_message_decoding_never_raises(value: str) -> None:
    assert isinstance(grpc.decode_message_header(value), str)


@pytest.mark.parametrize(
    ("wire", "decoded"),
    [("%", "%"), ("%zz", "%zz"), ("50%", "50%"), ("%FF", "\ufffd"), ("a%C3", "a\ufffd")],
)
def test_grpc_message_invalid_encoding_is_kept_not_raised(wire: str, decoded: str) -> None:
    assert grpc.decode_message_header(wire) == decoded


# -- status trailers and grpc-status-details-bin -------------------------------


def _status(raw: list[tuple[bytes, bytes]]) -> ConnectError | None:
    trailers = Headers._from_wire(raw)
    return grpc.error_from_status(trailers, trailers)


def test_ok_status() -> None:
    raw = grpc.status_trailers(None, Headers({"x-t": "1"}))
    assert raw == [(b"grpc-status", b"0"), (b"x-t", b"1")]
    assert _status(raw) is None


def test_status_details_bin_round_trip() -> None:
    error = ConnectError(
        Code.FAILED_PRECONDITION,
        "not now: 100%",
        [wrappers_pb2.StringValue(value="a"), wrappers_pb2.Int32Value(value=7)],
    )
    raw = grpc.status_trailers(error, None)
    names = [k for k, _ in raw]
    assert names == [b"grpc-status", b"grpc-message", b"grpc-status-details-bin"]
    assert dict(raw)[b"grpc-status"] == b"9"
    details_bin = dict(raw)[b"grpc-status-details-bin"]
    assert not details_bin.endswith(b"=")
    status = status_pb2.Status.FromString(
        base64.b64decode(details_bin + b"=" * (-len(details_bin) % 4))
    )
    assert (status.code, status.message, len(status.details)) == (9, "not now: 100%", 2)
    back = _status(raw)
    assert back is not None
    assert (back.code, back.message) == (Code.FAILED_PRECONDITION, "not now: 100%")
    assert [d.value for d in back.unpack_details(wrappers_pb2.StringValue)] == ["a"]
    assert [d.value for d in back.unpack_details(wrappers_pb2.Int32Value)] == [7]


def test_status_without_message_or_details() -> None:
    raw = grpc.status_trailers(ConnectError(Code.ABORTED), None)
    assert raw == [(b"grpc-status", b"10")]
    back = _status(raw)
    assert back is not None
    assert (back.code, back.message, list(back.details)) == (Code.ABORTED, "", [])


def test_padded_details_bin_is_accepted() -> None:
    status = status_pb2.Status(code=5, message="m")
    status.details.add().Pack(wrappers_pb2.StringValue(value="p"))
    padded = base64.b64encode(status.SerializeToString())
    back = _status([(b"grpc-status", b"5"), (b"grpc-status-details-bin", padded)])
    assert back is not None
    assert back.code is Code.NOT_FOUND
    assert [d.value for d in back.unpack_details(wrappers_pb2.StringValue)] == ["p"]


@pytest.mark.parametrize("garbage", [b"!!!", b"AAAA", b"/w"])
def test_invalid_details_bin_does_not_hide_the_status(garbage: bytes) -> None:
    back = _status(
        [(b"grpc-status", b"7"), (b"grpc-message", b"no"), (b"grpc-status-details-bin", garbage)]
    )
    assert back is not None
    assert (back.code, back.message) == (Code.PERMISSION_DENIED, "no")


def test_error_metadata_and_trailers_go_into_the_trailers() -> None:
    error = ConnectError(Code.INTERNAL, "x", metadata=Headers({"x-e": "1", "grpc-status": "0"}))
    raw = grpc.status_trailers(error, Headers({"x-t": "2"}))
    assert (b"x-e", b"1") in raw
    assert (b"x-t", b"2") in raw
    assert [v for k, v in raw if k == b"grpc-status"] == [b"13"]


@pytest.mark.parametrize("status", [b"", b"abc", b"1.5"])
def test_invalid_grpc_status_is_internal(status: bytes) -> None:
    error = memory.error_of(lambda: _status([(b"grpc-status", status)]))
    assert error.code is Code.INTERNAL


def test_missing_grpc_status_is_internal() -> None:
    assert memory.error_of(lambda: _status([(b"x", b"y")])).code is Code.INTERNAL


@pytest.mark.parametrize(("number", "code"), [(16, Code.UNAUTHENTICATED), (99, Code.UNKNOWN)])
def test_status_numbers(number: int, code: Code) -> None:
    back = _status([(b"grpc-status", str(number).encode())])
    assert back is not None
    assert back.code is code


# -- gRPC-Web trailer frames ---------------------------------------------------


def test_web_trailer_block_format() -> None:
    block = grpc._web_trailer_block([(b"grpc-status", b"0"), (b"X-Custom", b"v")])
    assert block == b"grpc-status: 0\r\nx-custom: v\r\n"


@pytest.mark.parametrize(
    "block",
    [
        b"grpc-status: 3\r\ngrpc-message: bad\r\nx-t: 1\r\n",
        b"Grpc-Status:3\r\nGRPC-MESSAGE:   bad  \r\nX-T: 1",
        b"\r\ngrpc-status: 3\r\n\r\ngrpc-message: bad\r\nx-t: 1\r\n\r\n",
    ],
)
def test_web_client_reads_the_trailer_frame(block: bytes) -> None:
    call = memory.client_call(ProtocolType.GRPC_WEB, ECHO)
    call.on_response_start(200, list(WEB_CT))
    frames = encode_envelope(0, EchoResponse(text="r").SerializeToString())
    frames += encode_envelope(FLAG_GRPC_WEB_TRAILERS, block)
    assert call.feed(frames) == [EchoResponse(text="r")]
    error = memory.error_of(lambda: call.finish(None))
    assert (error.code, error.message) == (Code.INVALID_ARGUMENT, "bad")
    assert call.response_trailers["x-t"] == "1"


def test_web_trailer_frame_line_without_colon_is_internal() -> None:
    call = memory.client_call(ProtocolType.GRPC_WEB, ECHO)
    call.on_response_start(200, list(WEB_CT))
    frame = encode_envelope(FLAG_GRPC_WEB_TRAILERS, b"grpc-status 0\r\n")
    assert memory.error_of(lambda: call.feed(frame)).code is Code.INTERNAL


def test_web_data_after_trailer_frame_is_internal() -> None:
    call = memory.client_call(ProtocolType.GRPC_WEB, ECHO)
    call.on_response_start(200, list(WEB_CT))
    frames = encode_envelope(FLAG_GRPC_WEB_TRAILERS, b"grpc-status: 0\r\n") + encode_envelope(
        0, b""
    )
    assert memory.error_of(lambda: call.feed(frames)).code is Code.INTERNAL


def test_web_response_without_trailer_frame_is_internal() -> None:
    call = memory.client_call(ProtocolType.GRPC_WEB, ECHO)
    call.on_response_start(200, list(WEB_CT))
    call.feed(encode_envelope(0, b""))
    assert memory.error_of(lambda: call.finish(None)).code is Code.INTERNAL


def test_web_compressed_trailer_frame() -> None:
    call = memory.client_call(ProtocolType.GRPC_WEB, ECHO, accept=("gzip",))
    call.on_response_start(200, [*WEB_CT, (b"grpc-encoding", b"gzip")])
    gz = memory.compression("gzip")
    assert gz is not None
    frame = encode_envelope(
        FLAG_GRPC_WEB_TRAILERS | FLAG_COMPRESSED, gz.compress(b"grpc-status: 0\r\nx-t: z\r\n")
    )
    call.feed(frame)
    assert call.finish(None) == []
    assert call.response_trailers["x-t"] == "z"


# -- content types -------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("application/grpc", (False, "proto")),
        ("application/grpc+proto", (False, "proto")),
        ("application/grpc+json", (False, "json")),
        ("application/grpc+json; charset=utf-8", (False, "json")),
        ("APPLICATION/GRPC", (False, "proto")),
        ("application/grpc-web", (True, "proto")),
        ("application/grpc-web+proto", (True, "proto")),
        ("application/grpc-web+json", (True, "json")),
        ("application/grpc-web-text", None),
        ("application/grpcx", None),
        ("application/proto", None),
        ("application/connect+proto", None),
        ("", None),
    ],
)
def test_grpc_classify(content_type: str, kind: tuple[bool, str] | None) -> None:
    assert grpc.classify(content_type) == kind


# -- the client reading HTTP-level failures (gRPC's HTTP-to-gRPC mapping) ------


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, Code.INTERNAL),
        (401, Code.UNAUTHENTICATED),
        (403, Code.PERMISSION_DENIED),
        (404, Code.UNIMPLEMENTED),
        (429, Code.UNAVAILABLE),
        (502, Code.UNAVAILABLE),
        (503, Code.UNAVAILABLE),
        (504, Code.UNAVAILABLE),
        (500, Code.UNKNOWN),
    ],
)
@pytest.mark.parametrize("protocol", [ProtocolType.GRPC, ProtocolType.GRPC_WEB])
def test_non_200_maps_to_code(protocol: ProtocolType, status: int, code: Code) -> None:
    call = memory.client_call(protocol, ECHO)
    error = memory.error_of(lambda: call.on_response_start(status, [(b"x-h", b"1")]))
    assert error.code is code
    assert error.metadata["x-h"] == "1"


@pytest.mark.parametrize("protocol", [ProtocolType.GRPC, ProtocolType.GRPC_WEB])
@pytest.mark.parametrize("content_type", [b"text/html", b"application/json", b""])
def test_wrong_content_type_is_unknown(protocol: ProtocolType, content_type: bytes) -> None:
    call = memory.client_call(protocol, ECHO)
    error = memory.error_of(lambda: call.on_response_start(200, [(b"content-type", content_type)]))
    assert error.code is Code.UNKNOWN


def test_grpc_without_trailers_is_internal() -> None:
    call = memory.client_call(ProtocolType.GRPC, ECHO)
    call.on_response_start(200, list(GRPC_CT))
    call.feed(encode_envelope(0, EchoResponse().SerializeToString()))
    assert memory.error_of(lambda: call.finish(None)).code is Code.INTERNAL
    call = memory.client_call(ProtocolType.GRPC, ECHO)
    call.on_response_start(200, list(GRPC_CT))
    assert memory.error_of(lambda: call.finish([(b"x-no-status", b"1")])).code is Code.INTERNAL


def test_response_compression_that_was_not_requested_is_internal() -> None:
    call = memory.client_call(ProtocolType.GRPC, ECHO, accept=("gzip",))
    error = memory.error_of(
        lambda: call.on_response_start(200, [*GRPC_CT, (b"grpc-encoding", b"snappy")])
    )
    assert error.code is Code.INTERNAL


def test_compressed_flag_without_encoding_is_internal() -> None:
    call = memory.client_call(ProtocolType.GRPC, ECHO)
    call.on_response_start(200, list(GRPC_CT))
    frame = encode_envelope(FLAG_COMPRESSED, b"junk")
    assert memory.error_of(lambda: call.feed(frame)).code is Code.INTERNAL


def test_truncated_response_envelope_is_internal() -> None:
    call = memory.client_call(ProtocolType.GRPC, ECHO)
    call.on_response_start(200, list(GRPC_CT))
    call.feed(encode_envelope(0, b"abc")[:-1])
    assert memory.error_of(lambda: call.finish([(b"grpc-status", b"0")])).code is Code.INTERNAL


def test_malformed_response_message_is_internal() -> None:
    call = memory.client_call(ProtocolType.GRPC, ECHO)
    call.on_response_start(200, list(GRPC_CT))
    assert memory.error_of(lambda: call.feed(encode_envelope(0, b"\xff\xff"))).code is (
        Code.INTERNAL
    )


def test_client_sends_the_grpc_request_headers() -> None:
    call = memory.client_call(
        ProtocolType.GRPC, ECHO, send="gzip", accept=("gzip", "br"), timeout_ms=1500
    )
    request = call.unary_request(EchoRequest(), False)
    headers = Headers._from_wire(request.headers)
    assert headers["content-type"] == "application/grpc+proto"
    assert headers["te"] == "trailers"
    assert headers["grpc-timeout"] == "1500000u"
    assert headers["grpc-encoding"] == "gzip"
    assert headers["grpc-accept-encoding"] == "gzip,br"
    assert request.method == "POST"
    web = memory.client_call(ProtocolType.GRPC_WEB, ECHO, codec="json")
    headers = Headers._from_wire(web.unary_request(EchoRequest(), False).headers)
    assert headers["content-type"] == "application/grpc-web+json"
    assert "te" not in headers
    assert headers["x-grpc-web"] == "1"
