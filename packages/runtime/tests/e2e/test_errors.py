"""Errors end to end, in all three protocols: code, message and details survive; errors
mid-stream come after the messages already sent, with the trailers; a handler's own
exception is ``internal`` without leaking its text."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import anyio
import pytest
from _support.servers import SERVERS, protocol_transports, run_server
from _support.service import Ctx, EchoRequest, EchoResponse, EchoServiceImpl, echo_app
from _support.tls import TLSFiles
from connectanyio.testing.v1 import testing_connect, testing_pb2
from google.protobuf import wrappers_pb2

from connect_anyio import Code, ConnectError, ProtocolType, ResponseMetadata

pytestmark = pytest.mark.anyio

PAIRS = protocol_transports()
PAIR_IDS = [f"{p.name.lower()}-{t}" for p, t in PAIRS]
Client = testing_connect.EchoServiceClient
METADATA = {"x-test-m": "meta"}
FAILURE = testing_pb2.Failure(
    code="resource_exhausted", message="out of hats: 100% \u2603", details=["one", "two"]
)


class _FailAtEnd(EchoServiceImpl):
    """Streams of requests fail only once the request stream has ended.

    hypercorn's HTTP/2 crashes the connection (``KeyError`` in ``_handle_events``) when
    request data arrives on a stream whose response is complete, so on hypercorn the
    server must not answer before the client has finished sending; failing at the end
    keeps these tests deterministic on every server.
    """

    async def client_stream(self, request: AsyncIterator[EchoRequest], ctx: Ctx) -> EchoResponse:
        messages = [m async for m in request]
        return await super().client_stream(_replay(messages), ctx)

    async def bidi(
        self, request: AsyncIterator[EchoRequest], ctx: Ctx
    ) -> AsyncIterator[EchoResponse]:
        messages = [m async for m in request]
        async for response in super().bidi(_replay(messages), ctx):
            yield response


class _replay:
    """Replays messages; an iterator, not a generator, so stopping early leaks nothing."""

    def __init__(self, messages: list[EchoRequest]) -> None:
        self._messages = iter(messages)

    def __aiter__(self) -> _replay:
        return self

    async def __anext__(self) -> EchoRequest:
        try:
            return next(self._messages)
        except StopIteration:
            raise StopAsyncIteration from None


def _app() -> Any:
    return testing_connect.EchoServiceASGIApplication(_FailAtEnd())


def _check_failure(error: ConnectError) -> None:
    assert error.code is Code.RESOURCE_EXHAUSTED
    assert error.message == "out of hats: 100% \u2603"
    assert [d.value for d in error.unpack_details(wrappers_pb2.StringValue)] == ["one", "two"]
    assert [d.type_url for d in error.details] == [
        "type.googleapis.com/google.protobuf.StringValue"
    ] * 2
    # Headers and trailers set by the handler come with the error.
    assert error.metadata["x-test-m"] == "meta"
    assert error.metadata["x-test-m-trailer"] == "meta"


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(("protocol", "transport"), PAIRS, ids=PAIR_IDS)
async def test_errors_with_details_in_every_stream_type(
    protocol: ProtocolType, transport: str, server: str, tls_files: TLSFiles
) -> None:
    failing = EchoRequest(text="f", fail=FAILURE)

    async def requests(*messages: EchoRequest) -> AsyncIterator[EchoRequest]:
        for message in messages:
            yield message

    async with (
        run_server(_app(), server=server, transport=transport, tls=tls_files) as srv,
        srv.http_client() as http,
        Client(srv.url, protocol=protocol, http_client=http) as client,
    ):
        with ResponseMetadata() as meta, pytest.raises(ConnectError) as info:
            await client.echo_post(failing, headers=METADATA)
        _check_failure(info.value)
        assert meta.trailers()["x-test-m-trailer"] == "meta"

        with pytest.raises(ConnectError) as info:
            await client.client_stream(requests(EchoRequest(), failing), headers=METADATA)
        _check_failure(info.value)

        # Server stream failing before its first message (gRPC: trailers-only).
        with pytest.raises(ConnectError) as info:
            async with client.server_stream(failing, headers=METADATA) as stream:
                assert [r async for r in stream] == []
        _check_failure(info.value)

        with pytest.raises(ConnectError) as info:
            async with client.bidi(requests(failing), headers=METADATA) as stream:
                assert [r async for r in stream] == []
        _check_failure(info.value)

        # Every code round-trips (spot check the numbers that differ most by protocol).
        for code in (Code.CANCELED, Code.UNKNOWN, Code.UNAUTHENTICATED, Code.DATA_LOSS):
            request = EchoRequest(fail=testing_pb2.Failure(code=code.value, message=code.value))
            with pytest.raises(ConnectError) as info:
                await client.echo_post(request)
            assert (info.value.code, info.value.message) == (code, code.value)


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(("protocol", "transport"), PAIRS, ids=PAIR_IDS)
async def test_error_mid_stream_after_messages(
    protocol: ProtocolType, transport: str, server: str, tls_files: TLSFiles
) -> None:
    async with (
        run_server(_app(), server=server, transport=transport, tls=tls_files) as srv,
        srv.http_client() as http,
        Client(srv.url, protocol=protocol, http_client=http) as client,
    ):
        received: list[int] = []
        request = EchoRequest(text="s", response_count=3, fail=FAILURE)
        with ResponseMetadata() as meta, pytest.raises(ConnectError) as info:
            async with client.server_stream(request, headers=METADATA) as stream:
                async for response in stream:
                    received.append(response.index)
        assert received == [0, 1, 2]
        _check_failure(info.value)
        assert meta.headers()["x-test-m"] == "meta"
        assert meta.trailers()["x-test-m-trailer"] == "meta"
        assert stream.response_trailers()["x-test-m-trailer"] == "meta"

        async def requests() -> AsyncIterator[EchoRequest]:
            yield EchoRequest(text="a")
            yield EchoRequest(text="b", response_count=2)
            yield EchoRequest(text="c", fail=FAILURE)

        texts: list[str] = []
        with ResponseMetadata() as meta, pytest.raises(ConnectError) as info:
            async with client.bidi(requests(), headers=METADATA) as stream:
                async for response in stream:
                    texts.append(response.text)
        assert texts == ["a", "b", "b"]
        _check_failure(info.value)
        assert meta.trailers()["x-test-m-trailer"] == "meta"


@pytest.mark.parametrize(("protocol", "transport"), PAIRS, ids=PAIR_IDS)
async def test_native_fails_a_stream_while_the_client_is_still_sending(
    protocol: ProtocolType, transport: str, tls_files: TLSFiles
) -> None:
    """The handler fails on a message the moment it arrives, with more requests coming.

    Native server only: hypercorn's HTTP/2 crashes the connection when request data
    arrives after the response has ended (see ``_FailAtEnd``).
    """
    more = anyio.Event()

    async def requests() -> AsyncGenerator[EchoRequest, None]:
        yield EchoRequest(text="a")
        yield EchoRequest(text="c", fail=FAILURE)
        if transport == "h1":
            return  # half duplex: the request must end before the response starts
        await more.wait()
        for _ in range(100):
            yield EchoRequest(text="never answered", payload=b"p" * 1000)

    async with (
        run_server(echo_app(), server="native", transport=transport, tls=tls_files) as srv,
        srv.http_client() as http,
        Client(srv.url, protocol=protocol, http_client=http) as client,
    ):
        texts: list[str] = []
        # The client stops reading our generator when the server gives up: ours to close.
        async with aclosing(requests()) as bidi_requests:
            with pytest.raises(ConnectError) as info:
                async with client.bidi(bidi_requests, headers=METADATA) as stream:
                    async for response in stream:
                        texts.append(response.text)
                        more.set()
        assert texts == ["a"]
        _check_failure(info.value)
        async with aclosing(requests()) as client_requests:
            with pytest.raises(ConnectError) as info:
                await client.client_stream(client_requests, headers=METADATA)
        _check_failure(info.value)
        assert (await client.echo_post(EchoRequest(text="still fine"))).text == "still fine"


class _Broken(EchoServiceImpl):
    """Raises an exception that is not a ConnectError, after one message for streams."""

    SECRET = "secret-token-8472 /etc/passwd"

    async def echo_post(self, request: EchoRequest, ctx: Ctx) -> EchoResponse:
        raise RuntimeError(self.SECRET)

    async def server_stream(self, request: EchoRequest, ctx: Ctx) -> AsyncIterator[EchoResponse]:
        yield EchoResponse(text="before")
        raise KeyError(self.SECRET)

    # Streams of requests fail once the requests have ended (see ``_FailAtEnd``).
    async def client_stream(self, request: AsyncIterator[EchoRequest], ctx: Ctx) -> EchoResponse:
        async for _ in request:
            pass
        raise ValueError(self.SECRET)

    async def bidi(
        self, request: AsyncIterator[EchoRequest], ctx: Ctx
    ) -> AsyncIterator[EchoResponse]:
        async for message in request:
            yield EchoResponse(text=message.text)
        raise ZeroDivisionError(self.SECRET)


def _check_internal(error: ConnectError) -> None:
    assert error.code is Code.INTERNAL
    for leak in (_Broken.SECRET, "secret", "Traceback", "Error", "passwd"):
        assert leak not in error.message
    assert list(error.details) == []
    for _, value in error.metadata.allitems():
        assert "secret" not in value


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(("protocol", "transport"), PAIRS, ids=PAIR_IDS)
async def test_handler_exception_is_internal_without_leaking(
    protocol: ProtocolType,
    transport: str,
    server: str,
    tls_files: TLSFiles,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = testing_connect.EchoServiceASGIApplication(_Broken())

    async def one() -> AsyncIterator[EchoRequest]:
        yield EchoRequest(text="x")

    caplog.set_level(logging.ERROR, logger="connect_anyio")
    async with (
        run_server(app, server=server, transport=transport, tls=tls_files) as srv,
        srv.http_client() as http,
        Client(srv.url, protocol=protocol, http_client=http) as client,
    ):
        with pytest.raises(ConnectError) as info:
            await client.echo_post(EchoRequest())
        _check_internal(info.value)

        with pytest.raises(ConnectError) as info:
            await client.client_stream(one())
        _check_internal(info.value)

        texts: list[str] = []
        streams: list[Any] = [client.server_stream(EchoRequest()), client.bidi(one())]
        for stream in streams:
            with pytest.raises(ConnectError) as info:
                async with stream:
                    async for response in stream:
                        texts.append(response.text)
            _check_internal(info.value)
        assert texts == ["before", "x"]
    # ... but the server logged it, with the traceback.
    logged = [r for r in caplog.records if r.exc_info and _Broken.SECRET in str(r.exc_info[1])]
    assert {type(r.exc_info[1]) for r in logged if r.exc_info} == {
        RuntimeError,
        KeyError,
        ValueError,
        ZeroDivisionError,
    }
