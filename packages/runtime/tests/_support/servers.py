"""Run an application on a real server on 127.0.0.1 (port 0) for the duration of a test.

Two servers: hypercorn (its asyncio or trio worker, matching the test's backend)
and our native server. Three transports: plain HTTP/1.1, h2c (HTTP/2 with prior
knowledge; both servers accept both on one port) and TLS (ALPN picks h2).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import sniffio
from hypercorn.config import Config

from connect_anyio import HTTPClient, HTTPVersion, ProtocolType, ServerLimits, serve

from .tls import TLSFiles

SERVERS = ("hypercorn", "native")
TRANSPORTS = ("h1", "h2c", "tls")


@dataclass
class RunningServer:
    url: str
    server: str
    transport: str
    tls: TLSFiles | None

    def http_client(
        self, *, client_cert: bool = False, version: HTTPVersion | None = None
    ) -> HTTPClient:
        """An HTTP client for this server's transport (HTTP/1.1, h2c, TLS trusting the test CA)."""
        if version is None:
            version = {"h1": HTTPVersion.HTTP1, "h2c": HTTPVersion.HTTP2, "tls": HTTPVersion.AUTO}[
                self.transport
            ]
        context = None
        if self.tls is not None:
            context = self.tls.client_context(with_client_cert=client_cert)
        return HTTPClient(http_version=version, ssl_context=context)

    @property
    def http2(self) -> bool:
        return self.transport != "h1"


@asynccontextmanager
async def run_server(
    app: Any,
    *,
    server: str,
    transport: str,
    tls: TLSFiles | None = None,
    require_client_cert: bool = False,
    **native_options: Any,
) -> AsyncIterator[RunningServer]:
    """Serves ``app`` until the block exits; yields where to reach it."""
    use_tls = transport == "tls"
    if use_tls and tls is None:
        raise ValueError("the tls transport needs TLSFiles")
    scheme = "https" if use_tls else "http"
    shutdown = anyio.Event()
    stop: Callable[[], None]
    async with anyio.create_task_group() as tg:
        if server == "native":
            context = None
            if use_tls and tls is not None:
                context = tls.server_context(require_client_cert=require_client_cert)
            native_options.setdefault("limits", ServerLimits(graceful_timeout=0.5))
            native_scope = anyio.CancelScope()

            async def run_native(*, task_status: anyio.abc.TaskStatus[Any]) -> None:
                with native_scope:
                    await serve(app, port=0, ssl=context, task_status=task_status, **native_options)

            addresses = await tg.start(run_native)
            port = addresses[0][1]
            stop = native_scope.cancel
        elif server == "hypercorn":
            port = await _start_hypercorn(
                tg, app, tls if use_tls else None, require_client_cert, shutdown
            )
            stop = shutdown.set
        else:
            raise ValueError(server)
        try:
            yield RunningServer(f"{scheme}://127.0.0.1:{port}", server, transport, tls)
        finally:
            # Both servers stop gracefully and return on their own; the deadline
            # is only a backstop so a broken shutdown cannot hang the suite.
            stop()
            tg.cancel_scope.deadline = anyio.current_time() + 10


async def _start_hypercorn(
    tg: anyio.abc.TaskGroup,
    app: Any,
    tls: TLSFiles | None,
    require_client_cert: bool,
    shutdown: anyio.Event,
) -> int:
    # Bind first (port 0), then hand the socket over: no race for the port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port: int = sock.getsockname()[1]
    config = Config()
    # detach(): hypercorn takes ownership of the descriptor (our object must not close it).
    config.bind = [f"fd://{sock.detach()}"]
    config.loglevel = "WARNING"
    config.graceful_timeout = 1
    if tls is not None:
        # hypercorn serves TLS on "insecure" binds only through its ssl settings.
        config.certfile = str(tls.server_cert)
        config.keyfile = str(tls.server_key)
        config.alpn_protocols = ["h2", "http/1.1"]
        if require_client_cert:
            config.ca_certs = str(tls.ca)
            config.verify_mode = ssl.CERT_REQUIRED
    if sniffio.current_async_library() == "trio":
        import hypercorn.trio

        tg.start_soon(lambda: hypercorn.trio.serve(app, config, shutdown_trigger=shutdown.wait))
    else:
        import hypercorn.asyncio

        tg.start_soon(lambda: hypercorn.asyncio.serve(app, config, shutdown_trigger=shutdown.wait))
    return port


def protocol_transports() -> list[tuple[ProtocolType, str]]:
    """Every (protocol, transport) pair that exists: gRPC only runs on HTTP/2."""
    return [
        (protocol, transport)
        for protocol in ProtocolType
        for transport in TRANSPORTS
        if not (protocol is ProtocolType.GRPC and transport == "h1")
    ]
