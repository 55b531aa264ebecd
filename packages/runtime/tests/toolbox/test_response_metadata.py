"""``ResponseMetadata`` on the async client: headers and trailers of the calls made inside it.

Every stream type over Connect, gRPC and gRPC-Web on every transport they run on, against
hypercorn and the native server, under asyncio and trio; errors; and concurrency: each task
sees its own (it is a context variable), even when two tasks' calls interleave.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from _support.servers import SERVERS, protocol_transports, run_server
from _support.service import EchoRequest, echo_app
from _support.tls import TLSFiles
from connectanyio.testing.v1 import testing_connect

from connect_anyio import Code, ConnectError, Headers, ProtocolType, ResponseMetadata

pytestmark = pytest.mark.anyio

WAIT = 10
Client = testing_connect.EchoServiceClient


@asynccontextmanager
async def serving(
    server: str, protocol: ProtocolType, transport: str, tls: TLSFiles | None = None
) -> AsyncIterator[Client]:
    async with (
        run_server(echo_app(), server=server, transport=transport, tls=tls) as srv,
        srv.http_client() as http,
        Client(srv.url, protocol=protocol, http_client=http) as client,
    ):
        yield client


async def _requests(*texts: str) -> AsyncIterator[EchoRequest]:
    for text in texts:
        yield EchoRequest(text=text)


def _check(meta: ResponseMetadata, value: str) -> None:
    """The server echoes each ``x-test-*`` request header as a header and as a trailer."""
    assert meta.headers().get("x-test-call") == value
    assert meta.trailers().get("x-test-call-trailer") == value
    # Each where it belongs.
    assert "x-test-call-trailer" not in meta.headers()
    assert "x-test-call" not in meta.trailers()


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(
    ("protocol", "transport"), protocol_transports(), ids=lambda v: getattr(v, "value", v)
)
async def test_every_stream_type(
    server: str, protocol: ProtocolType, transport: str, tls_files: TLSFiles
) -> None:
    async with serving(server, protocol, transport, tls_files) as client:
        with ResponseMetadata() as meta:
            await client.echo(EchoRequest(), headers={"x-test-call": "unary"})
        _check(meta, "unary")

        with ResponseMetadata() as meta:
            await client.client_stream(_requests("a", "b"), headers={"x-test-call": "client"})
        _check(meta, "client")

        with ResponseMetadata() as meta:
            async with client.server_stream(
                EchoRequest(response_count=2), headers={"x-test-call": "server"}
            ) as stream:
                await stream.__anext__()
                # Headers as soon as they arrive; trailers only at the end of the stream.
                assert meta.headers()["x-test-call"] == "server"
                assert "x-test-call-trailer" not in meta.trailers()
                assert [r.index async for r in stream] == [1]
        _check(meta, "server")

        with ResponseMetadata() as meta:
            async with client.bidi(_requests("a", "b"), headers={"x-test-call": "bidi"}) as s:
                assert [r.text async for r in s] == ["a", "b"]
        _check(meta, "bidi")


@pytest.mark.parametrize("protocol", list(ProtocolType))
async def test_errors_keep_their_metadata(protocol: ProtocolType) -> None:
    fail = {"code": "not_found", "message": "nope"}
    async with serving("native", protocol, "h2c") as client:
        with ResponseMetadata() as meta, pytest.raises(ConnectError) as unary:
            await client.echo(EchoRequest(fail=fail), headers={"x-test-call": "unary"})
        assert unary.value.code is Code.NOT_FOUND
        # A unary error may arrive without separate headers (gRPC's Trailers-Only): what
        # the server set is there, in the headers or the trailers.
        seen = Headers(meta.headers())
        for key, value in meta.trailers().allitems():
            seen.add(key, value)
        assert seen.get("x-test-call") == "unary"
        assert seen.get("x-test-call-trailer") == "unary"

        with ResponseMetadata() as meta, pytest.raises(ConnectError) as streamed:
            async with client.server_stream(
                EchoRequest(response_count=1, fail=fail), headers={"x-test-call": "stream"}
            ) as stream:
                assert [r.index async for r in stream] == [0]
        assert streamed.value.code is Code.NOT_FOUND
        _check(meta, "stream")


async def test_outside_and_nested() -> None:
    async with serving("native", ProtocolType.CONNECT, "h1") as client:
        # Calls outside any ResponseMetadata record nothing anywhere.
        await client.echo(EchoRequest(), headers={"x-test-call": "before"})
        with ResponseMetadata() as outer:
            assert outer.headers() == Headers()
            assert outer.trailers() == Headers()
            await client.echo(EchoRequest(), headers={"x-test-call": "outer-1"})
            with ResponseMetadata() as inner:
                await client.echo(EchoRequest(), headers={"x-test-call": "inner"})
            # The inner block captured its call; the outer one is back in effect.
            await client.echo(EchoRequest(), headers={"x-test-call": "outer-2"})
        await client.echo(EchoRequest(), headers={"x-test-call": "after"})
    _check(inner, "inner")
    _check(outer, "outer-2")


@pytest.mark.parametrize("server", SERVERS)
async def test_concurrent_tasks_each_see_their_own(server: str) -> None:
    """Two tasks' streams interleave (A's headers, B's headers, A's end, B's end); each
    task's ResponseMetadata holds its own call's values, never the other's."""
    results: dict[str, ResponseMetadata] = {}
    a_has_headers, b_has_headers, a_done = anyio.Event(), anyio.Event(), anyio.Event()

    async def task(name: str, wait_before_end: anyio.Event, my_headers: anyio.Event) -> None:
        with ResponseMetadata() as meta:
            async with client.server_stream(
                EchoRequest(response_count=2), headers={"x-test-call": name}
            ) as stream:
                await stream.__anext__()
                my_headers.set()
                await wait_before_end.wait()
                assert meta.headers()["x-test-call"] == name
                assert [r.index async for r in stream] == [1]
            results[name] = meta
        if name == "A":
            a_done.set()

    async with serving(server, ProtocolType.GRPC, "h2c") as client:
        with anyio.fail_after(WAIT), ResponseMetadata() as parent:
            async with anyio.create_task_group() as tg:
                tg.start_soon(task, "A", b_has_headers, a_has_headers)
                await a_has_headers.wait()
                tg.start_soon(task, "B", a_done, b_has_headers)
    _check(results["A"], "A")
    _check(results["B"], "B")
    # The tasks' own blocks took their calls; the parent's stayed empty.
    assert parent.headers() == Headers()
    assert parent.trailers() == Headers()
