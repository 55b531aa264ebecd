"""Shows, without connect-anyio code, that hypercorn writes an HTTP/1.1 response head
to the socket as soon as the app sends ``http.response.start``, separately from the
body that follows in ``http.response.body``.

Why it matters for the conformance suite: in the "Timeouts" cases the reference
client's deadline and the server's (propagated by ``Connect-Timeout-Ms``) expire at
nearly the same moment. A Connect unary error is a head plus a small JSON body. When
the head reaches the client just before its deadline and the body just after, the
client stops reading, and its wire check of the error body then reports "connect error
JSON: unexpected end of JSON input" (seen about once in 7,000 cases on hypercorn, never
on the native server, which writes head and body of a unary response in one write).
ASGI gives an app no way to hand hypercorn both in one message, so those cases are
skipped for hypercorn only (packages/conformance/hypercorn-skip.txt).

The app below sends the start, waits HOLD seconds, then sends the body; a raw client
reports when each part arrived. Run from the repository root:

    python packages/conformance/hypercorn/repro_split_head.py asyncio   # or trio
"""

from __future__ import annotations

import functools
import socket
import sys
import time
from typing import Any

import anyio
from hypercorn.config import Config

HOLD = 0.5
"""Seconds between the app's http.response.start and its http.response.body."""


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    while (await receive()).get("more_body"):
        pass
    body = b'{"code":"deadline_exceeded","message":"the deadline passed"}'
    await send(
        {
            "type": "http.response.start",
            "status": 504,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await anyio.sleep(HOLD)
    await send({"type": "http.response.body", "body": body})


def client(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        started = time.monotonic()
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        head_at = time.monotonic() - started
        head, _, body = received.partition(b"\r\n\r\n")
        while not body.endswith(b"}"):
            body += sock.recv(65536)
        body_at = time.monotonic() - started
    print(f"head ({len(head)} bytes) arrived after {head_at * 1000:.0f} ms")
    print(f"body ({len(body)} bytes) arrived after {body_at * 1000:.0f} ms")
    if body_at - head_at > HOLD / 2:
        print("hypercorn wrote the head on http.response.start, apart from the body")
    else:
        print("head and body arrived together")


async def main(worker: str) -> None:
    config = Config()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config.bind = [f"127.0.0.1:{port}"]
    stop = anyio.Event()
    if worker == "trio":
        from hypercorn.trio import serve
    else:
        from hypercorn.asyncio import serve  # type: ignore[assignment]
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(serve, app, config, shutdown_trigger=stop.wait))
        await anyio.sleep(0.5)
        await anyio.to_thread.run_sync(client, port)
        stop.set()


if __name__ == "__main__":
    backend = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    anyio.run(main, backend, backend=backend)
