"""The measuring loop every client process runs, and how it reports.

Workers call in a loop; calls are counted only between the end of the warm-up
and the deadline; each worker finishes its call in flight and stops (no
cancellation noise in the numbers). The result is one JSON line on stdout.
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Awaitable, Callable

import anyio


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def report(calls: int, seconds: float, cpu_seconds: float) -> None:
    rate = calls / seconds if seconds > 0 else 0.0
    print(
        json.dumps({"calls": calls, "seconds": seconds, "rate": rate, "cpu": cpu_seconds / seconds})
    )


async def measure(
    call: Callable[[], Awaitable[object]], concurrency: int, warmup: float, seconds: float
) -> None:
    """Runs ``concurrency`` tasks calling ``call`` back to back and reports calls/s."""
    start = time.perf_counter() + warmup
    end = start + seconds
    counted = 0
    cpu_start = 0.0

    async def worker() -> None:
        nonlocal counted
        while True:
            await call()
            now = time.perf_counter()
            if now >= end:
                return
            if now >= start:
                counted += 1

    async def mark_start() -> None:
        nonlocal cpu_start
        await anyio.sleep(warmup)
        cpu_start = _cpu()

    async with anyio.create_task_group() as tg:
        tg.start_soon(mark_start)
        for _ in range(concurrency):
            tg.start_soon(worker)
    report(counted, seconds, _cpu() - cpu_start)


def measure_sync(call: Callable[[], object], warmup: float, seconds: float) -> None:
    """The sequential loop for blocking clients."""
    start = time.perf_counter() + warmup
    end = start + seconds
    counted = 0
    cpu_start: float | None = None
    while True:
        call()
        now = time.perf_counter()
        if now >= end:
            break
        if now >= start:
            if cpu_start is None:
                cpu_start = _cpu()
            counted += 1
    report(counted, seconds, _cpu() - (cpu_start or 0.0))
