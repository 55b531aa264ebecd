"""Reproduces, without connect-anyio, a hypercorn 0.18 HTTP/2 defect that connect-anyio's
ASGI adapter works around (it reads the rest of a request before it ends the response:
_server_asgi.ASGIServerIO.drain); without that, conformance cases that send a request over
the server's size limit failed on hypercorn.

A plain ASGI app answers as soon as a request arrives (headers, body, trailers), the way
any RPC server answers a request whose first message is over its size limit, without
reading the rest of the body. A client (the `h2` library over a socket) opens several
streams on one connection, each sending a body larger than one DATA frame. When DATA
for a stream arrives after hypercorn has finished that stream's response, hypercorn's
HTTP/2 protocol fails the whole connection: `KeyError` in protocol/h2.py
(pgjones/hypercorn#329; fixes proposed in #312, #334 and #365, none merged) or a GOAWAY
with PROTOCOL_ERROR, and every other stream on the connection fails with it.

Run: python packages/conformance/hypercorn/repro_early_response.py [asyncio|trio]
Prints what the client saw and exits 1 when the defect shows (0 when every stream got
its answer and the connection survived).
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions

STREAMS = 8
BODY = b"x" * (300 * 1024)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/grpc")],
            "trailers": True,
        }
    )
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    await send(
        {
            "type": "http.response.trailers",
            "headers": [(b"grpc-status", b"8"), (b"grpc-message", b"too large")],
            "more_trailers": False,
        }
    )


def serve(backend: str, sock: socket.socket, stop: threading.Event) -> None:
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.loglevel = "WARNING"

    async def shutdown() -> None:
        import anyio

        while not stop.is_set():  # noqa: ASYNC110 (a thread's event: polled from the loop)
            await anyio.sleep(0.05)

    if backend == "trio":
        import trio
        from hypercorn.trio import serve as run

        trio.run(lambda: run(app, config, shutdown_trigger=shutdown))  # type: ignore[arg-type]
    else:
        import asyncio

        from hypercorn.asyncio import serve as run  # type: ignore[assignment]

        asyncio.run(run(app, config, shutdown_trigger=shutdown))  # type: ignore[arg-type]


def _open(conn: h2.connection.H2Connection, port: int) -> int:
    sid: int = conn.get_next_available_stream_id()
    conn.send_headers(
        sid,
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", f"127.0.0.1:{port}"),
            (":path", "/svc/Method"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ],
    )
    return sid


def client(port: int) -> tuple[int, int, list[str]]:
    """Two rounds of STREAMS requests on one connection, each stream sending its whole
    body even after its answer came (as clients do). Returns (answered, failed, notes)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(5)
    sock.sendall(conn.data_to_send())
    answered: set[int] = set()
    notes: list[str] = []
    opened = 0
    for _round in range(2):
        pending = {_open(conn, port): 0 for _ in range(STREAMS)}
        opened += STREAMS
        sock.sendall(conn.data_to_send())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not notes:
            unsent = [sid for sid, sent in pending.items() if sent < len(BODY)]
            if not unsent and len(answered) >= opened:
                break
            for sid in unsent:
                sent = pending[sid]
                try:
                    room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                except Exception:
                    pending[sid] = len(BODY)  # closed by a reset: nothing more to send
                    continue
                if room <= 0:
                    continue
                chunk = BODY[sent : sent + room]
                pending[sid] = sent + len(chunk)
                try:
                    conn.send_data(sid, chunk, end_stream=pending[sid] >= len(BODY))
                except h2.exceptions.StreamClosedError:
                    pending[sid] = len(BODY)  # the server reset it after answering: fine
            try:
                sock.sendall(conn.data_to_send())
                data = sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError as e:
                notes.append(f"socket: {e!r}")
                break
            if not data:
                notes.append("server closed the connection")
                break
            try:
                events = conn.receive_data(data)
            except Exception as e:
                notes.append(f"h2: {e!r}")
                break
            for event in events:
                if isinstance(event, h2.events.TrailersReceived):
                    answered.add(event.stream_id)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    notes.append(f"GOAWAY error_code={event.error_code!r}")
            sock.sendall(conn.data_to_send())
    sock.close()
    return len(answered), opened - len(answered), notes


def main() -> int:
    backend = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    stop = threading.Event()
    server = threading.Thread(target=serve, args=(backend, sock, stop), daemon=True)
    server.start()
    failures = 0
    for _ in range(5):
        answered, failed, notes = client(port)
        print(f"{answered}/{2 * STREAMS} streams answered; {'; '.join(notes) or 'no error'}")
        failures += failed
    stop.set()
    server.join(5)
    print("defect shown" if failures else "no defect shown")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
