"""Service lifespan: an async generator that yields the service.

It runs up to its ``yield`` on ASGI lifespan startup (before the first call is served) and
finishes on shutdown, on hypercorn (its asyncio and trio workers) and on the native server,
under asyncio and trio.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _support.servers import SERVERS, run_server
from _support.service import Ctx, EchoRequest, EchoResponse, EchoServiceImpl
from connectanyio.testing.v1 import testing_connect

from connect_anyio import Code, ConnectError, serve

pytestmark = pytest.mark.anyio


class Resource:
    """Something a service opens on startup and must close on shutdown (a pool, say)."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.open = True

    def close(self) -> None:
        self.open = False
        self.events.append("cleanup")


class ResourceService(EchoServiceImpl):
    def __init__(self, resource: Resource) -> None:
        super().__init__()
        self.resource = resource

    async def echo(self, request: EchoRequest, ctx: Ctx) -> EchoResponse:
        if not self.resource.open:
            raise ConnectError(Code.UNAVAILABLE, "resource closed")
        return EchoResponse(text=f"{request.text} (resource open)")


async def lifespan(events: list[str]) -> AsyncGenerator[ResourceService, None]:
    """Opens the resource (awaiting, as real startup does), yields the service, closes it."""
    await anyio.lowlevel.checkpoint()
    resource = Resource(events)
    events.append("startup")
    try:
        yield ResourceService(resource)
    finally:
        await anyio.lowlevel.checkpoint()
        resource.close()


@pytest.mark.parametrize("transport", ["h1", "h2c"])
@pytest.mark.parametrize("server", SERVERS)
async def test_startup_before_the_first_call_cleanup_on_shutdown(
    server: str, transport: str
) -> None:
    events: list[str] = []
    app = testing_connect.EchoServiceASGIApplication(lifespan(events))
    assert events == []  # nothing runs before the server starts the lifespan
    async with run_server(app, server=server, transport=transport) as srv:
        async with (
            srv.http_client() as http,
            testing_connect.EchoServiceClient(srv.url, http_client=http) as client,
        ):
            response = await client.echo(EchoRequest(text="hi"))
        assert response.text == "hi (resource open)"
        assert events == ["startup"]
    # The server has stopped: the generator ran to its end.
    assert events == ["startup", "cleanup"]


async def test_requests_before_startup_are_unavailable() -> None:
    """Called before lifespan startup (e.g. mounted where nobody runs its lifespan), the
    application answers 503 and the native server's router refuses as ``unavailable``."""
    events: list[str] = []
    app = testing_connect.EchoServiceASGIApplication(lifespan(events))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/connectanyio.testing.v1.EchoService/Echo",
        "headers": [(b"content-type", b"application/proto")],
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 503
    with pytest.raises(ConnectError) as caught:
        _ = app.router
    assert caught.value.code is Code.UNAVAILABLE
    # Started and shut down by hand (what servers do through the lifespan protocol).
    await app.startup()
    assert events == ["startup"]
    assert app.router.routes
    await app.shutdown()
    assert events == ["startup", "cleanup"]


async def test_asgi_lifespan_messages() -> None:
    """The lifespan protocol as any ASGI server speaks it."""
    events: list[str] = []
    app = testing_connect.EchoServiceASGIApplication(lifespan(events))
    to_app_send, to_app = anyio.create_memory_object_stream[dict[str, Any]](2)
    from_app_send, from_app = anyio.create_memory_object_stream[dict[str, Any]](2)

    async def send(message: Any) -> None:
        await from_app_send.send(dict(message))

    async with to_app_send, to_app, from_app_send, from_app, anyio.create_task_group() as tg:
        tg.start_soon(app, {"type": "lifespan"}, to_app.receive, send)
        with anyio.fail_after(10):
            await to_app_send.send({"type": "lifespan.startup"})
            assert (await from_app.receive())["type"] == "lifespan.startup.complete"
            assert events == ["startup"]
            await to_app_send.send({"type": "lifespan.shutdown"})
            assert (await from_app.receive())["type"] == "lifespan.shutdown.complete"
    assert events == ["startup", "cleanup"]


async def test_startup_failure_stops_the_native_server() -> None:
    async def failing() -> AsyncIterator[EchoServiceImpl]:
        raise OSError("database unreachable")
        yield EchoServiceImpl()

    app = testing_connect.EchoServiceASGIApplication(failing())
    with anyio.fail_after(10), pytest.raises(OSError, match="database unreachable"):
        await serve(app, port=0)


async def test_a_generator_that_yields_twice_is_an_error() -> None:
    events: list[str] = []

    async def twice() -> AsyncIterator[EchoServiceImpl]:
        try:
            yield EchoServiceImpl()
            yield EchoServiceImpl()
        finally:
            events.append("closed")

    app = testing_connect.EchoServiceASGIApplication(twice())
    await app.startup()
    with pytest.raises(RuntimeError, match="yielded more than once"):
        await app.shutdown()
    assert events == ["closed"]
