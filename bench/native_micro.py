"""``python -m bench.native_micro``: the native server's CPU cost per call, in this process.

Serves one application (``--app minimal|ours``) on the native server in this
process, loads it with h2load (another process, pinned to the load core when it
can be) and reports calls per second of *this process's* CPU time, which the
load generator and the rest of the machine do not disturb much. ``--profile
FILE`` writes a cProfile of the loaded period (slower; compare like with like).

    PYTHONPATH=gen:. python -m bench.native_micro --proto h1 --app minimal
"""

from __future__ import annotations

import argparse
import cProfile
import os
import shutil
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from . import _common, _h2load, _procs
from .apps import minimal_app, ours_app

_WORKLOADS: dict[str, tuple[bytes, dict[str, str], str, bool]] = {
    "h1": (_common.CONNECT_UNARY_BODY, _common.CONNECT_UNARY_HEADERS, _common.UNARY_PATH, True),
    "h2c": (_common.CONNECT_UNARY_BODY, _common.CONNECT_UNARY_HEADERS, _common.UNARY_PATH, False),
    "grpc": (_common.GRPC_UNARY_BODY, _common.GRPC_HEADERS, _common.UNARY_PATH, False),
    "stream-h1": (
        _common.CONNECT_STREAM_BODY,
        _common.CONNECT_STREAM_HEADERS,
        _common.STREAM_PATH,
        True,
    ),
    "stream-h2c": (
        _common.CONNECT_STREAM_BODY,
        _common.CONNECT_STREAM_HEADERS,
        _common.STREAM_PATH,
        False,
    ),
    "stream-grpc": (_common.GRPC_STREAM_BODY, _common.GRPC_HEADERS, _common.STREAM_PATH, False),
}


def _load(h2load: str, port: int, proto: str, seconds: float, body: Path) -> _h2load.Load:
    data, headers, path, http1 = _WORKLOADS[proto]
    body.write_bytes(data)
    return _h2load.run_h2load(
        h2load,
        f"http://127.0.0.1:{port}{path}",
        body,
        headers,
        http1=http1,
        seconds=seconds,
        warmup=0.5,
    )


async def _main(args: argparse.Namespace, h2load: str) -> list[tuple[float, float]]:
    from connect_anyio import serve

    app: Any = {"minimal": minimal_app, "ours": ours_app}[args.app]
    results: list[tuple[float, float]] = []
    async with anyio.create_task_group() as tg:
        addresses = await tg.start(partial(serve, app, host="127.0.0.1", port=0))
        port = addresses[0][1]
        with tempfile.TemporaryDirectory() as tmp:
            body = Path(tmp) / "body.bin"
            for _ in range(args.repeat):
                profiler = cProfile.Profile() if args.profile else None
                cpu0, wall0 = time.process_time(), time.perf_counter()
                if profiler is not None:
                    profiler.enable()
                load = await anyio.to_thread.run_sync(
                    _load, h2load, port, args.proto, args.seconds, body
                )
                if profiler is not None:
                    profiler.disable()
                    profiler.dump_stats(args.profile)
                cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                # h2load's rate covers its measured period; CPU covers warm-up too.
                calls = load.rate * args.seconds
                results.append((load.rate, calls / cpu))
                print(
                    f"{args.proto} {args.app} {args.backend}: {load.rate:,.0f} calls/s, "
                    f"{calls / cpu:,.0f} calls per CPU-second (busy {cpu / wall:.0%})",
                    flush=True,
                )
        tg.cancel_scope.cancel()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.native_micro")
    parser.add_argument("--proto", choices=sorted(_WORKLOADS), default="h1")
    parser.add_argument("--app", choices=["minimal", "ours"], default="ours")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--profile", help="write a cProfile of the loaded period here")
    parser.add_argument("--uvloop", action="store_true", help="asyncio on uvloop")
    args = parser.parse_args(argv)
    h2load = shutil.which("h2load")
    if h2load is None:
        raise SystemExit("h2load is missing (apt-get install nghttp2-client)")
    if _procs.PINNED:
        # This process on the server core; h2load pins itself to the load core.
        os.sched_setaffinity(0, {_procs.SERVER_CORE})
    options = {"use_uvloop": True} if args.uvloop and args.backend == "asyncio" else {}
    anyio.run(_main, args, h2load, backend=args.backend, backend_options=options)


if __name__ == "__main__":
    main()
