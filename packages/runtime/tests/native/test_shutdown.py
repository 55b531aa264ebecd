"""Graceful shutdown of ``serve()`` with calls in flight, over HTTP/1.1 and h2c.

Cancelling ``serve()`` stops accepting, closes idle connections (HTTP/2 ones with
GOAWAY), lets calls in flight finish, runs the lifespan shutdown after them and returns;
once ``graceful_timeout`` expires, what still runs is cancelled. Nothing is left behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import h2.events
import pytest
from _support.service import EchoRequest
from connectanyio.testing.v1 import testing_connect
from native._helpers import (
    SERVICE,
    WAIT,
    GatedEcho,
    native,
    raw_h1,
    raw_h2,
    request_head,
)

from connect_anyio import Code, ConnectError, HTTPClient, HTTPVersion, ServerLimits

pytestmark = pytest.mark.anyio

TRANSPORTS = ["h1", "h2c"]
FAR = 3600.0
Client = testing_connect.EchoServiceClient


def lifespan_app(
    service: GatedEcho, events: list[str]
) -> testing_connect.EchoServiceASGIApplication:
    async def lifespan() -> AsyncIterator[GatedEcho]:
        events.append("startup")
        yield service
        events.append("shutdown")

    return testing_connect.EchoServiceASGIApplication(lifespan())


class Observer:
    """An idle connection that sees the shutdown begin (HTTP/1.1: closed; HTTP/2: GOAWAY,
    then closed). The server closes its listeners before it tells connections, so once
    this has seen the shutdown, new connections are refused."""

    def __init__(self, transport: str, port: int) -> None:
        self.transport = transport
        self.port = port
        self.saw_shutdown = anyio.Event()

    async def wait(self) -> None:
        with anyio.fail_after(WAIT):
            await self.saw_shutdown.wait()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        if self.transport == "h1":
            async with raw_h1(self.port) as conn:
                body = b'{"text": "observer"}'
                head = request_head(
                    "POST",
                    SERVICE + "/EchoPost",
                    [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
                )
                await conn.send(head + body)
                conn.expect()
                assert (await conn.response()).status == 200
                task_status.started()
                assert await conn.closed() == b""
        else:
            async with raw_h2(self.port) as client:
                await client.wait_for(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
                task_status.started()
                goaway = await client.wait_for(
                    lambda e: isinstance(e, h2.events.ConnectionTerminated)
                )
                assert goaway.error_code == 0
                await client.wait_closed()
        self.saw_shutdown.set()


def http_client(transport: str) -> HTTPClient:
    version = HTTPVersion.HTTP1 if transport == "h1" else HTTPVersion.HTTP2
    return HTTPClient(http_version=version)


async def _refused(port: int) -> None:
    with pytest.raises(OSError):
        stream = await anyio.connect_tcp("127.0.0.1", port)
        await stream.aclose()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_cancelling_serve_lets_calls_in_flight_finish(transport: str) -> None:
    baseline = len(anyio.get_running_tasks())
    service = GatedEcho()
    obs = service.observations
    events: list[str] = []
    limits = ServerLimits(graceful_timeout=FAR)  # only finished calls can end the shutdown
    async with (
        native(lifespan_app(service, events), limits=limits) as srv,
        http_client(transport) as http,
        Client(f"http://127.0.0.1:{srv.port}", http_client=http) as client,
        anyio.create_task_group() as tg,
    ):
        observer = Observer(transport, srv.port)
        await tg.start(observer.run)
        results: dict[str, Any] = {}

        async def unary() -> None:
            results["unary"] = await client.echo_post(
                EchoRequest(text="in flight", tag="unary", wait_for_cancel=True)
            )
            events.append("call finished")

        tg.start_soon(unary)
        more = anyio.Event()

        async def requests() -> AsyncIterator[EchoRequest]:
            yield EchoRequest(text="before")
            await more.wait()
            yield EchoRequest(text="during shutdown")

        with anyio.fail_after(WAIT):
            await obs.started["unary"].wait()
        if transport == "h2c":
            # A full-duplex stream on the same connection goes on talking through it.
            async with client.bidi(requests()) as stream:
                assert (await stream.__anext__()).text == "before"
                srv.stop()
                await observer.wait()
                more.set()
                assert [r.text async for r in stream] == ["during shutdown"]
        else:
            srv.stop()
            await observer.wait()
        await _refused(srv.port)
        # New calls cannot reach the server any more: cleanly refused.
        with pytest.raises(ConnectError) as refused:
            await client.echo_post(EchoRequest(text="too late"))
        assert refused.value.code is Code.UNAVAILABLE
        assert not srv.done.is_set()  # still waiting for the call in flight
        assert events == ["startup"]
        service.release("unary")
        await srv.wait_stopped()
        assert results["unary"].text == "in flight"
        assert not obs.cancelled["unary"].is_set()
        # The lifespan shut down after the last call, not before.
        assert events == ["startup", "call finished", "shutdown"]
    assert service.active == 0
    await _tasks_back_to(baseline)


async def _tasks_back_to(baseline: int) -> None:
    with anyio.fail_after(WAIT):
        while len(anyio.get_running_tasks()) > baseline:  # noqa: ASYNC110 (no event for this)
            await anyio.sleep(0.01)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_grace_period_expiry_cancels_what_is_left(transport: str) -> None:
    baseline = len(anyio.get_running_tasks())
    service = GatedEcho()
    obs = service.observations
    events: list[str] = []
    limits = ServerLimits(graceful_timeout=0.2)
    async with (
        native(lifespan_app(service, events), limits=limits) as srv,
        http_client(transport) as http,
        Client(f"http://127.0.0.1:{srv.port}", http_client=http) as client,
    ):
        errors: list[ConnectError] = []

        async def stuck(tag: str) -> None:
            try:
                await client.echo_post(EchoRequest(tag=tag, wait_for_cancel=True))
            except ConnectError as e:
                errors.append(e)

        async with anyio.create_task_group() as tg:
            tags = ["stuck-1", "stuck-2"] if transport == "h2c" else ["stuck-1"]
            for tag in tags:
                tg.start_soon(stuck, tag)
            for tag in tags:
                with anyio.fail_after(WAIT):
                    await obs.started[tag].wait()
            srv.stop()
            for tag in tags:
                await obs.wait_cancelled(tag)
            await srv.wait_stopped()
        # The client learns that the server went away, precisely.
        assert [e.code for e in errors] == [Code.UNAVAILABLE] * len(tags)
        assert events == ["startup", "shutdown"]
    assert service.active == 0
    await _tasks_back_to(baseline)


async def test_stopping_an_idle_server_returns_at_once() -> None:
    """Nothing in flight: serve() returns without waiting for the grace period."""
    limits = ServerLimits(graceful_timeout=FAR)
    async with native(lifespan_app(GatedEcho(), []), limits=limits) as srv:
        async with raw_h1(srv.port) as idle_h1, raw_h2(srv.port) as idle_h2:
            await idle_h2.wait_for(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
            srv.stop()
            await srv.wait_stopped()
            await idle_h1.closed()
            await idle_h2.wait_closed()
        await _refused(srv.port)
