"""grpcio's client (an independent gRPC implementation) calls our server over h2c.

grpcio's sync client blocks, so each exchange runs in a worker thread
(``anyio.to_thread``) while our server keeps running on the test's event loop,
asyncio or trio. Every grpcio call carries a timeout, so nothing can hang.
"""

from __future__ import annotations

import queue
from collections.abc import AsyncIterator, Callable, Iterator
from types import ModuleType
from typing import Any, TypeVar

import anyio
import grpc
import pytest
from _support.relay import byte_counting_relay
from _support.servers import SERVERS, run_server
from _support.service import Ctx, EchoRequest, EchoResponse, EchoServiceImpl, Observations
from connectanyio.testing.v1 import testing_connect, testing_pb2
from google.protobuf import wrappers_pb2
from grpc_status import rpc_status

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("server", SERVERS)]

T = TypeVar("T")

TIMEOUT = 10.0
"""Seconds any grpcio call may take; a broken server fails the test instead of hanging it."""

BLOBS = [bytes(range(256)), b"\x00", b"", b"\xfb\xff\xfe", b"plain ascii"]
"""Binary metadata values: every byte value, a NUL, empty, bytes whose base64 has + and /."""


class BinaryMetadataEcho(EchoServiceImpl):
    """The test EchoService, plus binary metadata through our public API.

    Each value of the request's ``x-data-bin`` comes back reversed in the header
    ``x-reply-bin`` and unchanged in the trailer ``x-reply-trailer-bin``, via
    ``Headers.getall_binary`` and ``Headers.add_binary``.
    """

    def __init__(self, observations: Observations) -> None:
        super().__init__(observations)
        self.binary_seen: dict[str, list[bytes]] = {}

    def _answer_binary(self, request: EchoRequest, ctx: Ctx) -> None:
        values = ctx.request_headers().getall_binary("x-data-bin")
        self.binary_seen[request.tag] = values
        for value in values:
            ctx.response_headers().add_binary("x-reply-bin", value[::-1])
            ctx.response_trailers().add_binary("x-reply-trailer-bin", value)

    async def echo(self, request: EchoRequest, ctx: Ctx) -> EchoResponse:
        self._answer_binary(request, ctx)
        return await super().echo(request, ctx)

    async def server_stream(self, request: EchoRequest, ctx: Ctx) -> AsyncIterator[EchoResponse]:
        self._answer_binary(request, ctx)
        async for response in super().server_stream(request, ctx):
            yield response


class Peer:
    """Our server under test, and how grpcio reaches it."""

    def __init__(self, stubs: ModuleType, target: str, service: BinaryMetadataEcho) -> None:
        self.stubs = stubs
        self.target = target
        self.service = service
        self.observations = service.observations

    async def run(self, fn: Callable[[Any], T], **channel_options: Any) -> T:
        """Runs ``fn(stub)`` in a thread, with a fresh grpcio channel to our server."""
        return await self.run_on_channel(
            lambda channel: fn(self.stubs.EchoServiceStub(channel)), **channel_options
        )

    async def run_on_channel(self, fn: Callable[[grpc.Channel], T], **channel_options: Any) -> T:
        """Runs ``fn(channel)`` in a thread, with a fresh grpcio channel to our server."""

        def call() -> T:
            with grpc.insecure_channel(
                self.target,
                options=[("grpc.enable_http_proxy", 0), ("grpc.enable_retries", 0)],
                **channel_options,
            ) as channel:
                return fn(channel)

        return await anyio.to_thread.run_sync(call)


@pytest.fixture
async def peer(server: str, grpc_stubs: ModuleType) -> AsyncIterator[Peer]:
    service = BinaryMetadataEcho(Observations())
    app = testing_connect.EchoServiceASGIApplication(service)
    async with run_server(app, server=server, transport="h2c") as srv:
        yield Peer(grpc_stubs, srv.url.removeprefix("http://"), service)


def _metadata(call: Any, which: str) -> list[tuple[str, Any]]:
    return [(m.key, m.value) for m in getattr(call, which)()]


def _values(metadata: list[tuple[str, Any]], key: str) -> list[Any]:
    return [v for k, v in metadata if k == key]


def _drain(responses: Iterator[T], into: list[T]) -> None:
    """Reads a response stream into ``into``; what arrived before an error stays there."""
    for response in responses:
        into.append(response)  # noqa: PERF402 (keeps what arrived before an error)


# ---------------------------------------------------------------------------
# the four kinds of call


async def test_unary(peer: Peer) -> None:
    response = await peer.run(lambda stub: stub.Echo(EchoRequest(text="héllo"), timeout=TIMEOUT))
    assert response.text == "héllo"
    assert response.timeout_ms > 0  # grpc-timeout reached the handler


