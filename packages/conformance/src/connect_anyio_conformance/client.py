"""The client under test: ``connect-anyio-conformance-client --backend asyncio|trio``.

Reads size-delimited ``ClientCompatRequest`` messages from stdin until EOF, makes each
RPC with connect-anyio's ``ConnectClient`` (the generated ``ConformanceServiceClient``),
and writes a ``ClientCompatResponse`` per case to stdout as soon as it completes. Cases
run concurrently, at most ``--parallel`` at a time. See the runner's
``docs/testing_clients.md`` for what each field of the request means.

Cancellation is Python's: the call runs in an ``anyio.CancelScope`` that the case's
cancel timing cancels (before close send, some milliseconds after close send, or after
N responses). A call ended that way reports CANCELED, the code gRPC and Connect give a
call its caller cancelled.
"""

from __future__ import annotations

import argparse
import logging
import ssl
import sys
import tempfile
import traceback
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup
from connectrpc.conformance.v1 import client_compat_pb2, config_pb2, service_pb2
from connectrpc.conformance.v1.service_connect import ConformanceServiceClient

from connect_anyio import (
    ConnectError,
    Headers,
    HTTPClient,
    HTTPVersion,
    ProtocolType,
    ResponseMetadata,
    proto_binary_codec,
    proto_json_codec,
)

from ._convert import add_headers, canceled_error, error_to_proto, headers_to_proto
from ._framing import read_message, write_message

logger = logging.getLogger("connect_anyio_conformance.client")

ClientCompatRequest = client_compat_pb2.ClientCompatRequest
ClientCompatResponse = client_compat_pb2.ClientCompatResponse
ClientResponseResult = client_compat_pb2.ClientResponseResult

SERVICE = "connectrpc.conformance.v1.ConformanceService"

_PROTOCOLS = {
    config_pb2.PROTOCOL_CONNECT: ProtocolType.CONNECT,
    config_pb2.PROTOCOL_GRPC: ProtocolType.GRPC,
    config_pb2.PROTOCOL_GRPC_WEB: ProtocolType.GRPC_WEB,
}
_HTTP_VERSIONS = {
    config_pb2.HTTP_VERSION_1: HTTPVersion.HTTP1,
    config_pb2.HTTP_VERSION_2: HTTPVersion.HTTP2,
}
_COMPRESSIONS = {
    config_pb2.COMPRESSION_UNSPECIFIED: None,
    config_pb2.COMPRESSION_IDENTITY: None,
    config_pb2.COMPRESSION_GZIP: "gzip",
    config_pb2.COMPRESSION_BR: "br",
    config_pb2.COMPRESSION_ZSTD: "zstd",
}


class UnsupportedCase(Exception):
    """The case asks for something this client does not do (reported, not raised as an RPC
    error)."""


class HTTPClients:
    """One ``HTTPClient`` per connection setting (HTTP version and TLS material), shared by
    every case that uses it, so cases also exercise connection reuse."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._clients: dict[tuple[int, bytes, bytes, bytes], HTTPClient] = {}

    def get(self, request: ClientCompatRequest) -> HTTPClient:
        version = _HTTP_VERSIONS.get(request.http_version)
        if version is None:
            raise UnsupportedCase(
                f"HTTP version {config_pb2.HTTPVersion.Name(request.http_version)}"
            )
        creds = request.client_tls_creds
        key = (request.http_version, request.server_tls_cert, creds.cert, creds.key)
        client = self._clients.get(key)
        if client is None:
            context = self._tls_context(request) if request.server_tls_cert else None
            client = HTTPClient(http_version=version, ssl_context=context)
            self._clients[key] = client
        return client

    def _tls_context(self, request: ClientCompatRequest) -> ssl.SSLContext:
        """Trusts exactly the server's certificate; presents the client certificate if given."""
        context = ssl.create_default_context(cadata=request.server_tls_cert.decode("ascii"))
        creds = request.client_tls_creds
        if creds.cert:
            # Python's ssl loads a certificate chain from files only.
            index = len(list(self._directory.iterdir()))
            cert = self._directory / f"client-{index}.crt"
            key = self._directory / f"client-{index}.key"
            cert.write_bytes(creds.cert)
            key.write_bytes(creds.key)
            context.load_cert_chain(str(cert), str(key))
        return context

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()


