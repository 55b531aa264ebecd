"""``python -m bench.micro_server``: CPU time per call of our server-side call path, in process.

No sockets and no HTTP server: fake ASGI ``receive``/``send`` callables (and a fake
``ServerIO`` for the native server's path, ``Router.handle``) hand the bench requests
to the application. What it measures is everything between the server and the
handler: routing, protocol selection, decoding, the call runner, encoding, the
ASGI messages. Run from the repository root with ``PYTHONPATH=gen:.``::

    python -m bench.micro_server                       # every case, asyncio and trio
    python -m bench.micro_server --only asgi-connect --backend asyncio --profile

The bench handlers have no ``await``, so their unary calls run inline (no task group);
"-awaits" is a handler with an ``await`` that does not suspend (a task group, no
watcher), "-suspends" one that suspends once (the disconnect watcher starts). The
"minimal" cases run the bench's hand-written ASGI app: the floor for any framework.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
from connectanyio.bench.v1 import bench_pb2
from connectanyio.bench.v1.bench_connect import BenchServiceASGIApplication

from connect_anyio import RequestContext
from connect_anyio._protocol import RawHeaders, ResponseStart
from connect_anyio._server_core import Router
from connect_anyio.request import Headers

from . import _common
from .apps import Bench, minimal_app, ours_app

Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[Message]],
        Callable[[Message], Awaitable[None]],
    ],
    Awaitable[None],
]


@dataclass(frozen=True)
class Case:
    path: str
    body: bytes
    headers: dict[str, str]
    http_version: str
    trailers: bool
    """Whether the server offers ASGI's ``http.response.trailers`` (gRPC needs it)."""


CASES = {
    "connect": Case(
        _common.UNARY_PATH, _common.CONNECT_UNARY_BODY, _common.CONNECT_UNARY_HEADERS, "1.1", False
    ),
    "grpc": Case(_common.UNARY_PATH, _common.GRPC_UNARY_BODY, _common.GRPC_HEADERS, "2", True),
    "stream": Case(
        _common.STREAM_PATH,
        _common.CONNECT_STREAM_BODY,
        _common.CONNECT_STREAM_HEADERS,
        "1.1",
        False,
    ),
    "grpc-stream": Case(
        _common.STREAM_PATH, _common.GRPC_STREAM_BODY, _common.GRPC_HEADERS, "2", True
    ),
}


def _raw_headers(case: Case) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"127.0.0.1:8000")] + [
        (k.encode(), v.encode()) for k, v in case.headers.items()
    ]