async def test_server_stream(peer: Peer) -> None:
    def call(stub: Any) -> list[EchoResponse]:
        return list(stub.ServerStream(EchoRequest(text="s", response_count=5), timeout=TIMEOUT))

    responses = await peer.run(call)
    assert [(r.text, r.index) for r in responses] == [("s", i) for i in range(5)]


async def test_server_stream_empty(peer: Peer) -> None:
    responses = await peer.run(
        lambda stub: list(stub.ServerStream(EchoRequest(response_count=0), timeout=TIMEOUT))
    )
    assert responses == []


async def test_client_stream(peer: Peer) -> None:
    texts = ["a", "b", "c", "d"]

    def call(stub: Any) -> EchoResponse:
        requests = iter([EchoRequest(text=t, tag="cs") for t in texts])
        result: EchoResponse = stub.ClientStream(requests, timeout=TIMEOUT)
        return result

    response = await peer.run(call)
    assert list(response.request_texts) == texts
    assert peer.observations.received["cs"] == texts


async def test_bidi_ping_pong(peer: Peer) -> None:
    """Full duplex: grpcio sends request n+1 only after it has read response n."""
    rounds = 30

    def call(stub: Any) -> list[int]:
        outbox: queue.Queue[EchoRequest | None] = queue.Queue()

        def requests() -> Iterator[EchoRequest]:
            while (message := outbox.get(timeout=TIMEOUT)) is not None:
                yield message

        outbox.put(EchoRequest(text="0", tag="bidi"))
        seen = []
        responses = stub.Bidi(requests(), timeout=TIMEOUT)
        for response in responses:
            seen.append(int(response.text))
            # The server has answered every request so far, and nothing more.
            assert response.index == len(seen) - 1
            if len(seen) == rounds:
                outbox.put(None)
            else:
                outbox.put(EchoRequest(text=str(len(seen)), tag="bidi"))
        return seen

    assert await peer.run(call) == list(range(rounds))
    assert peer.observations.received["bidi"] == [str(i) for i in range(rounds)]


# ---------------------------------------------------------------------------
# errors


FAILURE = testing_pb2.Failure(
    code="invalid_argument", message="bad input: ü 100% \r\n done", details=["first", "second"]
)


def _status_of(error: grpc.RpcError) -> tuple[grpc.StatusCode, str, list[str]]:
    """Code, message and StringValue details, read the grpcio way (``grpc_status``)."""
    status = rpc_status.from_call(error)  # also checks code and message agree
    assert status is not None, "no grpc-status-details-bin"
    details = []
    for detail in status.details:
        value = wrappers_pb2.StringValue()
        assert detail.Unpack(value)
        details.append(value.value)
    return error.code(), status.message, details


async def test_unary_error_with_details(peer: Peer) -> None:
    def call(stub: Any) -> tuple[grpc.StatusCode, str, list[str]]:
        with pytest.raises(grpc.RpcError) as caught:
            stub.Echo(EchoRequest(fail=FAILURE), timeout=TIMEOUT)
        assert caught.value.details() == FAILURE.message
        return _status_of(caught.value)

    code, message, details = await peer.run(call)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert message == FAILURE.message
    assert details == ["first", "second"]


async def test_error_after_stream_messages(peer: Peer) -> None:
    failure = testing_pb2.Failure(code="resource_exhausted", message="out", details=["d"])

    def call(stub: Any) -> tuple[int, tuple[grpc.StatusCode, str, list[str]]]:
        received: list[EchoResponse] = []
        stream = stub.ServerStream(EchoRequest(response_count=3, fail=failure), timeout=TIMEOUT)
        with pytest.raises(grpc.RpcError) as caught:
            _drain(stream, received)
        return len(received), _status_of(caught.value)

    received, status = await peer.run(call)
    assert received == 3
    assert status == (grpc.StatusCode.RESOURCE_EXHAUSTED, "out", ["d"])


