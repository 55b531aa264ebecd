"""``python -m bench.servers KIND --port N``: one server under test, in its own process.

Kinds: ``hypercorn`` and ``uvicorn`` (``--app minimal|ours``), ``native``
(our server; ``--app minimal|ours``, ``--backend asyncio|trio``,
``--loop auto|asyncio|uvloop`` as the CLI has it), and
``grpcio-aio`` / ``grpcio-sync`` (grpcio's servers with generic handlers, no
generated stubs). Each runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import anyio

from ._common import SERVICE
from .apps import minimal_app, ours_app


def _app(name: str) -> Any:
    return {"minimal": minimal_app, "ours": ours_app}[name]


def run_hypercorn(app: Any, port: int) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    # hypercorn handles SIGTERM/SIGINT itself when no shutdown trigger is given.
    anyio.run(partial(serve, app, config), backend="asyncio")


def run_uvicorn(app: Any, port: int) -> None:
    import uvicorn  # type: ignore[import-not-found, unused-ignore]

    # uvicorn picks uvloop and httptools when they are installed: its fastest setup.
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def run_native(app: Any, port: int, backend: str, loop: str) -> None:
    from connect_anyio import serve
    from connect_anyio.__main__ import backend_options

    # The loop is chosen as ``python -m connect_anyio serve --loop`` chooses it.
    anyio.run(
        partial(serve, app, host="127.0.0.1", port=port, handle_signals=True),
        backend=backend,
        backend_options=backend_options(backend, loop),
    )


def _grpc_handlers() -> Any:
    import grpc
    from connectanyio.bench.v1 import bench_pb2

    def unary(request: bench_pb2.UnaryRequest, context: Any) -> bench_pb2.UnaryResponse:
        return bench_pb2.UnaryResponse(payload=request.payload)

    def server_stream(
        request: bench_pb2.ServerStreamRequest, context: Any
    ) -> Iterator[bench_pb2.ServerStreamResponse]:
        for _ in range(request.count):
            yield bench_pb2.ServerStreamResponse(payload=request.payload)

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=bench_pb2.UnaryRequest.FromString,
                response_serializer=bench_pb2.UnaryResponse.SerializeToString,
            ),
            "ServerStream": grpc.unary_stream_rpc_method_handler(
                server_stream,
                request_deserializer=bench_pb2.ServerStreamRequest.FromString,
                response_serializer=bench_pb2.ServerStreamResponse.SerializeToString,
            ),
        },
    )


def _grpc_aio_handlers() -> Any:
    import grpc
    from connectanyio.bench.v1 import bench_pb2

    async def unary(request: bench_pb2.UnaryRequest, context: Any) -> bench_pb2.UnaryResponse:
        return bench_pb2.UnaryResponse(payload=request.payload)

    async def server_stream(request: bench_pb2.ServerStreamRequest, context: Any) -> Any:
        for _ in range(request.count):
            yield bench_pb2.ServerStreamResponse(payload=request.payload)

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=bench_pb2.UnaryRequest.FromString,
                response_serializer=bench_pb2.UnaryResponse.SerializeToString,
            ),
            "ServerStream": grpc.unary_stream_rpc_method_handler(
                server_stream,
                request_deserializer=bench_pb2.ServerStreamRequest.FromString,
                response_serializer=bench_pb2.ServerStreamResponse.SerializeToString,
            ),
        },
    )


def run_grpcio_sync(port: int) -> None:
    import grpc

    server = grpc.server(ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((_grpc_handlers(),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=1).wait()


def run_grpcio_aio(port: int) -> None:
    import grpc

    async def main() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((_grpc_aio_handlers(),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        try:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    break
        finally:
            await server.stop(grace=1)

    anyio.run(main, backend="asyncio")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    parser.add_argument(
        "kind", choices=["hypercorn", "uvicorn", "native", "grpcio-aio", "grpcio-sync"]
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--app", choices=["minimal", "ours"], default="ours")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto")
    args = parser.parse_args(argv)
    if args.kind == "hypercorn":
        run_hypercorn(_app(args.app), args.port)
    elif args.kind == "uvicorn":
        run_uvicorn(_app(args.app), args.port)
    elif args.kind == "native":
        run_native(_app(args.app), args.port, args.backend, args.loop)
    elif args.kind == "grpcio-sync":
        run_grpcio_sync(args.port)
    else:
        run_grpcio_aio(args.port)


if __name__ == "__main__":
    main()