def _address(request: ClientCompatRequest) -> str:
    scheme = "https" if request.server_tls_cert else "http"
    host = f"[{request.host}]" if ":" in request.host else request.host
    return f"{scheme}://{host}:{request.port}"


def new_client(request: ClientCompatRequest, http: HTTPClient) -> ConformanceServiceClient:
    """A client configured exactly as the case says (protocol, codec, compression, limit)."""
    protocol = _PROTOCOLS.get(request.protocol)
    if protocol is None:
        raise UnsupportedCase(f"protocol {config_pb2.Protocol.Name(request.protocol)}")
    if request.codec == config_pb2.CODEC_PROTO:
        codec = proto_binary_codec()
    elif request.codec == config_pb2.CODEC_JSON:
        codec = proto_json_codec()
    else:
        raise UnsupportedCase(f"codec {config_pb2.Codec.Name(request.codec)}")
    if request.compression not in _COMPRESSIONS:
        raise UnsupportedCase(f"compression {config_pb2.Compression.Name(request.compression)}")
    return ConformanceServiceClient(
        _address(request),
        protocol=protocol,
        codec=codec,
        send_compression=_COMPRESSIONS[request.compression],
        # Compress every message when compression is asked for, however small: the
        # reference server checks that the request says so.
        compress_min_bytes=0,
        read_max_bytes=request.message_receive_limit or None,
        http_client=http,
    )


@dataclass
class CallControl:
    """The case's request messages, delays and cancel timing around one call.

    ``scope`` wraps the call; cancelling it is how the case cancels the RPC.
    """

    request: ClientCompatRequest
    timers: TaskGroup
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    result: ClientResponseResult = field(default_factory=ClientResponseResult)
    sent: int = 0
    closed: bool = False

    @property
    def delay(self) -> float:
        return self.request.request_delay_ms / 1000

    def unpacked(self, message_type: type[Any]) -> list[Any]:
        messages = []
        for packed in self.request.request_messages:
            message = message_type()
            if not packed.Unpack(message):
                raise UnsupportedCase(
                    f"request message is a {packed.TypeName()}, not a "
                    f"{message_type.DESCRIPTOR.full_name}"
                )
            messages.append(message)
        return messages

    def single(self, message_type: type[Any]) -> Any:
        messages = self.unpacked(message_type)
        if len(messages) != 1:
            raise UnsupportedCase(f"expected exactly one request message, got {len(messages)}")
        return messages[0]

    def close_send(self) -> None:
        """The request side is complete: apply "before close send" and start the
        "after close send" timer."""
        if self.closed:
            return
        self.closed = True
        cancel = self.request.cancel
        timing = cancel.WhichOneof("cancel_timing") if self.request.HasField("cancel") else None
        if timing == "before_close_send":
            self.scope.cancel()
        elif timing == "after_close_send_ms":
            self.timers.start_soon(self._cancel_later, cancel.after_close_send_ms / 1000)

    async def _cancel_later(self, seconds: float) -> None:
        await anyio.sleep(seconds)
        self.scope.cancel()

    def received(self, payload: service_pb2.ConformancePayload) -> None:
        self.result.payloads.append(payload)
        cancel = self.request.cancel
        if (
            self.request.HasField("cancel")
            and cancel.WhichOneof("cancel_timing") == "after_num_responses"
            and len(self.result.payloads) == cancel.after_num_responses
        ):
            self.scope.cancel()