async def test_unimplemented_method(peer: Peer) -> None:
    """A method the server does not know: grpcio sees UNIMPLEMENTED."""

    def call(channel: grpc.Channel) -> grpc.StatusCode:
        unknown = channel.unary_unary(
            "/connectanyio.testing.v1.EchoService/NoSuchMethod",
            request_serializer=EchoRequest.SerializeToString,
            response_deserializer=EchoResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as caught:
            unknown(EchoRequest(), timeout=TIMEOUT)
        return caught.value.code()

    assert await peer.run_on_channel(call) is grpc.StatusCode.UNIMPLEMENTED


# ---------------------------------------------------------------------------
# metadata


REQUEST_METADATA = [
    ("x-test-greeting", "hello"),
    ("x-test-greeting", "again"),
    *(("x-data-bin", blob) for blob in BLOBS),
]


def _check_response_metadata(
    initial: list[tuple[str, Any]], trailing: list[tuple[str, Any]]
) -> None:
    # Text metadata: EchoServiceImpl echoes x-test-* as headers and as "-trailer" trailers.
    assert _values(initial, "x-test-greeting") == ["hello", "again"]
    assert _values(trailing, "x-test-greeting-trailer") == ["hello", "again"]
    # Binary metadata set with Headers.add_binary arrives as bytes, byte-exact.
    assert _values(initial, "x-reply-bin") == [blob[::-1] for blob in BLOBS]
    assert _values(trailing, "x-reply-trailer-bin") == BLOBS


async def test_unary_metadata(peer: Peer) -> None:
    def call(stub: Any) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
        response, rpc = stub.Echo.with_call(
            EchoRequest(tag="meta"), metadata=REQUEST_METADATA, timeout=TIMEOUT
        )
        assert response.headers["x-test-greeting"] == "hello"
        return _metadata(rpc, "initial_metadata"), _metadata(rpc, "trailing_metadata")

    initial, trailing = await peer.run(call)
    # Our server exposes the request's binary metadata as the bytes grpcio was given.
    assert peer.service.binary_seen["meta"] == BLOBS
    _check_response_metadata(initial, trailing)


async def test_server_stream_metadata(peer: Peer) -> None:
    def call(stub: Any) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
        responses = stub.ServerStream(
            EchoRequest(tag="smeta", response_count=2), metadata=REQUEST_METADATA, timeout=TIMEOUT
        )
        initial = _metadata(responses, "initial_metadata")  # before any message is read
        assert len(list(responses)) == 2
        return initial, _metadata(responses, "trailing_metadata")

    initial, trailing = await peer.run(call)
    assert peer.service.binary_seen["smeta"] == BLOBS
    _check_response_metadata(initial, trailing)


async def test_error_metadata(peer: Peer) -> None:
    """Headers and trailers set before an error reach grpcio (a trailers-only response)."""

    def call(stub: Any) -> tuple[grpc.StatusCode, list[tuple[str, Any]]]:
        with pytest.raises(grpc.RpcError) as caught:
            stub.Echo(EchoRequest(fail=FAILURE), metadata=REQUEST_METADATA, timeout=TIMEOUT)
        error: Any = caught.value
        return error.code(), _metadata(error, "initial_metadata") + _metadata(
            error, "trailing_metadata"
        )

    code, metadata = await peer.run(call)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert _values(metadata, "x-reply-bin") == [blob[::-1] for blob in BLOBS]
    assert _values(metadata, "x-reply-trailer-bin") == BLOBS


# ---------------------------------------------------------------------------
# deadlines and compression


async def test_deadline_expiry(peer: Peer) -> None:
    def call(stub: Any) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as caught:
            stub.Echo(EchoRequest(tag="late", wait_for_cancel=True), timeout=0.3)
        return caught.value.code()

    assert await peer.run(call) is grpc.StatusCode.DEADLINE_EXCEEDED
    # The handler was cancelled (by our server's deadline or grpcio's RST_STREAM).
    await peer.observations.wait_cancelled("late")


async def test_deadline_expiry_server_stream(peer: Peer) -> None:
    def call(stub: Any) -> tuple[int, grpc.StatusCode]:
        received: list[EchoResponse] = []
        request = EchoRequest(tag="late-stream", response_count=2, wait_for_cancel=True)
        with pytest.raises(grpc.RpcError) as caught:
            _drain(stub.ServerStream(request, timeout=0.5), received)
        return len(received), caught.value.code()

    assert await peer.run(call) == (2, grpc.StatusCode.DEADLINE_EXCEEDED)
    await peer.observations.wait_cancelled("late-stream")


@pytest.mark.parametrize("kind", ["unary", "bidi"])
async def test_gzip(peer: Peer, kind: str) -> None:
    """grpcio gzips its requests and accepts gzip; the relay sees both directions compressed."""
    size = 256 * 1024

    def call(stub: Any) -> list[EchoResponse]:
        request = EchoRequest(tag="gz", payload=b"p" * size, response_payload_size=size)
        if kind == "unary":
            return [stub.Echo(request, timeout=TIMEOUT)]
        return list(stub.Bidi(iter([request, request]), timeout=TIMEOUT))

    async with byte_counting_relay(int(peer.target.rsplit(":", 1)[1])) as relay:
        peer.target = relay.address
        responses = await peer.run(call, compression=grpc.Compression.Gzip)
    assert responses
    assert all(r.payload == b"x" * size for r in responses)
    if kind == "unary":
        assert peer.observations.request_headers["gz"].get("grpc-encoding") == ["gzip"]
    assert relay.upstream_bytes < size / 4
    assert relay.downstream_bytes < size / 4


async def test_many_concurrent_calls(peer: Peer) -> None:
    """One grpcio channel (one HTTP/2 connection) with many calls in flight."""

    def call(stub: Any) -> list[str]:
        futures = [stub.Echo.future(EchoRequest(text=str(i)), timeout=TIMEOUT) for i in range(50)]
        return [f.result().text for f in futures]

    assert await peer.run(call) == [str(i) for i in range(50)]
