"""``python -m bench.clients KIND ...``: one client under test, in its own process.

Kinds: ``ours`` (``ConnectClient``, Connect or gRPC, asyncio or trio),
``ours-sync`` (``ConnectClientSync``, sequential), ``httpcore`` (a raw
httpcore pool POSTing the Connect unary request: the floor for a Python client
on httpcore) and ``grpcio-aio`` (grpcio's asyncio client). Prints one JSON
line (see ``bench._loop``).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from functools import partial

import anyio

from ._common import (
    CONNECT_UNARY_BODY,
    CONNECT_UNARY_HEADERS,
    PAYLOAD,
    UNARY_PATH,
    UNARY_REQUEST,
    UNARY_RESPONSE_BYTES,
)
from ._loop import measure, measure_sync


class WrongAnswer(Exception):
    """The server answered something else than the echo: the numbers would be meaningless."""


async def run_ours(args: argparse.Namespace) -> None:
    from connectanyio.bench.v1.bench_connect import BenchServiceClient

    from connect_anyio import HTTPClient, HTTPVersion, ProtocolType

    version = HTTPVersion.HTTP2 if args.http == 2 else HTTPVersion.HTTP1
    protocol = ProtocolType.GRPC if args.protocol == "grpc" else ProtocolType.CONNECT
    async with (
        HTTPClient(http_version=version) as http_client,
        BenchServiceClient(
            args.url, protocol=protocol, send_compression=None, http_client=http_client
        ) as client,
    ):

        async def call() -> None:
            response = await client.unary(UNARY_REQUEST)
            if response.payload != PAYLOAD:
                raise WrongAnswer(response)

        await measure(call, args.concurrency, args.warmup, args.seconds)


def run_ours_sync(args: argparse.Namespace) -> None:
    from connectanyio.bench.v1.bench_connect import BenchServiceMethods

    from connect_anyio import ConnectClientSync, HTTPClient, HTTPVersion

    version = HTTPVersion.HTTP2 if args.http == 2 else HTTPVersion.HTTP1
    # The client closes an HTTPClient it creates; a given one is left to the process exit.
    http_client = HTTPClient(http_version=version) if args.http == 2 else None
    with ConnectClientSync(args.url, send_compression=None, http_client=http_client) as client:

        def call() -> None:
            response = client.execute_unary(request=UNARY_REQUEST, method=BenchServiceMethods.Unary)
            if response.payload != PAYLOAD:
                raise WrongAnswer(response)

        measure_sync(call, args.warmup, args.seconds)


async def run_httpcore(args: argparse.Namespace) -> None:
    import httpcore

    url = args.url + UNARY_PATH
    headers = list(CONNECT_UNARY_HEADERS.items())
    async with httpcore.AsyncConnectionPool(
        http1=args.http == 1, http2=args.http == 2, max_connections=100
    ) as pool:

        async def call() -> None:
            response = await pool.request("POST", url, headers=headers, content=CONNECT_UNARY_BODY)
            if response.status != 200 or response.content != UNARY_RESPONSE_BYTES:
                raise WrongAnswer(response.status, response.content)

        await measure(call, args.concurrency, args.warmup, args.seconds)


async def run_grpcio_aio(args: argparse.Namespace) -> None:
    import grpc
    from connectanyio.bench.v1 import bench_pb2

    target = args.url.removeprefix("http://")
    async with grpc.aio.insecure_channel(target) as channel:
        stub: Callable[[bench_pb2.UnaryRequest], Awaitable[bench_pb2.UnaryResponse]] = (
            channel.unary_unary(
                UNARY_PATH,
                request_serializer=bench_pb2.UnaryRequest.SerializeToString,
                response_deserializer=bench_pb2.UnaryResponse.FromString,
            )
        )

        async def call() -> None:
            response = await stub(UNARY_REQUEST)
            if response.payload != PAYLOAD:
                raise WrongAnswer(response)

        await measure(call, args.concurrency, args.warmup, args.seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.clients")
    parser.add_argument("kind", choices=["ours", "ours-sync", "httpcore", "grpcio-aio"])
    parser.add_argument("--url", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--http", type=int, choices=[1, 2], default=1)
    parser.add_argument("--protocol", choices=["connect", "grpc"], default="connect")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.kind == "ours":
        anyio.run(partial(run_ours, args), backend=args.backend)
    elif args.kind == "ours-sync":
        run_ours_sync(args)
    elif args.kind == "httpcore":
        anyio.run(partial(run_httpcore, args), backend=args.backend)
    else:
        anyio.run(partial(run_grpcio_aio, args), backend="asyncio")


if __name__ == "__main__":
    main()