class ScriptedRequests:
    """The requests of a client or half-duplex call: each after the request delay, then
    close send once the runtime asks for more."""

    def __init__(self, control: CallControl, messages: Sequence[Any]) -> None:
        self._control = control
        self._messages = list(messages)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        control = self._control
        if control.sent >= len(self._messages):
            control.close_send()
            # A checkpoint, so "cancel before close send" lands before the request ends.
            await anyio.lowlevel.checkpoint()
            raise StopAsyncIteration
        if control.delay:
            await anyio.sleep(control.delay)
        message = self._messages[control.sent]
        control.sent += 1
        return message


class DuplexRequests:
    """The requests of a full-duplex call, fed one at a time by the case as it alternates
    sending and receiving."""

    def __init__(self, control: CallControl) -> None:
        self._control = control
        # One slot: the call starts (and takes the first message) only when the case first
        # waits for a response, so the first send must not wait for the call.
        self._send, self._receive = anyio.create_memory_object_stream[Any](1)

    async def send(self, message: Any) -> None:
        await self._send.send(message)

    def close_send(self) -> None:
        self._send.close()
        self._control.close_send()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        try:
            message = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            await anyio.lowlevel.checkpoint()
            raise StopAsyncIteration from None
        self._control.sent += 1
        return message


async def _unary(control: CallControl, client: ConformanceServiceClient, **kw: Any) -> None:
    method = control.request.method
    response: Any
    if method == "Unary":
        message = control.single(service_pb2.UnaryRequest)
        control.close_send()
        response = await client.unary(message, **kw)
    elif method == "IdempotentUnary":
        message = control.single(service_pb2.IdempotentUnaryRequest)
        control.close_send()
        response = await client.idempotent_unary(
            message, use_get=control.request.use_get_http_method, **kw
        )
    else:
        message = control.single(service_pb2.UnimplementedRequest)
        control.close_send()
        response = await client.unimplemented(message, **kw)
    payload = getattr(response, "payload", None)
    control.received(payload if payload is not None else service_pb2.ConformancePayload())


async def _client_stream(control: CallControl, client: ConformanceServiceClient, **kw: Any) -> None:
    requests = ScriptedRequests(control, control.unpacked(service_pb2.ClientStreamRequest))
    response = await client.client_stream(requests, **kw)
    control.received(response.payload)


async def _server_stream(control: CallControl, client: ConformanceServiceClient, **kw: Any) -> None:
    message = control.single(service_pb2.ServerStreamRequest)
    async with client.server_stream(message, **kw) as stream:
        control.close_send()
        async for response in stream:
            control.received(response.payload)


async def _half_duplex(control: CallControl, client: ConformanceServiceClient, **kw: Any) -> None:
    requests = ScriptedRequests(control, control.unpacked(service_pb2.BidiStreamRequest))
    async with client.bidi_stream(requests, **kw) as stream:
        async for response in stream:
            control.received(response.payload)


async def _full_duplex(control: CallControl, client: ConformanceServiceClient, **kw: Any) -> None:
    messages = control.unpacked(service_pb2.BidiStreamRequest)
    requests = DuplexRequests(control)
    async with client.bidi_stream(requests, **kw) as stream:
        responses = stream.__aiter__()
        ended = False
        for message in messages:
            if control.delay:
                await anyio.sleep(control.delay)
            await requests.send(message)
            try:
                response = await responses.__anext__()
            except StopAsyncIteration:
                ended = True
                break
            control.received(response.payload)
        requests.close_send()
        if not ended:
            async for response in responses:
                control.received(response.payload)


_CALLS = {
    config_pb2.STREAM_TYPE_UNARY: _unary,
    config_pb2.STREAM_TYPE_CLIENT_STREAM: _client_stream,
    config_pb2.STREAM_TYPE_SERVER_STREAM: _server_stream,
    config_pb2.STREAM_TYPE_HALF_DUPLEX_BIDI_STREAM: _half_duplex,
    config_pb2.STREAM_TYPE_FULL_DUPLEX_BIDI_STREAM: _full_duplex,
}
_METHODS = {
    "Unary": config_pb2.STREAM_TYPE_UNARY,
    "IdempotentUnary": config_pb2.STREAM_TYPE_UNARY,
    "Unimplemented": config_pb2.STREAM_TYPE_UNARY,
    "ClientStream": config_pb2.STREAM_TYPE_CLIENT_STREAM,
    "ServerStream": config_pb2.STREAM_TYPE_SERVER_STREAM,
    "BidiStream": None,
}


