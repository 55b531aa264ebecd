"""What the toolbox tests share: a sync EchoService, real WSGI servers, servers for sync tests.

- ``EchoServiceSyncImpl``: ``EchoServiceImpl``'s behaviours for the WSGI app (sync code).
- ``serve_wsgi``: werkzeug's threaded server on 127.0.0.1, port 0, in a thread (HTTP/1.1).
- ``serve_wsgi_h2c``: hypercorn's WSGI mode on 127.0.0.1 (HTTP/1.1 and h2c), the one
  common WSGI server that speaks HTTP/2.
- ``serve_in_thread``: any ``run_server`` server on its own event loop in a thread, so
  plain sync test code (and its threads) can call it; ``serve_in_thread_portal`` also
  gives the portal into that loop.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
from _support.servers import RunningServer, run_server
from _support.service import Ctx, EchoRequest, EchoResponse, _echo_metadata, _failure, _response
from _support.tls import TLSFiles
from anyio.from_thread import BlockingPortal
from google.protobuf import empty_pb2
from hypercorn.config import Config
from werkzeug.serving import WSGIRequestHandler, make_server

WAIT = 10.0
"""How long a test waits for something that must happen (a hang fails, it does not block)."""


@dataclass
class SyncObservations:
    """What the sync handlers saw, keyed by the request's ``tag`` (thread-safe events)."""

    started: dict[str, threading.Event] = field(
        default_factory=lambda: defaultdict(threading.Event)
    )
    finished: dict[str, threading.Event] = field(
        default_factory=lambda: defaultdict(threading.Event)
    )
    received: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def wait_finished(self, tag: str) -> None:
        assert self.finished[tag].wait(WAIT), f"handler {tag!r} never finished"


def _outlive_deadline(ctx: Ctx) -> None:
    """Sync code cannot be cancelled: ``wait_for_cancel`` runs until past the call's deadline."""
    remaining = ctx.timeout_ms()
    time.sleep(WAIT if remaining is None else remaining / 1000.0 + 0.05)


class EchoServiceSyncImpl:
    """Implements ``EchoServiceSync`` with the behaviours of the async ``EchoServiceImpl``."""

    def __init__(self, observations: SyncObservations | None = None) -> None:
        self.observations = observations or SyncObservations()

    def _block_if_asked(self, request: EchoRequest, ctx: Ctx) -> None:
        if request.wait_for_cancel:
            self.observations.started[request.tag].set()
            _outlive_deadline(ctx)

    def echo(self, request: EchoRequest, ctx: Ctx) -> EchoResponse:
        _echo_metadata(ctx)
        self._block_if_asked(request, ctx)
        if request.HasField("fail"):
            raise _failure(request.fail)
        return _response(request, ctx)

    def echo_post(self, request: EchoRequest, ctx: Ctx) -> EchoResponse:
        return self.echo(request, ctx)

    def server_stream(self, request: EchoRequest, ctx: Ctx) -> Iterator[EchoResponse]:
        _echo_metadata(ctx)
        try:
            count = request.response_count if request.response_count >= 0 else 1_000_000
            for i in range(count):
                yield _response(request, ctx, i)
            self._block_if_asked(request, ctx)
            if request.HasField("fail"):
                raise _failure(request.fail)
        finally:
            self.observations.finished[request.tag].set()

    def client_stream(self, request: Iterator[EchoRequest], ctx: Ctx) -> EchoResponse:
        _echo_metadata(ctx)
        texts: list[str] = []
        last: EchoRequest | None = None
        for message in request:
            texts.append(message.text)
            self.observations.received[message.tag].append(message.text)
            last = message
            self._block_if_asked(message, ctx)
            if message.HasField("fail"):
                raise _failure(message.fail)
        response = _response(last or EchoRequest(), ctx)
        response.request_texts.extend(texts)
        return response

    def bidi(self, request: Iterator[EchoRequest], ctx: Ctx) -> Iterator[EchoResponse]:
        _echo_metadata(ctx)
        index = 0
        for message in request:
            self.observations.received[message.tag].append(message.text)
            self._block_if_asked(message, ctx)
            if message.HasField("fail"):
                raise _failure(message.fail)
            for _ in range(max(1, message.response_count)):
                yield _response(message, ctx, index)
                index += 1

    def nothing(self, request: empty_pb2.Empty, ctx: Any) -> empty_pb2.Empty:
        return empty_pb2.Empty()


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@contextmanager
def serve_wsgi(app: Any) -> Iterator[str]:
    """werkzeug's threaded WSGI server on 127.0.0.1 (a free port) until the block exits."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


@asynccontextmanager
async def _hypercorn_wsgi(app: Any) -> AsyncIterator[str]:
    import hypercorn.asyncio

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port: int = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.loglevel = "WARNING"
    config.graceful_timeout = 1
    shutdown = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: hypercorn.asyncio.serve(
                app, config, shutdown_trigger=shutdown.wait, mode="wsgi"
            )
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            shutdown.set()
            tg.cancel_scope.deadline = anyio.current_time() + WAIT


@contextmanager
def serve_wsgi_h2c(app: Any) -> Iterator[str]:
    """hypercorn serving the WSGI ``app`` (HTTP/1.1 and h2c) on 127.0.0.1 until the block exits.

    Its own asyncio loop in a thread, whatever the test's backend: the WSGI app runs in
    threads anyway, and hypercorn's trio worker races with a WSGI app's (absent) lifespan.
    """
    with (
        anyio.from_thread.start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(_hypercorn_wsgi(app)) as url,
    ):
        yield url


@contextmanager
def serve_in_thread(
    app: Any,
    *,
    server: str = "native",
    transport: str = "h1",
    tls: TLSFiles | None = None,
    backend: str = "asyncio",
) -> Iterator[RunningServer]:
    """``run_server`` on an event loop in a background thread, for sync tests."""
    with serve_in_thread_portal(
        app, server=server, transport=transport, tls=tls, backend=backend
    ) as (running, _):
        yield running


@contextmanager
def serve_in_thread_portal(
    app: Any,
    *,
    server: str = "native",
    transport: str = "h1",
    tls: TLSFiles | None = None,
    backend: str = "asyncio",
) -> Iterator[tuple[RunningServer, BlockingPortal]]:
    """``serve_in_thread``, plus the portal into the server's event loop (to wait there for
    what the async handlers observed)."""
    with (
        anyio.from_thread.start_blocking_portal(backend) as portal,
        portal.wrap_async_context_manager(
            run_server(app, server=server, transport=transport, tls=tls)
        ) as running,
    ):
        yield running, portal


@dataclass
class RawResponse:
    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name)
        return values[0] if values else None


def raw_request(
    url: str,
    path: str,
    *,
    method: str = "POST",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> RawResponse:
    """One plain HTTP/1.1 request (``http.client``), for what the clients never send."""
    host, _, port = url.removeprefix("http://").partition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=WAIT)
    try:
        connection.request(
            method, path, body=body if method != "GET" else None, headers=headers or {}
        )
        response = connection.getresponse()
        collected: dict[str, list[str]] = {}
        for name, value in response.getheaders():
            collected.setdefault(name.lower(), []).append(value)
        return RawResponse(response.status, collected, response.read())
    finally:
        connection.close()


def envelope(data: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(data)) + data


def envelopes(body: bytes) -> list[tuple[int, bytes]]:
    """The ``(flags, data)`` frames of a streaming body."""
    out = []
    while body:
        flags, size = struct.unpack(">BI", body[:5])
        out.append((flags, body[5 : 5 + size]))
        body = body[5 + size :]
    return out
