"""The native server: HTTP/1.1 and HTTP/2 (our ``_http2`` engine) on anyio listeners.

Structured concurrency end to end: a task group for the listeners, one per
connection and (HTTP/2) a task per stream. ``serve()`` shuts down gracefully
when it is cancelled or, with ``handle_signals``, on SIGINT/SIGTERM: it stops
accepting, sends GOAWAY, lets calls in flight finish for ``graceful_timeout``
seconds, then cancels what is left.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketAttribute, TaskStatus
from anyio.streams.tls import TLSAttribute

from .._tls import wrap_tls
from ._dispatch import Dispatcher
from ._h1 import H1Connection
from ._h2 import H2ServerConnection
from ._socket import RawSocketStream, accept

logger = logging.getLogger("connect_anyio.serve")

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What the server allows a client; the defaults suit a service on the internet."""

    max_connections: int = 10_000
    """Connections served at once; more wait in the listen backlog."""
    max_concurrent_streams: int = 200
    """HTTP/2 streams a client may open at once on one connection."""
    max_header_bytes: int = 65_536
    """Size of a request head (HTTP/1.1) or header list (HTTP/2)."""
    header_timeout: float = 10.0
    """Seconds a new connection has to complete its first request head (and TLS handshake)."""
    idle_timeout: float = 60.0
    """Seconds an idle keep-alive connection (no request, no stream) is kept."""
    graceful_timeout: float = 10.0
    """Seconds calls in flight get to finish when the server shuts down."""


class _Server:
    def __init__(
        self, dispatcher: Dispatcher, ssl_context: ssl.SSLContext | None, limits: ServerLimits
    ) -> None:
        self._dispatcher = dispatcher
        self._ssl = ssl_context
        self._limits = limits
        self._stop = anyio.Event()
        self._connections: set[H1Connection | H2ServerConnection] = set()
        self._all_closed = anyio.Event()
        self._slots = anyio.Semaphore(limits.max_connections)

    def stop(self) -> None:
        """Begins the graceful shutdown."""
        self._stop.set()

    def force(self) -> None:
        """Ends the grace period now: whatever still runs is cancelled."""
        self._forced = True
        self._stop.set()
        if self._grace is not None:
            self._grace.cancel()

    _forced = False
    _grace: anyio.CancelScope | None = None

    async def run(self, listeners: Sequence[anyio.abc.SocketListener]) -> None:
        """Accepts and serves connections until ``stop()``, then shuts down gracefully:
        stops accepting, lets calls in flight finish for ``graceful_timeout`` seconds
        (HTTP/2 connections get GOAWAY, idle HTTP/1.1 ones are closed), cancels the rest."""
        # Connections are shielded from the caller's cancellation so that a
        # cancelled serve() still drains gracefully; this scope is the only
        # thing that cancels them, once the grace period is over.
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as connections:
                try:
                    async with anyio.create_task_group() as acceptors:
                        for listener in listeners:
                            acceptors.start_soon(self._accept, listener, connections)
                        connections.start_soon(self._clock)
                        await self._stop.wait()
                        acceptors.cancel_scope.cancel()
                finally:
                    for listener in listeners:
                        with contextlib.suppress(Exception):
                            await listener.aclose()
                logger.info("stopped accepting; %d connection(s) to finish", len(self._connections))
                for conn in list(self._connections):
                    conn.begin_shutdown()
                with anyio.move_on_after(self._limits.graceful_timeout) as grace:
                    self._grace = grace
                    if self._forced:
                        grace.cancel()
                    while self._connections:
                        self._all_closed = anyio.Event()
                        await self._all_closed.wait()
                connections.cancel_scope.cancel()

    async def _clock(self) -> None:
        """Ends connections past their ``deadline`` (header and idle timeouts): one task
        for the whole server instead of a timer per request. A timeout fires at most a
        tenth of its length (and never more than a second) late."""
        limits = self._limits
        tick = min(1.0, max(0.005, min(limits.header_timeout, limits.idle_timeout) / 10))
        while True:
            await anyio.sleep(tick)
            now = time.monotonic()
            for conn in list(self._connections):
                if conn.deadline <= now:
                    conn.expire()

    async def _accept(
        self, listener: anyio.abc.SocketListener, connections: anyio.abc.TaskGroup
    ) -> None:
        raw = listener.extra(SocketAttribute.raw_socket)
        while True:
            await self._slots.acquire()
            try:
                sock = await accept(raw)
            except BaseException:
                self._slots.release()
                raise
            connections.start_soon(self._connection, sock)

    async def _connection(self, sock: socket.socket) -> None:
        stream = RawSocketStream(sock)
        try:
            await self._serve_connection(stream)
        except (anyio.BrokenResourceError, anyio.EndOfStream, OSError, ssl.SSLError):
            pass
        except Exception:
            logger.exception("connection failed")
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(stream)
            self._slots.release()

    async def _serve_connection(self, tcp: anyio.abc.SocketStream) -> None:
        client = _address(tcp.extra(SocketAttribute.remote_address, None))
        server = _address(tcp.extra(SocketAttribute.local_address, None))
        stream: ByteStream = tcp
        initial = b""
        http2 = False
        scheme = "http"
        # The header timeout counts from here: TLS handshake, preface and first request head.
        head_deadline = anyio.current_time() + self._limits.header_timeout
        with anyio.CancelScope(deadline=head_deadline) as scope:
            if self._ssl is not None:
                scheme = "https"
                tls = await wrap_tls(tcp, ssl_context=self._ssl, server_side=True)
                stream = tls
                http2 = tls.extra(TLSAttribute.alpn_protocol, None) == "h2"
            else:
                # Prior knowledge: an HTTP/2 client opens with the connection preface.
                while len(initial) < len(_PREFACE) and _PREFACE.startswith(initial):
                    chunk = await tcp.receive()
                    initial += chunk
                http2 = initial.startswith(_PREFACE)
        if scope.cancelled_caught:
            return
        conn: H1Connection | H2ServerConnection
        if http2:
            conn = H2ServerConnection(
                stream, self._dispatcher, self._limits, scheme=scheme, client=client, server=server
            )
        else:
            conn = H1Connection(
                stream, self._dispatcher, self._limits, scheme=scheme, client=client, server=server
            )
        self._connections.add(conn)
        try:
            if self._stop.is_set():
                conn.begin_shutdown()
            if isinstance(conn, H1Connection):
                await conn.run(initial, head_deadline)
            else:
                await conn.run(initial)
        finally:
            self._connections.discard(conn)
            if not self._connections:
                self._all_closed.set()


