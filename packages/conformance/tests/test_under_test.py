"""The client and server under test, run as the runner runs them: subprocesses that speak
size-delimited messages on stdin/stdout, on 127.0.0.1, under asyncio and trio.

The official runner is not needed here (it is ``nox -s conformance``); these tests check
that the programs start, answer the runner's protocol and make or serve real calls.
"""

from __future__ import annotations

import signal
import ssl
import struct
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
import trustme
from anyio.abc import Process
from connectrpc.conformance.v1 import client_compat_pb2, config_pb2, server_compat_pb2, service_pb2
from connectrpc.conformance.v1.service_connect import (
    ConformanceServiceASGIApplication,
    ConformanceServiceClient,
)
from google.protobuf import any_pb2

from connect_anyio import Code, ConnectError, HTTPClient, HTTPVersion, ProtocolType, serve
from connect_anyio_conformance._framing import encode_frame
from connect_anyio_conformance.service import ConformanceServer

pytestmark = pytest.mark.anyio

WAIT = 30.0
"""Generous bound on anything a test waits for (startup of a subprocess included)."""


async def _read_exactly(process: Process, size: int) -> bytes:
    assert process.stdout is not None
    data = b""
    while len(data) < size:
        chunk = await process.stdout.receive(size - len(data))
        data += chunk
    return data


async def _read_frame(process: Process) -> bytes | None:
    assert process.stdout is not None
    try:
        prefix = await _read_exactly(process, 4)
    except anyio.EndOfStream:
        return None
    (size,) = struct.unpack(">I", prefix)
    return await _read_exactly(process, size)


