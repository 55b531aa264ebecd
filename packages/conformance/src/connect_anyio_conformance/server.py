"""The server under test: ``connect-anyio-conformance-server --backend asyncio|trio
--server hypercorn|native``.

Reads one size-delimited ``ServerCompatRequest`` from stdin, starts ConformanceService
on 127.0.0.1 (an ephemeral port) with the HTTP version, TLS and client-certificate
settings asked for, writes a ``ServerCompatResponse`` (host, port, PEM certificate) to
stdout, then serves until SIGTERM or SIGINT. Both servers speak HTTP/1.1 and HTTP/2 on
the one port (h2c by prior knowledge, or ALPN under TLS) and all three protocols.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import ssl
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
import sniffio
from anyio.abc import TaskStatus
from connectrpc.conformance.v1 import server_compat_pb2
from connectrpc.conformance.v1.service_connect import ConformanceServiceASGIApplication

from connect_anyio import ServerLimits, serve, server_tls_context

from ._framing import read_message, write_message
from .service import ConformanceServer

logger = logging.getLogger("connect_anyio_conformance.server")

HOST = "127.0.0.1"

SHUTDOWN_GRACE_SECONDS = 1.0
"""The runner stops a server with SIGTERM once its cases are done: nothing is left to drain."""


class _TLSFiles:
    """The runner's PEM credentials as files: Python's ssl loads certificates from paths."""

    def __init__(self, directory: Path, request: server_compat_pb2.ServerCompatRequest) -> None:
        self.cert = directory / "server.crt"
        self.key = directory / "server.key"
        self.cert.write_bytes(request.server_creds.cert)
        self.key.write_bytes(request.server_creds.key)
        self.client_ca: Path | None = None
        if request.client_tls_cert:
            self.client_ca = directory / "client-ca.crt"
            self.client_ca.write_bytes(request.client_tls_cert)


def build_app(request: server_compat_pb2.ServerCompatRequest) -> ConformanceServiceASGIApplication:
    """The application, with the message receive limit the runner asks for (0: none)."""
    return ConformanceServiceASGIApplication(
        ConformanceServer(), read_max_bytes=request.message_receive_limit or None
    )


async def _serve_native(
    request: server_compat_pb2.ServerCompatRequest,
    tls: _TLSFiles | None,
    stop: anyio.Event,
    *,
    task_status: TaskStatus[int],
) -> None:
    context = None
    if tls is not None:
        context = server_tls_context(
            str(tls.cert),
            str(tls.key),
            client_ca=str(tls.client_ca) if tls.client_ca else None,
        )
    limits = ServerLimits(graceful_timeout=SHUTDOWN_GRACE_SECONDS)
    async with anyio.create_task_group() as tg:
        addresses = await tg.start(
            lambda *, task_status: serve(
                build_app(request),
                host=HOST,
                port=0,
                ssl=context,
                limits=limits,
                task_status=task_status,
            )
        )
        task_status.started(addresses[0][1])
        await stop.wait()
        # serve() shuts down gracefully when cancelled.
        tg.cancel_scope.cancel()


async def _serve_hypercorn(
    request: server_compat_pb2.ServerCompatRequest,
    tls: _TLSFiles | None,
    backend: str,
    stop: anyio.Event,
    *,
    task_status: TaskStatus[int],
) -> None:
    from hypercorn.config import Config

    # Bind first so the port is known before hypercorn starts; hypercorn adopts the socket.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    # Listening before the port is reported: connections made before hypercorn is ready
    # wait in the backlog instead of being refused.
    sock.listen(1024)
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.graceful_timeout = SHUTDOWN_GRACE_SECONDS
    config.accesslog = None
    config.loglevel = "WARNING"  # not "Running on ..." for every server the runner starts
    if tls is not None:
        config.certfile = str(tls.cert)
        config.keyfile = str(tls.key)
        if tls.client_ca is not None:
            config.ca_certs = str(tls.client_ca)
            config.verify_mode = ssl.CERT_REQUIRED
    serve_hypercorn: Callable[..., Coroutine[Any, Any, None]]
    if backend == "trio":
        from hypercorn.trio import serve as serve_hypercorn
    else:
        from hypercorn.asyncio import serve as serve_hypercorn
    app = build_app(request)
    task_status.started(port)
    # Returns once ``stop`` is set and hypercorn has shut down gracefully. Never cancel
    # it instead: hypercorn's asyncio worker fails when cancelled while draining.
    await serve_hypercorn(app, config, shutdown_trigger=stop.wait)


async def serve_conformance(
    request: server_compat_pb2.ServerCompatRequest,
    *,
    server: str,
    directory: Path,
    stop: anyio.Event,
    task_status: TaskStatus[server_compat_pb2.ServerCompatResponse],
) -> None:
    """Serves as ``request`` asks until ``stop`` is set; reports where, as the runner wants it.

    ``directory`` receives the TLS material (it must outlive the server).
    """
    tls = _TLSFiles(directory, request) if request.use_tls else None
    async with anyio.create_task_group() as tg:
        if server == "native":
            port = await tg.start(_serve_native, request, tls, stop)
        elif server == "hypercorn":
            port = await tg.start(
                _serve_hypercorn, request, tls, sniffio.current_async_library(), stop
            )
        else:
            raise ValueError(f"unknown server {server!r}")
        response = server_compat_pb2.ServerCompatResponse(host=HOST, port=port)
        if request.use_tls:
            response.pem_cert = request.server_creds.cert
        task_status.started(response)


async def run(server: str) -> None:
    request = await anyio.to_thread.run_sync(
        read_message, sys.stdin.buffer, server_compat_pb2.ServerCompatRequest
    )
    if request is None:
        raise SystemExit("no ServerCompatRequest on stdin")
    stop = anyio.Event()
    with tempfile.TemporaryDirectory(prefix="connect-anyio-conformance-") as tmp:
        async with anyio.create_task_group() as tg:
            response = await tg.start(
                lambda task_status: serve_conformance(
                    request, server=server, directory=Path(tmp), stop=stop, task_status=task_status
                )
            )
            write_message(sys.stdout.buffer, response)
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    break
            stop.set()
            # Both servers drain for SHUTDOWN_GRACE_SECONDS, then return; this is a backstop.
            tg.cancel_scope.deadline = anyio.current_time() + SHUTDOWN_GRACE_SECONDS + 5


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--server", choices=["hypercorn", "native"], default="native")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    anyio.run(run, args.server, backend=args.backend)


if __name__ == "__main__":
    main()