async def _until_stopped(server: _Server, signals: AsyncIterator[int] | None) -> None:
    """Stops the server when cancelled (``serve()`` was) or on a signal; a second signal
    ends the grace period at once."""
    try:
        if signals is None:
            await anyio.sleep_forever()
            return
        async for signum in signals:
            if not server._stop.is_set():
                logger.info("%s: shutting down", signal.Signals(signum).name)
                server.stop()
            else:
                logger.warning(
                    "%s again: cancelling the calls in flight", signal.Signals(signum).name
                )
                server.force()
                return
    finally:
        server.stop()


def _address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return None


def server_tls_context(
    certfile: str, keyfile: str | None = None, *, client_ca: str | None = None
) -> ssl.SSLContext:
    """A server TLS context offering h2 and http/1.1; ``client_ca`` makes client certificates
    required (and verified against that CA)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    if client_ca is not None:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


async def serve(
    *apps: Any,
    host: str = "127.0.0.1",
    port: int = 8080,
    ssl: ssl.SSLContext | None = None,
    limits: ServerLimits | None = None,
    handle_signals: bool = False,
    task_status: TaskStatus[list[tuple[str, int]]] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serves applications over HTTP/1.1 and HTTP/2 until cancelled (or signalled).

    ``apps`` are Connect applications (generated ``FooASGIApplication`` objects),
    served without the ASGI layer, and at most one plain ASGI app that gets
    every other path. Lifespans run around serving. Plain-text connections speak
    HTTP/1.1 or HTTP/2 with prior knowledge; with ``ssl`` (see
    ``server_tls_context``) ALPN picks h2 or http/1.1. ``port=0`` picks a free
    port; ``task_status.started`` reports the bound addresses.
    """
    limits = limits or ServerLimits()
    dispatcher = Dispatcher(apps)
    server = _Server(dispatcher, ssl, limits)
    await dispatcher.startup()
    try:
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        listeners = list(getattr(listener, "listeners", [listener]))
        addresses = [
            addr
            for addr in (_address(sock.extra(SocketAttribute.local_address)) for sock in listeners)
            if addr is not None
        ]
        for addr in addresses:
            logger.info("serving on %s://%s:%d", "https" if ssl else "http", *addr)
        signals = (
            anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
            if handle_signals
            else contextlib.nullcontext(None)
        )
        with signals as received:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_until_stopped, server, received)
                task_status.started(addresses)
                await server.run(listeners)  # shielded: returns once shut down
                tg.cancel_scope.cancel()
    finally:
        await dispatcher.shutdown()  # shielded inside, where it may be


__all__ = ["ServerLimits", "serve", "server_tls_context"]
