"""Our client, with ``ProtocolType.GRPC``, calls a grpcio server (an independent implementation).

The grpcio server runs in this process on its own thread pool, on 127.0.0.1 port
0; our client runs on the test's event loop, asyncio or trio. The servicer below
behaves like ``EchoServiceImpl`` for the fields the tests use, and records what it
saw in thread-safe events.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import anyio
import grpc
import pytest
from _support.relay import byte_counting_relay
from connectanyio.testing.v1 import testing_connect, testing_pb2
from google.protobuf import any_pb2, wrappers_pb2
from google.rpc import status_pb2
from grpc_status import rpc_status

from connect_anyio import Code, ConnectError, Headers, ProtocolType, ResponseMetadata

pytestmark = pytest.mark.anyio

EchoRequest = testing_pb2.EchoRequest
EchoResponse = testing_pb2.EchoResponse

WAIT = 10.0
"""Seconds the servicer waits for a cancellation at most, so a broken client cannot hang it."""

BLOBS = [bytes(range(256)), b"\x00", b"", b"\xfb\xff\xfe", b"plain ascii"]
"""Binary metadata values: every byte value, a NUL, empty, bytes whose base64 has + and /."""


@dataclass
class Seen:
    """What the grpcio servicer observed, by request tag."""

    started: defaultdict[str, threading.Event] = field(
        default_factory=lambda: defaultdict(threading.Event)
    )
    terminated: defaultdict[str, threading.Event] = field(
        default_factory=lambda: defaultdict(threading.Event)
    )
    metadata: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)
    received: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))


class GrpcioEchoServicer:
    """``connectanyio.testing.v1.EchoService`` on grpcio's (sync) server API.

    Metadata: ``x-test-*`` text entries come back as headers and as ``-trailer``
    trailers; each ``x-data-bin`` value comes back reversed in the header
    ``x-reply-bin`` and unchanged in the trailer ``x-reply-trailer-bin``.
    Requests tagged ``gz`` get gzip-compressed responses.
    """

    def __init__(self) -> None:
        self.seen = Seen()

    def _begin(self, request: EchoRequest, context: grpc.ServicerContext) -> list[tuple[str, Any]]:
        """Sends the initial metadata; returns the trailing metadata to send at the end."""
        metadata = [(m.key, m.value) for m in context.invocation_metadata()]
        self.seen.metadata[request.tag] = metadata
        if request.tag == "gz":
            context.set_compression(grpc.Compression.Gzip)
        initial: list[tuple[str, Any]] = []
        trailing: list[tuple[str, Any]] = []
        for key, value in metadata:
            if key.startswith("x-test-"):
                initial.append((key, value))
                trailing.append((key + "-trailer", value))
            elif key == "x-data-bin":
                initial.append(("x-reply-bin", value[::-1]))
                trailing.append(("x-reply-trailer-bin", value))
        context.send_initial_metadata(initial)
        return trailing

    def _end(
        self, request: EchoRequest, context: grpc.ServicerContext, trailing: list[tuple[str, Any]]
    ) -> None:
        """Blocks or fails if the request asks for it, then sets the trailers."""
        if request.wait_for_cancel:
            terminated = threading.Event()
            context.add_callback(terminated.set)
            self.seen.started[request.tag].set()
            if terminated.wait(WAIT):
                self.seen.terminated[request.tag].set()
            return
        if request.HasField("fail"):
            failure = request.fail
            code = grpc.StatusCode[failure.code.upper()]
            details = []
            for text in failure.details:
                packed = any_pb2.Any()
                packed.Pack(wrappers_pb2.StringValue(value=text))
                details.append(packed)
            status = rpc_status.to_status(
                status_pb2.Status(code=code.value[0], message=failure.message, details=details)
            )
            # abort_with_status would replace the user's trailers; keep both.
            context.set_trailing_metadata([*trailing, *status.trailing_metadata])
            context.abort(status.code, status.details)
        context.set_trailing_metadata(trailing)

    @staticmethod
    def _response(
        request: EchoRequest, context: grpc.ServicerContext, index: int = 0
    ) -> EchoResponse:
        remaining = context.time_remaining()  # huge, not None, without a deadline
        no_deadline = remaining is None or remaining > 365 * 24 * 3600
        return EchoResponse(
            text=request.text,
            payload=b"x" * request.response_payload_size,
            index=index,
            timeout_ms=-1 if no_deadline else int(remaining * 1000),
        )

    def Echo(self, request: EchoRequest, context: grpc.ServicerContext) -> EchoResponse:
        trailing = self._begin(request, context)
        self._end(request, context, trailing)
        return self._response(request, context)

    def EchoPost(self, request: EchoRequest, context: grpc.ServicerContext) -> EchoResponse:
        return self.Echo(request, context)

    def ServerStream(
        self, request: EchoRequest, context: grpc.ServicerContext
    ) -> Iterator[EchoResponse]:
        trailing = self._begin(request, context)
        for i in range(request.response_count):
            yield self._response(request, context, i)
        self._end(request, context, trailing)

    def ClientStream(
        self, requests: Iterator[EchoRequest], context: grpc.ServicerContext
    ) -> EchoResponse:
        texts = []
        last = EchoRequest()
        for request in requests:
            texts.append(request.text)
            self.seen.received[request.tag].append(request.text)
            last = request
        trailing = self._begin(last, context)
        self._end(last, context, trailing)
        response = self._response(last, context)
        response.request_texts.extend(texts)
        return response

    def Bidi(
        self, requests: Iterator[EchoRequest], context: grpc.ServicerContext
    ) -> Iterator[EchoResponse]:
        index = 0
        trailing: list[tuple[str, Any]] | None = None
        for request in requests:
            if trailing is None:
                trailing = self._begin(request, context)
            self.seen.received[request.tag].append(request.text)
            for _ in range(max(1, request.response_count)):
                yield self._response(request, context, index)
                index += 1
        context.set_trailing_metadata(trailing or [])

    def Nothing(self, request: Any, context: grpc.ServicerContext) -> Any:
        return request


@dataclass
class GrpcioPeer:
    port: int
    servicer: GrpcioEchoServicer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, url: str | None = None, **options: Any) -> testing_connect.EchoServiceClient:
        """Our gRPC client; a default deadline keeps a broken call from hanging the test."""
        options.setdefault("timeout_ms", 10_000)
        return testing_connect.EchoServiceClient(
            url or self.url, protocol=ProtocolType.GRPC, **options
        )

    async def wait_terminated(self, tag: str) -> None:
        """Waits until the servicer saw its RPC end (cancelled or expired)."""
        done = await anyio.to_thread.run_sync(self.servicer.seen.terminated[tag].wait, WAIT)
        assert done, f"the grpcio servicer never saw {tag!r} end"


@pytest.fixture
def grpcio_server(grpc_stubs: ModuleType) -> Iterator[GrpcioPeer]:
    servicer = GrpcioEchoServicer()
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="grpcio-server") as pool:
        server = grpc.server(pool, options=[("grpc.so_reuseport", 0)])
        grpc_stubs.add_EchoServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            yield GrpcioPeer(port, servicer)
        finally:
            server.stop(None).wait(WAIT)


# ---------------------------------------------------------------------------
# the four kinds of call


async def test_unary(grpcio_server: GrpcioPeer) -> None:
    async with grpcio_server.client(timeout_ms=None) as client:
        response = await client.echo(EchoRequest(text="héllo"), timeout_ms=30_000)
    assert response.text == "héllo"
    assert 0 < response.timeout_ms <= 30_000  # grpc-timeout reached the servicer


async def test_unary_without_deadline(grpcio_server: GrpcioPeer) -> None:
    async with grpcio_server.client(timeout_ms=None) as client:
        with anyio.fail_after(10):
            response = await client.echo(EchoRequest(text="x"))
    assert response.timeout_ms == -1


async def test_server_stream(grpcio_server: GrpcioPeer) -> None:
    async with grpcio_server.client() as client:
        responses = [r async for r in client.server_stream(EchoRequest(text="s", response_count=5))]
    assert [(r.text, r.index) for r in responses] == [("s", i) for i in range(5)]


async def test_server_stream_empty(grpcio_server: GrpcioPeer) -> None:
    async with grpcio_server.client() as client:
        responses = [r async for r in client.server_stream(EchoRequest(response_count=0))]
    assert responses == []


async def test_client_stream(grpcio_server: GrpcioPeer) -> None:
    texts = ["a", "b", "c", "d"]

    async def requests() -> AsyncIterator[EchoRequest]:
        for text in texts:
            yield EchoRequest(text=text, tag="cs")

    async with grpcio_server.client() as client:
        response = await client.client_stream(requests())
    assert list(response.request_texts) == texts
    assert grpcio_server.servicer.seen.received["cs"] == texts


async def test_bidi_ping_pong(grpcio_server: GrpcioPeer) -> None:
    """Full duplex: our client sends request n+1 only after it has read response n."""
    rounds = 30
    send, receive = anyio.create_memory_object_stream[EchoRequest](1)

    async def requests() -> AsyncIterator[EchoRequest]:
        async with receive:
            async for message in receive:
                yield message

    seen: list[int] = []
    async with grpcio_server.client() as client, send:
        await send.send(EchoRequest(text="0", tag="bidi"))
        async with client.bidi(requests()) as stream:
            async for response in stream:
                seen.append(int(response.text))
                assert response.index == len(seen) - 1
                if len(seen) == rounds:
                    await send.aclose()
                else:
                    await send.send(EchoRequest(text=str(len(seen)), tag="bidi"))
    assert seen == list(range(rounds))
    assert grpcio_server.servicer.seen.received["bidi"] == [str(i) for i in range(rounds)]


# ---------------------------------------------------------------------------
# errors


async def _drain(responses: AsyncIterator[EchoResponse], into: list[EchoResponse]) -> None:
    """Reads a response stream into ``into``; what arrived before an error stays there."""
    async for response in responses:
        into.append(response)


FAILURE = testing_pb2.Failure(
    code="invalid_argument", message="bad input: ü 100% \r\n done", details=["first", "second"]
)


def _check_failure(error: ConnectError, failure: testing_pb2.Failure) -> None:
    assert error.code is Code.from_name(failure.code)
    assert error.message == failure.message
    assert [d.value for d in error.unpack_details(wrappers_pb2.StringValue)] == list(
        failure.details
    )


async def test_unary_error_with_details(grpcio_server: GrpcioPeer) -> None:
    async with grpcio_server.client() as client:
        with pytest.raises(ConnectError) as caught:
            await client.echo(EchoRequest(fail=FAILURE))
    _check_failure(caught.value, FAILURE)


async def test_error_after_stream_messages(grpcio_server: GrpcioPeer) -> None:
    failure = testing_pb2.Failure(code="resource_exhausted", message="out", details=["d"])
    received: list[EchoResponse] = []
    async with grpcio_server.client() as client:
        with pytest.raises(ConnectError) as caught:
            await _drain(
                client.server_stream(EchoRequest(response_count=3, fail=failure)), received
            )
    assert [r.index for r in received] == [0, 1, 2]
    _check_failure(caught.value, failure)


async def test_unimplemented_method(grpcio_server: GrpcioPeer) -> None:
    """grpcio answers an unknown method with a trailers-only UNIMPLEMENTED."""
    async with grpcio_server.client(grpcio_server.url + "/no.such.prefix") as client:
        with pytest.raises(ConnectError) as caught:
            await client.echo(EchoRequest())
    assert caught.value.code is Code.UNIMPLEMENTED


# ---------------------------------------------------------------------------
# metadata


def _request_headers() -> Headers:
    headers = Headers([("x-test-greeting", "hello"), ("x-test-greeting", "again")])
    for blob in BLOBS:
        headers.add_binary("x-data-bin", blob)
    return headers


def _check_seen_metadata(metadata: list[tuple[str, Any]]) -> None:
    # grpcio decodes our base64 back to the exact bytes.
    assert [v for k, v in metadata if k == "x-data-bin"] == BLOBS
    assert [v for k, v in metadata if k == "x-test-greeting"] == ["hello", "again"]


def _check_response_metadata(headers: Headers, trailers: Headers) -> None:
    assert headers.getall("x-test-greeting") == ["hello", "again"]
    assert trailers.getall("x-test-greeting-trailer") == ["hello", "again"]
    assert headers.getall_binary("x-reply-bin") == [blob[::-1] for blob in BLOBS]
    assert trailers.getall_binary("x-reply-trailer-bin") == BLOBS


async def test_unary_metadata(grpcio_server: GrpcioPeer) -> None:
    async with grpcio_server.client() as client:
        with ResponseMetadata() as meta:
            await client.echo(EchoRequest(tag="meta"), headers=_request_headers())
    _check_seen_metadata(grpcio_server.servicer.seen.metadata["meta"])
    _check_response_metadata(meta.headers(), meta.trailers())


async def test_server_stream_metadata(grpcio_server: GrpcioPeer) -> None:
    async with (
        grpcio_server.client() as client,
        client.server_stream(
            EchoRequest(tag="smeta", response_count=2), headers=_request_headers()
        ) as stream,
    ):
        headers = await stream.response_headers()  # before any message is read
        assert len([r async for r in stream]) == 2
        trailers = stream.response_trailers()
    _check_seen_metadata(grpcio_server.servicer.seen.metadata["smeta"])
    _check_response_metadata(headers, trailers)


async def test_error_metadata(grpcio_server: GrpcioPeer) -> None:
    async with grpcio_server.client() as client:
        with pytest.raises(ConnectError) as caught:
            await client.echo(EchoRequest(tag="emeta", fail=FAILURE), headers=_request_headers())
    _check_failure(caught.value, FAILURE)
    metadata = caught.value.metadata
    assert metadata.getall_binary("x-reply-bin") == [blob[::-1] for blob in BLOBS]
    assert metadata.getall_binary("x-reply-trailer-bin") == BLOBS


# ---------------------------------------------------------------------------
# deadlines and compression


async def test_deadline_expiry(grpcio_server: GrpcioPeer) -> None:
    async with grpcio_server.client() as client:
        with pytest.raises(ConnectError) as caught:
            await client.echo(EchoRequest(tag="late", wait_for_cancel=True), timeout_ms=300)
    assert caught.value.code is Code.DEADLINE_EXCEEDED
    await grpcio_server.wait_terminated("late")


async def test_deadline_expiry_server_stream(grpcio_server: GrpcioPeer) -> None:
    received: list[EchoResponse] = []
    request = EchoRequest(tag="late-stream", response_count=2, wait_for_cancel=True)
    async with grpcio_server.client() as client:
        with pytest.raises(ConnectError) as caught:
            await _drain(client.server_stream(request, timeout_ms=500), received)
    assert len(received) == 2
    assert caught.value.code is Code.DEADLINE_EXCEEDED
    await grpcio_server.wait_terminated("late-stream")


@pytest.mark.parametrize("kind", ["unary", "bidi"])
async def test_gzip(grpcio_server: GrpcioPeer, kind: str) -> None:
    """Our client gzips requests; grpcio gzips responses; the relay sees both compressed."""
    size = 256 * 1024
    request = EchoRequest(tag="gz", payload=b"p" * size, response_payload_size=size)

    async def requests() -> AsyncIterator[EchoRequest]:
        yield request
        yield request

    async with (
        byte_counting_relay(grpcio_server.port) as relay,
        grpcio_server.client(
            f"http://{relay.address}", send_compression="gzip", accept_compression=["gzip"]
        ) as client,
    ):
        with ResponseMetadata() as meta:
            if kind == "unary":
                responses = [await client.echo(request)]
            else:
                responses = [r async for r in client.bidi(requests())]
    assert len(responses) == (1 if kind == "unary" else 2)
    assert all(r.payload == b"x" * size for r in responses)
    assert meta.headers().get("grpc-encoding") == "gzip"
    assert relay.upstream_bytes < size / 4
    assert relay.downstream_bytes < size / 4


async def test_many_concurrent_calls(grpcio_server: GrpcioPeer) -> None:
    """Many calls in flight on one HTTP/2 connection to grpcio."""
    results: dict[int, str] = {}

    async with grpcio_server.client() as client:

        async def one(i: int) -> None:
            results[i] = (await client.echo(EchoRequest(text=str(i)))).text

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(one, i)
    assert results == {i: str(i) for i in range(50)}
