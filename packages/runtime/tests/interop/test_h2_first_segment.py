"""A raw HTTP/2 client (hyper-h2's state machine on a socket) that packs its request's
HEADERS into the same TCP segment as the connection preface, as Go's client (``buf
curl``) often does, and sends the body only later.

Regression: the native server fed those first bytes before its reader task took
over the socket, so the handler they started elected itself reader as well, and
two tasks read one socket ("Another task is already reading from this resource").
"""

from __future__ import annotations

import struct

import anyio
import h2.config
import h2.connection
import h2.events
import pytest
from _support.servers import SERVERS, run_server
from _support.service import EchoRequest, EchoResponse, echo_app

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("server", SERVERS)]


def _envelope(message: EchoRequest) -> bytes:
    data = message.SerializeToString()
    return struct.pack(">BI", 0, len(data)) + data


async def _client_stream(port: int, texts: list[str]) -> tuple[bytes | None, EchoResponse]:
    """One gRPC client-streaming call; returns grpc-status and the response."""
    config = h2.config.H2Configuration(client_side=True, header_encoding=None)
    conn = h2.connection.H2Connection(config)
    conn.initiate_connection()
    stream_id = conn.get_next_available_stream_id()
    conn.send_headers(
        stream_id,
        [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":authority", f"127.0.0.1:{port}".encode()),
            (b":path", b"/connectanyio.testing.v1.EchoService/ClientStream"),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ],
    )
    status: bytes | None = None
    body = b""
    with anyio.fail_after(10):
        async with await anyio.connect_tcp("127.0.0.1", port) as sock:
            # Preface, SETTINGS and HEADERS in one write; the body only once the server
            # has answered with its SETTINGS, so it has surely read the first write alone.
            await sock.send(conn.data_to_send())
            settings = False
            while not settings:
                for event in conn.receive_data(await sock.receive()):
                    settings = settings or isinstance(event, h2.events.RemoteSettingsChanged)
            for i, text in enumerate(texts):
                conn.send_data(stream_id, _envelope(EchoRequest(text=text)), i == len(texts) - 1)
            await sock.send(conn.data_to_send())
            ended = False
            while not ended:
                for event in conn.receive_data(await sock.receive()):
                    if isinstance(event, h2.events.DataReceived):
                        body += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                    elif isinstance(event, h2.events.TrailersReceived):
                        status = dict(event.headers).get(b"grpc-status")
                    elif isinstance(event, h2.events.StreamEnded):
                        ended = True
                if pending := conn.data_to_send():
                    await sock.send(pending)
    return status, EchoResponse.FromString(body[5:])


async def test_headers_in_first_segment(server: str) -> None:
    async with run_server(echo_app(), server=server, transport="h2c") as srv:
        port = int(srv.url.rsplit(":", 1)[1])
        for round_ in range(5):  # the old race lost often, not always, on trio
            texts = [f"{round_}-a", f"{round_}-b"]
            status, response = await _client_stream(port, texts)
            assert status == b"0"
            assert list(response.request_texts) == texts