def asgi_runner(app: ASGIApp, case: Case) -> Callable[[], Awaitable[int]]:
    """One call through an ASGI app; returns the number of messages sent."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": case.http_version,
        "method": "POST",
        "scheme": "http",
        "path": case.path,
        "raw_path": case.path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": _raw_headers(case),
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "extensions": {"http.response.trailers": {}} if case.trailers else {},
    }
    body = case.body

    async def one() -> int:
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await anyio.sleep_forever()
            raise AssertionError

        count = 0

        async def send(message: Message) -> None:
            nonlocal count
            count += 1

        await app(dict(scope), receive, send)
        return count

    return one


class FakeServerIO:
    """A ``ServerIO`` whose body is already there and whose client never leaves."""

    __slots__ = ("_body", "sent")

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.sent = 0

    async def receive(self) -> bytes:
        body, self._body = self._body, b""
        return body

    async def wait_disconnect(self) -> None:
        await anyio.sleep_forever()

    async def send_start(self, start: ResponseStart, body: bytes, end: bool) -> None:
        self.sent += 1

    async def send_body(self, body: bytes, end: bool) -> None:
        self.sent += 1

    async def send_trailers(self, trailers: RawHeaders) -> None:
        self.sent += 1


def native_runner(router: Router, case: Case) -> Callable[[], Awaitable[int]]:
    """One call as the native server makes it: ``Router.handle`` with its own ``ServerIO``."""
    raw = _raw_headers(case)

    async def one() -> int:
        io = FakeServerIO(case.body)
        headers = Headers._from_wire(raw)
        await router.handle(
            path=case.path,
            http_method="POST",
            query="",
            headers=headers,
            io=io,
            server_address=headers.get("host"),
            client_address="127.0.0.1:5000",
            http_version=case.http_version,
            trailers=case.trailers,
        )
        return io.sent

    return one


async def _ready() -> None:
    """Returns at once: awaiting it does not suspend."""


class AwaitingBench(Bench):
    """A unary handler with an ``await`` that does not suspend: not run inline (the call
    gets its task group), but its watcher never starts."""

    async def unary(
        self,
        request: bench_pb2.UnaryRequest,
        ctx: RequestContext[bench_pb2.UnaryRequest, bench_pb2.UnaryResponse],
    ) -> bench_pb2.UnaryResponse:
        await _ready()
        return bench_pb2.UnaryResponse(payload=request.payload)


class SuspendingBench(Bench):
    """A unary handler that suspends once: the disconnect watcher starts."""

    async def unary(
        self,
        request: bench_pb2.UnaryRequest,
        ctx: RequestContext[bench_pb2.UnaryRequest, bench_pb2.UnaryResponse],
    ) -> bench_pb2.UnaryResponse:
        await anyio.lowlevel.checkpoint()
        return bench_pb2.UnaryResponse(payload=request.payload)


def runners() -> dict[str, Callable[[], Awaitable[int]]]:
    out: dict[str, Callable[[], Awaitable[int]]] = {}
    for name, case in CASES.items():
        out[f"asgi-{name}"] = asgi_runner(ours_app, case)
    connect = CASES["connect"]
    out["asgi-connect-awaits"] = asgi_runner(BenchServiceASGIApplication(AwaitingBench()), connect)
    out["asgi-connect-suspends"] = asgi_runner(
        BenchServiceASGIApplication(SuspendingBench()), connect
    )
    out["native-connect"] = native_runner(ours_app.router, CASES["connect"])
    out["native-grpc"] = native_runner(ours_app.router, CASES["grpc"])
    out["native-stream"] = native_runner(ours_app.router, CASES["stream"])
    out["minimal-connect"] = asgi_runner(minimal_app, CASES["connect"])
    out["minimal-stream"] = asgi_runner(minimal_app, CASES["stream"])
    return out


async def measure(one: Callable[[], Awaitable[int]], calls: int) -> tuple[float, float]:
    """Microseconds of wall time and of CPU time per call."""
    for _ in range(max(calls // 10, 50)):
        await one()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        await one()
    return (
        (time.perf_counter() - wall) / calls * 1e6,
        (time.process_time() - cpu) / calls * 1e6,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="regex on the case names")
    parser.add_argument("--backend", choices=["asyncio", "trio", "both"], default="both")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs")
    parser.add_argument("--profile", action="store_true", help="cProfile the first case")
    args = parser.parse_args()
    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]
    selected = {k: v for k, v in runners().items() if re.search(args.only, k)}
    if args.profile:
        name, one = next(iter(selected.items()))
        profiler = cProfile.Profile()
        profiler.enable()
        anyio.run(measure, one, args.calls, backend=backends[0])
        profiler.disable()
        print(f"{name} on {backends[0]}")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        return
    print(f"{'case':<22} {'backend':<8} {'us/call':>8} {'cpu us/call':>12}")
    for name, one in selected.items():
        for backend in backends:
            runs = [
                anyio.run(measure, one, args.calls, backend=backend) for _ in range(args.repeat)
            ]
            wall = min(r[0] for r in runs)
            cpu = min(r[1] for r in runs)
            print(f"{name:<22} {backend:<8} {wall:>8.1f} {cpu:>12.1f}")


if __name__ == "__main__":
    main()
