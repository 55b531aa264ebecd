"""Protocol round trips in memory: what a client call sends, a server call reads; what the
server call answers, the client call reads. Every protocol x stream shape x codec x
compression, with messages, headers, trailers and errors (code, message, details)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from _support import memory
from _support.service import EchoRequest, EchoResponse
from connectanyio.testing.v1.testing_connect import EchoServiceMethods
from google.protobuf import wrappers_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from connect_anyio import Code, ConnectError, Headers, MethodInfo, ProtocolType, StreamType

SETTINGS = settings(deadline=None, database=None, derandomize=True, max_examples=40)
METHODS: dict[StreamType, MethodInfo[Any, Any]] = {
    StreamType.UNARY: EchoServiceMethods.EchoPost,
    StreamType.CLIENT_STREAM: EchoServiceMethods.ClientStream,
    StreamType.SERVER_STREAM: EchoServiceMethods.ServerStream,
    StreamType.BIDI_STREAM: EchoServiceMethods.Bidi,
}
PROTOCOLS = list(ProtocolType)
ENCODING_HEADERS = {
    (ProtocolType.CONNECT, False): ("content-encoding", "accept-encoding"),
    (ProtocolType.CONNECT, True): ("connect-content-encoding", "connect-accept-encoding"),
    (ProtocolType.GRPC, False): ("grpc-encoding", "grpc-accept-encoding"),
    (ProtocolType.GRPC, True): ("grpc-encoding", "grpc-accept-encoding"),
    (ProtocolType.GRPC_WEB, False): ("grpc-encoding", "grpc-accept-encoding"),
    (ProtocolType.GRPC_WEB, True): ("grpc-encoding", "grpc-accept-encoding"),
}


def _requests(stream_type: StreamType) -> list[EchoRequest]:
    count = 3 if stream_type.streams_requests else 1
    return [
        EchoRequest(text=f"req {i} \u2603", payload=bytes(range(256)) * 8, tag=str(i))
        for i in range(count)
    ]


def _responses(stream_type: StreamType) -> list[EchoResponse]:
    count = 3 if stream_type.streams_responses else 1
    return [
        EchoResponse(text=f"res {i}", payload=b"\x00\x01" * 600, index=i, headers={"k": "v"})
        for i in range(count)
    ]


def _response_metadata() -> tuple[Headers, Headers]:
    headers = Headers([("x-h", "1"), ("x-h", "2")])
    headers.add_binary("x-h-bin", b"\x00\xff\x10")
    trailers = Headers([("x-t", "t1")])
    trailers.add_binary("x-t-bin", b"\xfe")
    return headers, trailers


def _options(codec: str, compression: str) -> dict[str, Any]:
    accept = () if compression == "identity" else (compression,)
    return {
        "codec": codec,
        "send": compression,
        "accept": accept,
        "headers": Headers({"x-req": "r", "te": "ignored-by-protocol"}),
    }


@pytest.mark.parametrize("compression", list(memory.COMPRESSIONS))
@pytest.mark.parametrize("codec", ["proto", "json"])
@pytest.mark.parametrize("stream_type", list(METHODS), ids=lambda s: s.name.lower())
@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.name.lower())
def test_success_round_trip(
    protocol: ProtocolType, stream_type: StreamType, codec: str, compression: str
) -> None:
    method = METHODS[stream_type]
    requests, responses = _requests(stream_type), _responses(stream_type)
    headers, trailers = _response_metadata()
    options = _options(codec, compression)

    ccall = memory.client_call(protocol, method, **options)
    request = memory.client_request(ccall, requests)
    sent = Headers._from_wire(request.headers)
    scall = memory.server_call(request, method)
    assert scall.request_error is None
    assert scall.codec.name() == codec
    assert memory.read_requests(scall, request.body or b"") == requests
    assert sent["x-req"] == "r"
    assert sent.getall("te") == (["trailers"] if protocol is ProtocolType.GRPC else [])

    streaming = stream_type is not StreamType.UNARY
    encoding, _ = ENCODING_HEADERS[protocol, streaming]
    if compression != "identity":
        assert sent[encoding] == compression

    wire = memory.respond(scall, responses, headers=headers, trailers=trailers)
    assert wire.status == 200
    got = memory.read_response(ccall, wire)
    assert got.error is None
    assert got.messages == responses
    assert ccall.response_headers.getall("x-h") == ["1", "2"]
    assert ccall.response_headers.getall_binary("x-h-bin") == [b"\x00\xff\x10"]
    assert ccall.response_trailers["x-t"] == "t1"
    assert ccall.response_trailers.getall_binary("x-t-bin") == [b"\xfe"]
    response_encoding = ccall.response_headers.get(encoding)
    assert response_encoding == (None if compression == "identity" else compression)


@pytest.mark.parametrize("compression", ["identity", "gzip"])
@pytest.mark.parametrize("codec", ["proto", "json"])
@pytest.mark.parametrize("messages_first", [0, 2])
@pytest.mark.parametrize("stream_type", list(METHODS), ids=lambda s: s.name.lower())
@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.name.lower())
def test_error_round_trip(
    protocol: ProtocolType,
    stream_type: StreamType,
    messages_first: int,
    codec: str,
    compression: str,
) -> None:
    if not stream_type.streams_responses and messages_first:
        messages_first = 0  # a single response is all or nothing
    method = METHODS[stream_type]
    headers, trailers = _response_metadata()
    error = ConnectError(
        Code.FAILED_PRECONDITION,
        "it broke: 100% \u2603\nsecond line",
        [wrappers_pb2.StringValue(value="why"), wrappers_pb2.Int64Value(value=-5)],
    )
    responses = _responses(stream_type)[:messages_first]
    received, _ccall, got = memory.round_trip(
        protocol,
        method,
        _requests(stream_type),
        responses,
        error=error,
        response_headers=headers,
        response_trailers=trailers,
        client_options=_options(codec, compression),
    )
    assert received == _requests(stream_type)
    assert got.messages == responses
    assert got.error is not None
    assert got.error.code is Code.FAILED_PRECONDITION
    assert got.error.message == error.message
    assert [d.value for d in got.error.unpack_details(wrappers_pb2.StringValue)] == ["why"]
    assert [d.value for d in got.error.unpack_details(wrappers_pb2.Int64Value)] == [-5]
    # Headers and trailers reach the error's metadata, whichever way the protocol carries them.
    meta = got.error.metadata
    assert meta.getall("x-h") == ["1", "2"]
    assert meta.getall_binary("x-h-bin") == [b"\x00\xff\x10"]
    assert meta["x-t"] == "t1"
    assert meta.getall_binary("x-t-bin") == [b"\xfe"]


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.name.lower())
def test_error_without_message_or_details(protocol: ProtocolType) -> None:
    _, _, got = memory.round_trip(
        protocol,
        METHODS[StreamType.UNARY],
        [EchoRequest()],
        [],
        error=ConnectError(Code.UNAUTHENTICATED),
    )
    assert got.error is not None
    assert (got.error.code, got.error.message, list(got.error.details)) == (
        Code.UNAUTHENTICATED,
        "",
        [],
    )


@pytest.mark.parametrize("code", list(Code), ids=lambda c: c.value)
@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.name.lower())
def test_every_code_survives(protocol: ProtocolType, code: Code) -> None:
    for stream_type in (StreamType.UNARY, StreamType.SERVER_STREAM):
        _, _, got = memory.round_trip(
            protocol,
            METHODS[stream_type],
            [EchoRequest()],
            [],
            error=ConnectError(code, "m"),
        )
        assert got.error is not None
        assert (got.error.code, got.error.message) == (code, "m")


@pytest.mark.parametrize("stream_type", list(METHODS), ids=lambda s: s.name.lower())
@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.name.lower())
def test_empty_streams_and_empty_messages(protocol: ProtocolType, stream_type: StreamType) -> None:
    method = METHODS[stream_type]
    requests = [] if stream_type.streams_requests else [EchoRequest()]
    responses = [] if stream_type.streams_responses else [EchoResponse()]
    received, _ccall, got = memory.round_trip(protocol, method, requests, responses)
    assert received == requests
    assert got.error is None
    assert got.messages == responses


@pytest.mark.parametrize("protocol", [ProtocolType.GRPC, ProtocolType.GRPC_WEB])
def test_grpc_errors_before_any_message_are_trailers_only(protocol: ProtocolType) -> None:
    ccall = memory.client_call(protocol, METHODS[StreamType.SERVER_STREAM])
    request = memory.client_request(ccall, [EchoRequest()])
    scall = memory.server_call(request, METHODS[StreamType.SERVER_STREAM])
    memory.read_requests(scall, request.body or b"")
    wire = memory.respond(
        scall, [], error=ConnectError(Code.NOT_FOUND, "nope"), trailers=Headers({"x-t": "1"})
    )
    assert wire.body == b""
    if protocol is ProtocolType.GRPC_WEB:
        # One header block carries the status; no trailer frame.
        assert (b"grpc-status", b"5") in wire.headers
        assert (b"x-t", b"1") in wire.headers
    else:
        assert wire.trailers_only
        assert wire.trailers is not None
        assert (b"grpc-status", b"5") in wire.trailers
    got = memory.read_response(ccall, wire, trailers_only_block=True)
    assert got.error is not None
    assert (got.error.code, got.error.message) == (Code.NOT_FOUND, "nope")
    assert got.error.metadata["x-t"] == "1"
    # Trailers-Only: the one block is the trailers; there were no headers.
    assert ccall.response_trailers.get("x-t") == "1"
    assert "x-t" not in ccall.response_headers


@pytest.mark.parametrize("protocol", [ProtocolType.GRPC, ProtocolType.GRPC_WEB])
def test_grpc_error_with_custom_headers_keeps_them_headers(protocol: ProtocolType) -> None:
    """Trailers-Only would turn the handler's response headers into trailers: a response
    with custom headers sends them as headers, then the status as trailers."""
    ccall = memory.client_call(protocol, METHODS[StreamType.SERVER_STREAM])
    request = memory.client_request(ccall, [EchoRequest()])
    scall = memory.server_call(request, METHODS[StreamType.SERVER_STREAM])
    memory.read_requests(scall, request.body or b"")
    wire = memory.respond(
        scall,
        [],
        error=ConnectError(Code.NOT_FOUND, "nope"),
        headers=Headers({"x-h": "1"}),
        trailers=Headers({"x-t": "2"}),
    )
    assert not wire.trailers_only
    assert (b"x-h", b"1") in wire.headers
    assert (b"grpc-status", b"5") not in wire.headers
    got = memory.read_response(ccall, wire)
    assert got.error is not None
    assert (got.error.code, got.error.message) == (Code.NOT_FOUND, "nope")
    assert ccall.response_headers.get("x-h") == "1"
    assert ccall.response_trailers.get("x-t") == "2"
    assert ccall.response_trailers.get("grpc-status") == "5"


def test_connect_unary_trailers_travel_as_prefixed_headers() -> None:
    method = METHODS[StreamType.UNARY]
    ccall = memory.client_call(ProtocolType.CONNECT, method)
    request = memory.client_request(ccall, [EchoRequest()])
    scall = memory.server_call(request, method)
    memory.read_requests(scall, request.body or b"")
    wire = memory.respond(scall, [EchoResponse()], trailers=Headers({"x-t": "1"}))
    assert (b"trailer-x-t", b"1") in wire.headers
    assert wire.trailers is None
    memory.read_response(ccall, wire)
    assert ccall.response_trailers["x-t"] == "1"
    assert "trailer-x-t" not in ccall.response_headers


def test_connect_unary_error_is_http_status_and_json() -> None:
    method = METHODS[StreamType.UNARY]
    ccall = memory.client_call(ProtocolType.CONNECT, method, accept=())
    request = memory.client_request(ccall, [EchoRequest()])
    scall = memory.server_call(request, method)
    memory.read_requests(scall, request.body or b"")
    wire = memory.respond(scall, [], error=ConnectError(Code.INVALID_ARGUMENT, "bad"))
    assert wire.status == 400
    assert (b"content-type", b"application/json") in wire.headers
    assert wire.body == b'{"code":"invalid_argument","message":"bad"}'


def test_small_messages_are_not_compressed_below_the_minimum() -> None:
    method = METHODS[StreamType.SERVER_STREAM]
    config = memory.server_config(compress_min_bytes=1024)
    ccall = memory.client_call(
        ProtocolType.CONNECT, method, send="gzip", accept=("gzip",), compress_min_bytes=1024
    )
    request = memory.client_request(ccall, [EchoRequest(text="tiny")])
    assert request.body is not None
    assert request.body[0] == 0
    scall = memory.server_call(request, method, config=config)
    assert memory.read_requests(scall, request.body) == [EchoRequest(text="tiny")]
    big = EchoResponse(payload=b"z" * 4096)
    small = EchoResponse(text="s")
    wire = memory.respond(scall, [small, big])
    assert wire.body[0] == 0
    assert wire.body[5 + len(small.SerializeToString())] == 1  # the big one is compressed
    assert memory.read_response(ccall, wire).messages == [small, big]


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.name.lower())
@SETTINGS
@given(cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=12))
def test_any_chunking_of_bodies(protocol: ProtocolType, cuts: list[int]) -> None:
    method = METHODS[StreamType.BIDI_STREAM]

    def chunker(data: bytes) -> list[bytes]:
        points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
        return [data[a:b] for a, b in itertools.pairwise(points)]

    requests, responses = _requests(StreamType.BIDI_STREAM), _responses(StreamType.BIDI_STREAM)
    received, _, got = memory.round_trip(
        protocol,
        method,
        requests,
        responses,
        error=ConnectError(Code.DATA_LOSS, "gone"),
        response_trailers=Headers({"x-t": "1"}),
        client_options={"send": "gzip", "accept": ("gzip",)},
        chunker=chunker,
    )
    assert received == requests
    assert got.messages == responses
    assert got.error is not None
    assert (got.error.code, got.error.message) == (Code.DATA_LOSS, "gone")
    assert got.error.metadata["x-t"] == "1"


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.name.lower())
def test_byte_by_byte_bodies(protocol: ProtocolType) -> None:
    method = METHODS[StreamType.BIDI_STREAM]
    requests, responses = _requests(StreamType.BIDI_STREAM), _responses(StreamType.BIDI_STREAM)
    received, _, got = memory.round_trip(
        protocol,
        method,
        requests,
        responses,
        response_trailers=Headers({"x-t": "1"}),
        client_options={"codec": "json", "send": "zstd", "accept": ("zstd",)},
        chunker=memory.byte_by_byte,
    )
    assert received == requests
    assert got.error is None
    assert got.messages == responses
