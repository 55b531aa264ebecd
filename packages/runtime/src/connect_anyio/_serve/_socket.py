"""A socket stream on a bare non-blocking socket: the native server's plain-TCP connections.

anyio's own socket streams cost a scheduler round trip per send (a shielded
checkpoint) and, on asyncio, re-register the socket with the selector on every
receive. A server that answers a request with one write and then waits for the
next one needs neither: here a send that the kernel takes at once returns at
once, and a receive waits (``anyio.wait_readable``) only when nothing is there.
Both still go through anyio, so asyncio and trio share the code.

Fairness: a receive that finds data without waiting passes a checkpoint, so
one busy connection cannot starve the others; a send that completes at once
does not (callers that send in a loop checkpoint themselves). A receive that
finds nothing lets the other tasks run once and looks again before it waits.
"""

from __future__ import annotations

import errno
import socket

import anyio
import anyio.lowlevel
from anyio.abc import SocketStream

_RETRY_ACCEPT = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EINTR})


class RawSocketStream(SocketStream):
    """``anyio.abc.SocketStream`` over a connected socket this object owns."""

    __slots__ = ("_closed", "_pending", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._closed = False
        self._pending: bytes | None = None

    @property
    def _raw_socket(self) -> socket.socket:
        return self._sock

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self._pending is not None:
            data, self._pending = self._pending, None
            return data
        sock = self._sock
        try:
            data = sock.recv(max_bytes)
        except BlockingIOError:
            data = await self._wait_and_receive(max_bytes)
        except OSError as e:
            raise self._error(e) from e
        else:
            try:
                await anyio.lowlevel.checkpoint()
            except BaseException:
                # Cancelled with the bytes in hand: the next receive returns them.
                self._pending = data
                raise
        if not data:
            raise anyio.EndOfStream
        return data

    async def _wait_and_receive(self, max_bytes: int) -> bytes:
        sock = self._sock
        # Let the other tasks run once and look again before asking the event loop to
        # watch the socket: on a busy server the bytes have often arrived by then, and a
        # round of the scheduler costs much less than registering, waiting on and
        # unregistering the socket (asyncio: ~5 us against ~13 us).
        await anyio.lowlevel.checkpoint()
        try:
            return sock.recv(max_bytes)
        except BlockingIOError:
            pass
        except OSError as e:
            raise self._error(e) from e
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            await anyio.wait_readable(sock)
            try:
                return sock.recv(max_bytes)
            except BlockingIOError:
                continue
            except OSError as e:
                raise self._error(e) from e

    async def send(self, item: bytes) -> None:
        sock = self._sock
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            sent = sock.send(item)
        except BlockingIOError:
            sent = 0
        except OSError as e:
            raise self._error(e) from e
        if sent < len(item):
            await self._send_rest(memoryview(item)[sent:])

    def send_nowait(self, item: bytes) -> int:
        """Sends what the kernel takes now, without waiting; returns how many bytes.
        Raises ``OSError`` when the connection is broken."""
        if self._closed:
            raise OSError("socket closed")
        try:
            return self._sock.send(item)
        except BlockingIOError:
            return 0

    async def _send_rest(self, view: memoryview) -> None:
        sock = self._sock
        while view:
            if self._closed:
                raise anyio.ClosedResourceError
            await anyio.wait_writable(sock)
            try:
                sent = sock.send(view)
            except BlockingIOError:
                continue
            except OSError as e:
                raise self._error(e) from e
            view = view[sent:]

    async def send_eof(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            raise self._error(e) from e

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            anyio.notify_closing(self._sock)
            self._sock.close()
        await anyio.lowlevel.checkpoint()

    def _error(self, e: OSError) -> Exception:
        if self._closed:
            return anyio.ClosedResourceError()
        return anyio.BrokenResourceError()


async def accept(listener: socket.socket) -> socket.socket:
    """The next connection on a non-blocking listening socket."""
    while True:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            await anyio.wait_readable(listener)
            continue
        except OSError as e:
            if e.errno in _RETRY_ACCEPT:
                continue
            raise
        try:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        return sock
