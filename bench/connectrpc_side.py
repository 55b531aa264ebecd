"""connect-python (PyPI ``connectrpc``): its ASGI app and its client, in their own venv.

``python -m bench.connectrpc_side serve hypercorn|uvicorn --port N`` and
``python -m bench.connectrpc_side client --url ... --http 1|2 --concurrency N``.

The endpoint is written by hand with connect-python's public API
(``Endpoint.unary``, ``MethodInfo``) rather than generated: the newest
``protoc-gen-connect-python`` on PyPI emits code for connect-python's own
protobuf runtime (``protobuf-py``) and an older ``MethodInfo``, while both sides
here use the google.protobuf messages of ``gen/`` through connect-python's
``connectrpc.compat`` codecs. The runtime path measured is the same: generated
code only wires these objects together.
"""

# connect-python is installed only in its own venv: elsewhere mypy cannot see it (or sees
# our conformance package's connectrpc.conformance namespace instead).
# mypy: disable-error-code="import-not-found,import-untyped,unused-ignore"

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import anyio
from connectanyio.bench.v1 import bench_pb2
from connectrpc.client import ConnectClient
from connectrpc.compat import (
    google_protobuf_binary_codec,
    google_protobuf_codecs,
)
from connectrpc.method import (
    IdempotencyLevel,
    MethodInfo,
    StreamType,
)
from connectrpc.server import (
    ConnectASGIApplication,
    Endpoint,
)

from ._common import PAYLOAD, SERVICE, UNARY_PATH, UNARY_REQUEST
from ._loop import measure

UNARY = MethodInfo(
    name="Unary",
    service_name=SERVICE,
    input=bench_pb2.UnaryRequest,
    output=bench_pb2.UnaryResponse,
    idempotency_level=IdempotencyLevel.UNKNOWN,
    stream_type=StreamType.UNARY,
)
SERVER_STREAM = MethodInfo(
    name="ServerStream",
    service_name=SERVICE,
    input=bench_pb2.ServerStreamRequest,
    output=bench_pb2.ServerStreamResponse,
    idempotency_level=IdempotencyLevel.UNKNOWN,
    stream_type=StreamType.SERVER_STREAM,
)


class Bench:
    async def unary(self, request: bench_pb2.UnaryRequest, ctx: Any) -> bench_pb2.UnaryResponse:
        return bench_pb2.UnaryResponse(payload=request.payload)

    async def server_stream(
        self, request: bench_pb2.ServerStreamRequest, ctx: Any
    ) -> AsyncIterator[bench_pb2.ServerStreamResponse]:
        for _ in range(request.count):
            yield bench_pb2.ServerStreamResponse(payload=request.payload)


def _endpoints(service: Bench) -> dict[str, Any]:
    return {
        UNARY_PATH: Endpoint.unary(method=UNARY, function=service.unary),
        f"/{SERVICE}/ServerStream": Endpoint.server_stream(
            method=SERVER_STREAM, function=service.server_stream
        ),
    }


class BenchApplication(ConnectASGIApplication):  # type: ignore[misc, unused-ignore]
    """What connect-python's generated ``...ASGIApplication`` classes are."""

    def __init__(self) -> None:
        super().__init__(service=Bench(), endpoints=_endpoints, codecs=google_protobuf_codecs())

    @property
    def path(self) -> str:
        return f"/{SERVICE}"


async def run_client(args: argparse.Namespace) -> None:
    from pyqwest import Client, HTTPTransport, HTTPVersion

    version = HTTPVersion.HTTP2 if args.http == 2 else HTTPVersion.HTTP1
    async with (
        HTTPTransport(http_version=version, enable_otel=False) as transport,
        ConnectClient(
            args.url,
            codec=google_protobuf_binary_codec(),
            send_compression=None,
            http_client=Client(transport),
        ) as client,
    ):

        async def call() -> None:
            response = await client.execute_unary(request=UNARY_REQUEST, method=UNARY)
            if response.payload != PAYLOAD:
                raise RuntimeError(f"wrong answer: {response!r}")

        await measure(call, args.concurrency, args.warmup, args.seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.connectrpc_side")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve")
    serve.add_argument("server", choices=["hypercorn", "uvicorn"])
    serve.add_argument("--port", type=int, required=True)
    client = commands.add_parser("client")
    client.add_argument("--url", required=True)
    client.add_argument("--http", type=int, choices=[1, 2], default=1)
    client.add_argument("--concurrency", type=int, default=1)
    client.add_argument("--warmup", type=float, default=0.5)
    client.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.command == "client":
        # connect-python's async client is asyncio-only.
        anyio.run(partial(run_client, args), backend="asyncio")
        # pyqwest (connect-python's HTTP client) aborts the interpreter at exit now and then
        # (SIGABRT, no message; seen with pyqwest 0.12). The result is out: skip the teardown.
        sys.stdout.flush()
        os._exit(0)
    elif args.server == "uvicorn":
        import uvicorn  # type: ignore[import-not-found, unused-ignore]

        uvicorn.run(
            BenchApplication(),
            host="127.0.0.1",
            port=args.port,
            log_level="warning",
            access_log=False,
        )
    else:
        from hypercorn.asyncio import serve as hypercorn_serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"127.0.0.1:{args.port}"]
        config.accesslog = None
        config.loglevel = "WARNING"
        anyio.run(partial(hypercorn_serve, BenchApplication(), config), backend="asyncio")


if __name__ == "__main__":
    main()
