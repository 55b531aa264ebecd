"""Which application answers a request: Connect routes directly, anything else via ASGI."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import anyio

from .._protocol import ResponseStart, WholeResponse
from .._server_core import Disconnected, Router, ServerIO
from ..request import Headers
from ..server import ConnectASGIApplication

logger = logging.getLogger("connect_anyio.serve")

ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]


@dataclass(slots=True)
class Request:
    """A request head as a connection parsed it."""

    method: str
    target: bytes
    raw_headers: list[tuple[bytes, bytes]]
    http_version: str
    scheme: str
    client: tuple[str, int] | None
    server: tuple[str, int] | None

    @property
    def path_and_query(self) -> tuple[str, str]:
        raw_path, _, query = self.target.partition(b"?")
        return raw_path.decode("latin-1"), query.decode("latin-1")


def _fmt(address: tuple[str, int] | None) -> str | None:
    if address is None:
        return None
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Dispatcher:
    """Routes requests to Connect applications (no ASGI dicts) or to a plain ASGI app."""

    def __init__(self, apps: Sequence[Any]) -> None:
        self._connect_apps: list[ConnectASGIApplication[Any]] = []
        self._asgi_apps: list[ASGIApp] = []
        for app in apps:
            if isinstance(app, ConnectASGIApplication):
                self._connect_apps.append(app)
            elif callable(app):
                self._asgi_apps.append(app)
            else:
                raise TypeError(f"not an application: {app!r}")
        if not apps:
            raise ValueError("serve() needs at least one application")
        if len(self._asgi_apps) > 1:
            raise ValueError(
                "serve() takes at most one plain ASGI app (it gets every path that no Connect "
                "application has); mount several in one router, such as Starlette's"
            )
        self._routes: dict[str, Router] = {}
        self._fallback: Router | None = None
        self._lifespans: list[_ASGILifespan] = []

    async def startup(self) -> None:
        for app in self._connect_apps:
            await app.startup()
            router = app.router
            if self._fallback is None:
                self._fallback = router
            for path in router.routes:
                self._routes.setdefault(path, router)
        for asgi in self._asgi_apps:
            lifespan = _ASGILifespan(asgi)
            await lifespan.startup()
            self._lifespans.append(lifespan)

    async def shutdown(self) -> None:
        """Shuts every lifespan down, shielded from cancellation; then ends the lifespan tasks
        (outside the shield: their task groups were entered before it)."""
        with anyio.CancelScope(shield=True):
            for lifespan in reversed(self._lifespans):
                await lifespan.shutdown()
            for app in reversed(self._connect_apps):
                await app.shutdown()
        for lifespan in reversed(self._lifespans):
            await lifespan.close()

    async def handle(self, request: Request, io: ServerIO, trailers: bool) -> None:
        path, query = request.path_and_query
        router = self._routes.get(path)
        if router is None and self._asgi_apps:
            await serve_asgi(self._asgi_apps[0], request, io, trailers)
            return
        router = router or self._fallback
        if router is None:
            await _not_found(io)
            return
        headers = Headers._from_wire(request.raw_headers)
        await router.handle(
            path=path,
            http_method=request.method,
            query=query,
            headers=headers,
            io=io,
            server_address=headers.get("host") or _fmt(request.server),
            client_address=_fmt(request.client),
            http_version=request.http_version,
            trailers=trailers,
        )


async def _not_found(io: ServerIO) -> None:
    start = ResponseStart(404, [(b"content-type", b"text/plain; charset=utf-8")])
    response = WholeResponse(start, b"404 Not Found\n")
    await io.send_start(response.start, response.body, True)


# ---------------------------------------------------------------------------
# plain ASGI apps on native connections


async def serve_asgi(app: ASGIApp, request: Request, io: ServerIO, trailers: bool) -> None:
    raw_path, query = request.target.partition(b"?")[::2]
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": request.http_version,
        "method": request.method,
        "scheme": request.scheme,
        "path": unquote(raw_path.decode("latin-1")),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": request.raw_headers,
        "client": request.client,
        "server": request.server,
        "extensions": {"http.response.trailers": {}} if trailers else {},
    }
    state = _ASGIState(io)
    try:
        await app(scope, state.receive, state.send)
    except Disconnected:
        return
    except Exception:
        # Answered with a 500 if nothing was sent yet; else the connection cuts the
        # response short (HTTP/1.1: closed; HTTP/2: RST_STREAM), never leaving it hanging.
        logger.exception("ASGI application failed")
    if not state.started:
        start = ResponseStart(500, [(b"content-type", b"text/plain; charset=utf-8")])
        await io.send_start(start, b"500 Internal Server Error\n", True)


class _ASGIState:
    def __init__(self, io: ServerIO) -> None:
        self.io = io
        self.started = False
        self.start: ResponseStart | None = None
        self.body_done = False
        self.disconnected = False

    async def receive(self) -> MutableMapping[str, Any]:
        if not self.body_done:
            try:
                body = await self.io.receive()
            except Disconnected:
                self.body_done = True
                self.disconnected = True
                return {"type": "http.disconnect"}
            if not body:
                self.body_done = True
            return {"type": "http.request", "body": body, "more_body": bool(body)}
        if not self.disconnected:
            with contextlib.suppress(Disconnected):
                await self.io.wait_disconnect()
            self.disconnected = True
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.start = ResponseStart(
                int(message["status"]),
                [(bytes(k).lower(), bytes(v)) for k, v in message.get("headers", [])],
                trailers=bool(message.get("trailers", False)),
            )
        elif kind == "http.response.body":
            body = bytes(message.get("body", b""))
            end = not message.get("more_body", False)
            if not self.started:
                if self.start is None:
                    raise RuntimeError("http.response.body before http.response.start")
                self.started = True
                await self.io.send_start(self.start, body, end)
            else:
                await self.io.send_body(body, end)
        elif kind == "http.response.trailers":
            await self.io.send_trailers(
                [(bytes(k).lower(), bytes(v)) for k, v in message["headers"]]
            )


class _ASGILifespan:
    """Runs a plain ASGI app's lifespan protocol, if it has one."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._to_app_send, self._to_app = anyio.create_memory_object_stream[dict[str, Any]](2)
        self._from_app_send, self._from_app = anyio.create_memory_object_stream[dict[str, Any]](2)
        self._task_group: anyio.abc.TaskGroup | None = None
        # The app's lifespan must outlive a cancelled serve() long enough to shut down.
        self._scope = anyio.CancelScope(shield=True)
        self._supported = False

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}

        async def receive() -> dict[str, Any]:
            return await self._to_app.receive()

        async def send(message: MutableMapping[str, Any]) -> None:
            await self._from_app_send.send(dict(message))

        try:
            with self._scope:
                await self._app(scope, receive, send)
        except Exception:
            if self._supported:
                logger.exception("ASGI lifespan failed")
        finally:
            self._from_app_send.close()
            self._to_app.close()

    async def startup(self) -> None:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._run)
        try:
            await self._to_app_send.send({"type": "lifespan.startup"})
            reply = await self._from_app.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            # The app does not do lifespan: it returned (or raised) without an answer,
            # maybe before it was even asked.
            return
        if reply["type"] == "lifespan.startup.failed":
            await self.close()
            raise RuntimeError(f"ASGI lifespan startup failed: {reply.get('message', '')}")
        self._supported = True

    async def shutdown(self) -> None:
        """Sends the app ``lifespan.shutdown`` and waits for its answer (10 s at most)."""
        if self._supported and self._task_group is not None:
            with (
                anyio.move_on_after(10),
                contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError),
            ):
                await self._to_app_send.send({"type": "lifespan.shutdown"})
                await self._from_app.receive()

    async def close(self) -> None:
        """Ends the lifespan task. Call it where ``startup`` ran, outside any scope entered
        since (the task group it exits was entered there)."""
        task_group, self._task_group = self._task_group, None
        self._to_app_send.close()
        self._from_app.close()
        if task_group is not None:
            self._scope.cancel()
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
