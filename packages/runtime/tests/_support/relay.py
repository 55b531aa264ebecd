"""A TCP relay on 127.0.0.1 that counts the bytes going each way.

Put it between a client and a server to see what travelled on the wire, for
example that a large, repetitive message really was compressed: the body sizes
are not visible to either peer's API, but the relay sees every byte.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketStream


@dataclass
class Relay:
    """Where the relay listens, and the bytes it has forwarded so far."""

    port: int
    upstream_bytes: int = 0
    """Client to server."""
    downstream_bytes: int = 0
    """Server to client."""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@asynccontextmanager
async def byte_counting_relay(target_port: int) -> AsyncIterator[Relay]:
    """Forwards every connection to ``127.0.0.1:target_port`` until the block exits."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    relay = Relay(port=listener.extra(SocketAttribute.local_port))

    async def pump(source: ByteStream, sink: ByteStream, upstream: bool) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            async for chunk in source:
                if upstream:
                    relay.upstream_bytes += len(chunk)
                else:
                    relay.downstream_bytes += len(chunk)
                await sink.send(chunk)
            await sink.send_eof()

    async def handle(client: SocketStream) -> None:
        try:
            server = await anyio.connect_tcp("127.0.0.1", target_port)
        except OSError:
            await client.aclose()
            return
        async with client, server, anyio.create_task_group() as tg:
            tg.start_soon(pump, client, server, True)
            tg.start_soon(pump, server, client, False)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield relay
        finally:
            tg.cancel_scope.cancel()
