"""A server under test for the conformance runner that contains no connect-anyio code:
hypercorn serving a raw ASGI app that answers every call as gRPC (one empty message,
status OK) as soon as the request starts, then reads the rest of the request body before
it ends the response with trailers.

Most cases fail their assertions against it (it echoes nothing); that is expected. What
it shows is hypercorn 0.18's HTTP/2 failing whole connections with GOAWAY(PROTOCOL_ERROR)
when request DATA arrives while a response is already going out, which no app should be
able to cause. An app that reads the whole request before it answers does not trigger it,
which is why connect-anyio's ASGI adapter drains the request before a whole response
(_server_asgi.ASGIServerIO.drain). Run from the repository root:

    P='Server Message Size/HTTPVersion:2/Protocol:PROTOCOL_GRPC/'
    P+='Compression:COMPRESSION_IDENTITY/TLS:false/**'
    connectconformance --mode server --conf packages/conformance/config.yaml \\
      --run "$P" -- python packages/conformance/hypercorn/repro_server.py asyncio

and look for "GOAWAY ... ErrCode=PROTOCOL_ERROR" among the failures (seen here on both
workers, a few cases per run).
"""

from __future__ import annotations

import signal
import socket
import struct
import sys
from typing import Any

import anyio
from hypercorn.config import Config


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    message = await receive()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/grpc")],
            "trailers": True,
        }
    )
    await send({"type": "http.response.body", "body": b"\x00\x00\x00\x00\x00"})
    while message["type"] == "http.request" and message.get("more_body"):
        message = await receive()
    await send(
        {
            "type": "http.response.trailers",
            "headers": [(b"grpc-status", b"0")],
            "more_trailers": False,
        }
    )


def _read_request() -> bytes:
    size = struct.unpack(">I", sys.stdin.buffer.read(4))[0]
    return sys.stdin.buffer.read(size)


def _response(port: int) -> bytes:
    # ServerCompatResponse{host = "127.0.0.1" (field 1), port (field 2, varint)}
    host = b"127.0.0.1"
    varint = b""
    n = port
    while True:
        byte, n = n & 0x7F, n >> 7
        varint += bytes([byte | (0x80 if n else 0)])
        if not n:
            break
    body = b"\x0a" + bytes([len(host)]) + host + b"\x10" + varint
    return struct.pack(">I", len(body)) + body


async def main(backend: str) -> None:
    _read_request()  # plain h2c and HTTP/1.1 only: no TLS asked for in the cases above
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.loglevel = "WARNING"
    stop = anyio.Event()
    if backend == "trio":
        from hypercorn.trio import serve
    else:
        from hypercorn.asyncio import serve  # type: ignore[assignment]
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        sys.stdout.buffer.write(_response(port))
        sys.stdout.buffer.flush()
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
        stop.set()


if __name__ == "__main__":
    backend = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    anyio.run(main, backend, backend=backend)