async def invoke(request: ClientCompatRequest, http: HTTPClients) -> ClientResponseResult:
    """Makes the case's call; RPC errors and cancellation are part of the result."""
    if request.HasField("raw_request"):
        raise UnsupportedCase("raw requests (the runner sends them only to reference clients)")
    if request.service != SERVICE:
        raise UnsupportedCase(f"service {request.service!r}")
    if request.method not in _METHODS:
        raise UnsupportedCase(f"method {request.method!r}")
    wanted = _METHODS[request.method]
    call = _CALLS.get(request.stream_type)
    if call is None or (wanted is not None and wanted != request.stream_type):
        raise UnsupportedCase(
            f"stream type {config_pb2.StreamType.Name(request.stream_type)} for {request.method}"
        )
    if request.method == "BidiStream" and request.stream_type not in (
        config_pb2.STREAM_TYPE_HALF_DUPLEX_BIDI_STREAM,
        config_pb2.STREAM_TYPE_FULL_DUPLEX_BIDI_STREAM,
    ):
        raise UnsupportedCase("BidiStream needs a bidirectional stream type")
    client = new_client(request, http.get(request))
    headers = Headers()
    add_headers(headers, request.request_headers)
    timeout_ms = request.timeout_ms if request.HasField("timeout_ms") else None
    async with anyio.create_task_group() as timers:
        control = CallControl(request, timers)
        result = control.result
        with ResponseMetadata() as meta:
            try:
                with control.scope:
                    await call(control, client, headers=headers, timeout_ms=timeout_ms)
            except ConnectError as e:
                result.error.CopyFrom(error_to_proto(e))
                unsent = len(request.request_messages) - control.sent
                result.num_unsent_requests = max(unsent, 0)
            if control.scope.cancelled_caught:
                result.error.CopyFrom(canceled_error())
        timers.cancel_scope.cancel()
    result.response_headers.extend(headers_to_proto(meta.headers()))
    result.response_trailers.extend(headers_to_proto(meta.trailers()))
    return result


async def run_case(request: ClientCompatRequest, http: HTTPClients, slots: anyio.Semaphore) -> None:
    try:
        try:
            result = await invoke(request, http)
            response = ClientCompatResponse(test_name=request.test_name, response=result)
        except UnsupportedCase as e:
            response = ClientCompatResponse(test_name=request.test_name)
            response.error.message = f"unsupported: {e}"
        except Exception as e:
            # Not an RPC error: a failure of the client itself, reported with its traceback.
            logger.exception("case %s failed", request.test_name)
            response = ClientCompatResponse(test_name=request.test_name)
            response.error.message = "".join(traceback.format_exception(e))
        write_message(sys.stdout.buffer, response)
    finally:
        slots.release()


async def run(parallel: int) -> None:
    slots = anyio.Semaphore(parallel)
    stdin = sys.stdin.buffer
    with tempfile.TemporaryDirectory(prefix="connect-anyio-conformance-") as tmp:
        http = HTTPClients(Path(tmp))
        try:
            async with anyio.create_task_group() as tg:
                while True:
                    request = await anyio.to_thread.run_sync(
                        read_message, stdin, ClientCompatRequest, abandon_on_cancel=True
                    )
                    if request is None:
                        break
                    await slots.acquire()
                    tg.start_soon(run_case, request, http, slots)
        finally:
            with anyio.CancelScope(shield=True):
                await http.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument(
        "--parallel", type=int, default=16, help="cases in flight at once (default 16)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    anyio.run(run, args.parallel, backend=args.backend)


if __name__ == "__main__":
    main()
