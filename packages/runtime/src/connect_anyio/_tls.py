"""TLS over anyio streams, safe for one reader and one writer at the same time.

anyio's ``TLSStream`` may write to the socket from the reading task (to flush
TLS records) while another task writes application data: two concurrent sends
on one socket, which anyio refuses with ``BusyResourceError``. Both our HTTP/2
engine and our HTTP/1.1 server read and write from different tasks, so the
socket under TLS is wrapped to take turns instead.
"""

from __future__ import annotations

import ssl

import anyio
from anyio.abc import ByteStream
from anyio.streams.tls import TLSStream


class _TakeTurns(ByteStream):
    __slots__ = ("_receive_lock", "_send_lock", "_stream")

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self._send_lock = anyio.Lock()
        self._receive_lock = anyio.Lock()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        async with self._receive_lock:
            return await self._stream.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        async with self._send_lock:
            await self._stream.send(item)

    async def send_eof(self) -> None:
        async with self._send_lock:
            await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()

    @property
    def extra_attributes(self):  # type: ignore[no-untyped-def]
        return self._stream.extra_attributes


async def wrap_tls(
    stream: ByteStream,
    *,
    ssl_context: ssl.SSLContext,
    server_side: bool,
    hostname: str | None = None,
) -> TLSStream:
    """Performs the handshake; the result tolerates a concurrent reader and writer."""
    return await TLSStream.wrap(
        _TakeTurns(stream),
        server_side=server_side,
        hostname=hostname,
        ssl_context=ssl_context,
        standard_compatible=False,
    )
