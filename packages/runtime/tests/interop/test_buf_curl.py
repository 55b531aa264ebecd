"""``buf curl`` (the buf-bin wheel; connect-go inside) calls our server in all three protocols.

The schema comes from the proto directory (``--schema``), not from reflection.
Each ``buf curl`` is a subprocess with a deadline; it is killed if it overruns.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
from _support.servers import SERVERS, run_server
from _support.service import echo_app
from google.protobuf import wrappers_pb2

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("server", SERVERS)]

REPO = Path(__file__).resolve().parents[4]
PROTO_DIR = REPO / "proto"
SERVICE = "connectanyio.testing.v1.EchoService"

# (--protocol, --http2-prior-knowledge)
MODES = [
    pytest.param("connect", False, id="connect-h1"),
    pytest.param("connect", True, id="connect-h2c"),
    pytest.param("grpc", True, id="grpc-h2c"),
    pytest.param("grpcweb", False, id="grpcweb-h1"),
    pytest.param("grpcweb", True, id="grpcweb-h2c"),
]
HTTP2_MODES = [m for m in MODES if m.values[1]]


async def buf_curl(
    buf: str,
    base_url: str,
    method: str,
    data: str,
    *,
    protocol: str,
    http2: bool,
    headers: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[bytes]:
    """Runs ``buf curl`` once; at most 30 seconds, then it is killed."""
    args = [buf, "curl", "--schema", str(PROTO_DIR), "--protocol", protocol]
    args += ["--connect-timeout", "5", "--data", data]
    if http2:
        args.append("--http2-prior-knowledge")
    for header in headers:
        args += ["--header", header]
    args.append(f"{base_url}/{SERVICE}/{method}")
    env = {**os.environ, "NO_PROXY": "*", "no_proxy": "*"}
    with anyio.fail_after(30):
        return await anyio.run_process(args, cwd=REPO, env=env, check=False)


def json_documents(output: bytes) -> list[Any]:
    """The JSON documents ``buf curl`` printed, one per response message."""
    text = output.decode()
    decoder = json.JSONDecoder()
    documents: list[Any] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return documents
        document, position = decoder.raw_decode(text, position)
        documents.append(document)


def _ok(result: subprocess.CompletedProcess[bytes]) -> list[Any]:
    assert result.returncode == 0, result.stderr.decode()
    return json_documents(result.stdout)


@pytest.mark.parametrize(("protocol", "http2"), MODES)
async def test_unary(server: str, buf_executable: str, protocol: str, http2: bool) -> None:
    async with run_server(echo_app(), server=server, transport="h2c" if http2 else "h1") as srv:
        result = await buf_curl(
            buf_executable,
            srv.url,
            "Echo",
            '{"text": "héllo"}',
            protocol=protocol,
            http2=http2,
            headers=("x-test-greeting: hello",),
        )
    # Proto JSON: int64 as a string; the handler echoes x-test-* request headers.
    assert _ok(result) == [
        {"text": "héllo", "headers": {"x-test-greeting": "hello"}, "timeoutMs": "-1"}
    ]


@pytest.mark.parametrize(("protocol", "http2"), MODES)
async def test_server_stream(server: str, buf_executable: str, protocol: str, http2: bool) -> None:
    async with run_server(echo_app(), server=server, transport="h2c" if http2 else "h1") as srv:
        result = await buf_curl(
            buf_executable,
            srv.url,
            "ServerStream",
            '{"text": "s", "responseCount": 3}',
            protocol=protocol,
            http2=http2,
        )
    documents = _ok(result)
    assert [d["text"] for d in documents] == ["s", "s", "s"]
    assert [d.get("index", 0) for d in documents] == [0, 1, 2]


@pytest.mark.parametrize(("protocol", "http2"), MODES)
async def test_client_stream(server: str, buf_executable: str, protocol: str, http2: bool) -> None:
    async with run_server(echo_app(), server=server, transport="h2c" if http2 else "h1") as srv:
        result = await buf_curl(
            buf_executable,
            srv.url,
            "ClientStream",
            '{"text": "a"} {"text": "b"} {"text": "c"}',
            protocol=protocol,
            http2=http2,
        )
    [document] = _ok(result)
    assert document["requestTexts"] == ["a", "b", "c"]


@pytest.mark.parametrize(("protocol", "http2"), HTTP2_MODES)
async def test_bidi(server: str, buf_executable: str, protocol: str, http2: bool) -> None:
    async with run_server(echo_app(), server=server, transport="h2c") as srv:
        result = await buf_curl(
            buf_executable,
            srv.url,
            "Bidi",
            '{"text": "a"} {"text": "b", "responseCount": 2}',
            protocol=protocol,
            http2=http2,
        )
    documents = _ok(result)
    assert [(d["text"], d.get("index", 0)) for d in documents] == [("a", 0), ("b", 1), ("b", 2)]


@pytest.mark.parametrize(("protocol", "http2"), MODES)
async def test_error_with_details(
    server: str, buf_executable: str, protocol: str, http2: bool
) -> None:
    failure = {"code": "invalid_argument", "message": "bad: ü 100%", "details": ["first"]}
    async with run_server(echo_app(), server=server, transport="h2c" if http2 else "h1") as srv:
        result = await buf_curl(
            buf_executable,
            srv.url,
            "Echo",
            json.dumps({"fail": failure}),
            protocol=protocol,
            http2=http2,
        )
    # buf curl exits with the gRPC code shifted left by three; the error is JSON on stderr.
    assert result.returncode == 3 << 3, result.stderr.decode()
    [error] = json_documents(result.stderr)
    assert error["code"] == "invalid_argument"
    assert error["message"] == "bad: ü 100%"
    [detail] = error["details"]
    assert detail["type"] == "google.protobuf.StringValue"
    value = base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4))
    assert wrappers_pb2.StringValue.FromString(value).value == "first"
