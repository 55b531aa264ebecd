"""Plain HTTP/1.1 clients call our server: Connect is just HTTP, no special client needed.

Two clients: ``curl`` (when it is on PATH), and a hand-written HTTP/1.1 request
on a socket (responses parsed by h11, which also undoes chunked encoding), so
the wire format is checked even on a machine without curl.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import h11
import pytest
from _support.servers import SERVERS, run_server
from _support.service import echo_app

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("server", SERVERS)]

SERVICE = "connectanyio.testing.v1.EchoService"

Response = tuple[int, str, bytes]
"""Status, content type, body."""
Post = Callable[[str, str, bytes], Awaitable[Response]]


async def curl_post(url: str, content_type: str, body: bytes, workdir: Path) -> Response:
    """``curl -X POST`` over HTTP/1.1; at most 10 seconds, then it is killed."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not on PATH (the raw-socket variant covers the same ground)")
    request_file, response_file = workdir / "request.bin", workdir / "response.bin"
    request_file.write_bytes(body)
    args = [
        curl,
        "--silent",
        "--show-error",
        "--http1.1",
        "--noproxy",
        "*",
        "--max-time",
        "10",
        "-X",
        "POST",
        "-H",
        f"Content-Type: {content_type}",
        "-H",
        "Expect:",
        "--data-binary",
        f"@{request_file}",
        "--output",
        str(response_file),
        "--write-out",
        "%{http_code} %{content_type}",
        url,
    ]
    with anyio.fail_after(20):
        result = await anyio.run_process(args, check=False)
    assert result.returncode == 0, result.stderr.decode()
    status, _, response_type = result.stdout.decode().partition(" ")
    return int(status), response_type, response_file.read_bytes()


async def raw_post(url: str, content_type: str, body: bytes) -> Response:
    """The same request, written by hand on a TCP socket."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    head = (
        f"POST {parts.path} HTTP/1.1\r\n"
        f"Host: {parts.netloc}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "\r\n"
    )
    parser = h11.Connection(h11.CLIENT)
    # h11 parses the answer; it must believe it sent the request itself.
    parser.send(h11.Request(method="POST", target=parts.path, headers=[("Host", parts.netloc)]))
    parser.send(h11.EndOfMessage())
    status, response_type, chunks = 0, "", []
    with anyio.fail_after(10):
        async with await anyio.connect_tcp(parts.hostname, parts.port) as stream:
            await stream.send(head.encode() + body)
            while True:
                event = parser.next_event()
                if event is h11.NEED_DATA:
                    try:
                        parser.receive_data(await stream.receive())
                    except anyio.EndOfStream:
                        parser.receive_data(b"")
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    response_type = dict(event.headers).get(b"content-type", b"").decode()
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:
                    raise AssertionError(f"unexpected {event!r}")
    return status, response_type, b"".join(chunks)


@pytest.fixture(params=["curl", "raw-socket"])
def post(request: pytest.FixtureRequest, tmp_path: Path) -> Post:
    if request.param == "curl":
        return lambda url, content_type, body: curl_post(url, content_type, body, tmp_path)
    return raw_post


def envelope(flags: int, data: bytes) -> bytes:
    return struct.pack(">BI", flags, len(data)) + data


def envelopes(body: bytes) -> list[tuple[int, bytes]]:
    out = []
    while body:
        flags, size = struct.unpack(">BI", body[:5])
        out.append((flags, body[5 : 5 + size]))
        body = body[5 + size :]
    return out


async def test_unary_json(server: str, post: Post) -> None:
    """curl -X POST -H 'Content-Type: application/json' -d '{"text": "hi"}' .../Echo"""
    async with run_server(echo_app(), server=server, transport="h1") as srv:
        status, content_type, body = await post(
            f"{srv.url}/{SERVICE}/Echo", "application/json", b'{"text": "hi"}'
        )
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == {"text": "hi", "timeoutMs": "-1"}


async def test_unary_json_error(server: str, post: Post) -> None:
    request = {"fail": {"code": "not_found", "message": "no such thing"}}
    async with run_server(echo_app(), server=server, transport="h1") as srv:
        status, content_type, body = await post(
            f"{srv.url}/{SERVICE}/Echo", "application/json", json.dumps(request).encode()
        )
    assert (status, content_type) == (404, "application/json")
    assert json.loads(body) == {"code": "not_found", "message": "no such thing"}


async def test_server_stream_connect_json(server: str, post: Post) -> None:
    """A Connect server stream over HTTP/1.1: enveloped JSON in, enveloped JSON out."""
    request = envelope(0, json.dumps({"text": "s", "responseCount": 3}).encode())
    async with run_server(echo_app(), server=server, transport="h1") as srv:
        status, content_type, body = await post(
            f"{srv.url}/{SERVICE}/ServerStream", "application/connect+json", request
        )
    assert (status, content_type) == (200, "application/connect+json")
    frames = envelopes(body)
    assert [flags for flags, _ in frames] == [0, 0, 0, 2]  # three messages, then end-stream
    messages = [json.loads(data) for _, data in frames[:-1]]
    assert [(m["text"], m.get("index", 0)) for m in messages] == [("s", 0), ("s", 1), ("s", 2)]
    assert json.loads(frames[-1][1]) == {}


async def test_server_stream_connect_json_error(server: str, post: Post) -> None:
    request = envelope(
        0, json.dumps({"responseCount": 1, "fail": {"code": "aborted", "message": "m"}}).encode()
    )
    async with run_server(echo_app(), server=server, transport="h1") as srv:
        status, _, body = await post(
            f"{srv.url}/{SERVICE}/ServerStream", "application/connect+json", request
        )
    assert status == 200  # streams report errors in the end-stream message
    frames = envelopes(body)
    assert [flags for flags, _ in frames] == [0, 2]
    assert json.loads(frames[-1][1]) == {"error": {"code": "aborted", "message": "m"}}
