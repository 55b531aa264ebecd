"""Servers configured beyond what ``_support.servers.run_server`` offers: ALPN restricted
to HTTP/1.1, short idle timeouts, and a graceful shutdown the test starts mid-call.

Also ``VersionRecorder``, an ASGI middleware that records the HTTP version of every
request as the server saw it (the native server serves it as a plain ASGI app).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import sniffio
from _support.tls import TLSFiles
from hypercorn.config import Config

from connect_anyio import ServerLimits, serve


class VersionRecorder:
    """Passes requests to ``app``, noting each one's ``http_version`` ("1.1", "2")."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.versions: list[str] = []

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.versions.append(scope["http_version"])
        await self.app(scope, receive, send)


@dataclass
class Served:
    port: int
    scheme: str
    stop_scope: anyio.CancelScope | None = None
    shutdown_event: anyio.Event = field(default_factory=anyio.Event)
    stopped: anyio.Event = field(default_factory=anyio.Event)
    """Set once the server has returned (graceful shutdown over)."""

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def shutdown(self) -> None:
        """Starts a graceful shutdown (native: GOAWAY, calls in flight finish)."""
        if self.stop_scope is not None:
            self.stop_scope.cancel()
        self.shutdown_event.set()


@asynccontextmanager
async def custom_server(
    app: Any,
    *,
    server: str,
    tls: TLSFiles | None = None,
    alpn: tuple[str, ...] = ("h2", "http/1.1"),
    require_client_cert: bool = False,
    idle_timeout: float | None = None,
    graceful_timeout: float = 10.0,
) -> AsyncIterator[Served]:
    """Serves ``app`` on 127.0.0.1 (port 0) until the block exits or ``shutdown()``."""
    async with anyio.create_task_group() as tg:
        if server == "native":
            context = None
            if tls is not None:
                context = tls.server_context(require_client_cert=require_client_cert)
                context.set_alpn_protocols(list(alpn))
            limits = ServerLimits(
                graceful_timeout=graceful_timeout,
                **({"idle_timeout": idle_timeout} if idle_timeout is not None else {}),
            )
            scope = anyio.CancelScope()
            served: Served

            async def run_native(*, task_status: anyio.abc.TaskStatus[int]) -> None:
                try:
                    with scope:
                        await serve(
                            app,
                            port=0,
                            ssl=context,
                            limits=limits,
                            task_status=_first_port(task_status),
                        )
                finally:
                    served.stopped.set()

            served = Served(0, "https" if tls else "http", stop_scope=scope)
            served.port = await tg.start(run_native)
        elif server == "hypercorn":
            served = Served(0, "https" if tls else "http")
            served.port = _start_hypercorn(
                tg, app, served, tls, alpn, require_client_cert, idle_timeout, graceful_timeout
            )
        else:
            raise ValueError(server)
        try:
            yield served
        finally:
            served.shutdown()
            tg.cancel_scope.deadline = anyio.current_time() + graceful_timeout + 5


class _first_port:
    """Adapts serve()'s ``task_status`` (a list of addresses) to just the port."""

    def __init__(self, outer: anyio.abc.TaskStatus[int]) -> None:
        self._outer = outer

    def started(self, value: list[tuple[str, int]] | None = None) -> None:
        assert value is not None
        self._outer.started(value[0][1])


def _start_hypercorn(
    tg: anyio.abc.TaskGroup,
    app: Any,
    served: Served,
    tls: TLSFiles | None,
    alpn: tuple[str, ...],
    require_client_cert: bool,
    idle_timeout: float | None,
    graceful_timeout: float,
) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port: int = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.loglevel = "WARNING"
    config.graceful_timeout = graceful_timeout
    if idle_timeout is not None:
        config.keep_alive_timeout = idle_timeout
    if tls is not None:
        config.certfile = str(tls.server_cert)
        config.keyfile = str(tls.server_key)
        config.alpn_protocols = list(alpn)
        if require_client_cert:
            config.ca_certs = str(tls.ca)
            config.verify_mode = ssl.CERT_REQUIRED

    async def run() -> None:
        try:
            if sniffio.current_async_library() == "trio":
                import hypercorn.trio

                await hypercorn.trio.serve(app, config, shutdown_trigger=served.shutdown_event.wait)
            else:
                import hypercorn.asyncio

                await hypercorn.asyncio.serve(
                    app, config, shutdown_trigger=served.shutdown_event.wait
                )
        finally:
            served.stopped.set()

    tg.start_soon(run)
    return port