@asynccontextmanager
async def _program(module: str, *args: str) -> AsyncIterator[Process]:
    """Runs ``python -m module args``; kills it if the test leaves it running."""
    process = await anyio.open_process(
        [sys.executable, "-m", module, *args], stderr=None, start_new_session=True
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.wait()
            await process.aclose()


def _unary_request(data: bytes, header: tuple[str, str]) -> service_pb2.UnaryRequest:
    return service_pb2.UnaryRequest(
        response_definition=service_pb2.UnaryResponseDefinition(
            response_headers=[service_pb2.Header(name=header[0], value=[header[1]])],
            response_data=data,
        )
    )


# -- the server under test --------------------------------------------------------------


@pytest.mark.parametrize("server", ["native", "hypercorn"])
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_server_under_test(server: str, tls: bool, anyio_backend: str) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    request = server_compat_pb2.ServerCompatRequest(
        protocol=config_pb2.PROTOCOL_CONNECT,
        http_version=config_pb2.HTTP_VERSION_2,
        use_tls=tls,
        message_receive_limit=1024,
    )
    if tls:
        request.server_creds.cert = cert.cert_chain_pems[0].bytes()
        request.server_creds.key = cert.private_key_pem.bytes()
    module = "connect_anyio_conformance.server"
    async with _program(module, "--backend", anyio_backend, "--server", server) as process:
        assert process.stdin is not None
        await process.stdin.send(encode_frame(request))
        with anyio.fail_after(WAIT):
            frame = await _read_frame(process)
        assert frame is not None, "the server under test exited without answering"
        answer = server_compat_pb2.ServerCompatResponse.FromString(frame)
        assert answer.host == "127.0.0.1"
        assert answer.port > 0
        assert answer.pem_cert == (request.server_creds.cert if tls else b"")

        context = None
        if tls:
            # The runner's certificate is self-signed; trustme's has a CA to trust.
            context = ssl.create_default_context(cadata=ca.cert_pem.bytes().decode("ascii"))
        scheme = "https" if tls else "http"
        url = f"{scheme}://{answer.host}:{answer.port}"
        for protocol in ProtocolType:
            http = HTTPClient(http_version=HTTPVersion.HTTP2, ssl_context=context)
            async with (
                ConformanceServiceClient(url, protocol=protocol, http_client=http) as client,
                http,
            ):
                with anyio.fail_after(WAIT):
                    response = await client.unary(
                        _unary_request(b"hello", ("x-answer", "42")),
                        headers={"x-asked": protocol.name},
                    )
                    assert response.payload.data == b"hello"
                    seen = {
                        h.name.lower(): list(h.value)
                        for h in response.payload.request_info.request_headers
                    }
                    assert seen["x-asked"] == [protocol.name]
                    # The runner's receive limit is applied.
                    with pytest.raises(ConnectError) as caught:
                        await client.unary(_unary_request(b"x" * 2000, ("x-a", "b")))
                    assert caught.value.code is Code.RESOURCE_EXHAUSTED

        # The runner stops a server with SIGTERM: it exits on its own, successfully.
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(WAIT):
            assert await process.wait() == 0


# -- the client under test --------------------------------------------------------------


def _case(name: str, port: int, **fields: object) -> client_compat_pb2.ClientCompatRequest:
    return client_compat_pb2.ClientCompatRequest(
        test_name=name,
        http_version=config_pb2.HTTP_VERSION_2,
        protocol=config_pb2.PROTOCOL_GRPC,
        codec=config_pb2.CODEC_PROTO,
        compression=config_pb2.COMPRESSION_GZIP,
        host="127.0.0.1",
        port=port,
        service="connectrpc.conformance.v1.ConformanceService",
        **fields,  # type: ignore[arg-type]
    )


def _packed(message: service_pb2.UnaryRequest | service_pb2.ServerStreamRequest) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


async def test_client_under_test(anyio_backend: str) -> None:
    app = ConformanceServiceASGIApplication(ConformanceServer())
    async with anyio.create_task_group() as tg:
        addresses = await tg.start(lambda task_status: serve(app, port=0, task_status=task_status))
        port = addresses[0][1]
        unary = _case(
            "unary",
            port,
            method="Unary",
            stream_type=config_pb2.STREAM_TYPE_UNARY,
            request_messages=[_packed(_unary_request(b"data", ("x-h", "v")))],
            request_headers=[service_pb2.Header(name="x-req", value=["1"])],
        )
        failing = _case(
            "server stream error",
            port,
            method="ServerStream",
            stream_type=config_pb2.STREAM_TYPE_SERVER_STREAM,
            request_messages=[
                _packed(
                    service_pb2.ServerStreamRequest(
                        response_definition=service_pb2.StreamResponseDefinition(
                            response_data=[b"one", b"two"],
                            error=service_pb2.Error(
                                code=config_pb2.CODE_FAILED_PRECONDITION, message="no"
                            ),
                        )
                    )
                )
            ],
        )
        unsupported = _case("http3", port, method="Unary", stream_type=config_pb2.STREAM_TYPE_UNARY)
        unsupported.http_version = config_pb2.HTTP_VERSION_3

        module = "connect_anyio_conformance.client"
        async with _program(module, "--backend", anyio_backend) as process:
            assert process.stdin is not None
            for case in (unary, failing, unsupported):
                await process.stdin.send(encode_frame(case))
            await process.stdin.aclose()
            results: dict[str, client_compat_pb2.ClientCompatResponse] = {}
            with anyio.fail_after(WAIT):
                while (frame := await _read_frame(process)) is not None:
                    response = client_compat_pb2.ClientCompatResponse.FromString(frame)
                    results[response.test_name] = response
                assert await process.wait() == 0
        tg.cancel_scope.cancel()

    assert set(results) == {"unary", "server stream error", "http3"}
    got = results["unary"].response
    assert [p.data for p in got.payloads] == [b"data"]
    assert {h.name: list(h.value) for h in got.response_headers}.get("x-h") == ["v"]
    seen = {h.name.lower(): list(h.value) for h in got.payloads[0].request_info.request_headers}
    assert seen["x-req"] == ["1"]
    assert not got.HasField("error")

    got = results["server stream error"].response
    assert [p.data for p in got.payloads] == [b"one", b"two"]
    assert (got.error.code, got.error.message) == (config_pb2.CODE_FAILED_PRECONDITION, "no")

    assert results["http3"].WhichOneof("result") == "error"
    assert "HTTP_VERSION_3" in results["http3"].error.message
