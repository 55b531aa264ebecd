"""Driving h2load (nghttp2's load generator) and reading its summary."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import _procs

CONNECTIONS_H1 = 16
"""HTTP/1.1: 16 connections, one request in flight each (no pipelining)."""
CONNECTIONS_H2 = 4
STREAMS_H2 = 4
"""h2c: 4 connections x 4 concurrent streams: the same 16 requests in flight."""

_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_RATE = re.compile(r"finished in [\d.]+m?s, ([\d.]+) req/s")


@dataclass
class Load:
    rate: float
    """Requests completed per second of the measured period."""
    note: str = ""


class LoadFailed(Exception):
    pass


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def run_h2load(
    h2load: str,
    url: str,
    body: Path,
    headers: dict[str, str],
    *,
    http1: bool,
    seconds: float,
    warmup: float,
) -> Load:
    argv = [h2load, "-t", "1", "-D", _ms(seconds), f"--warm-up-time={_ms(warmup)}"]
    if http1:
        argv += ["--h1", "-c", str(CONNECTIONS_H1), "-m", "1"]
    else:
        argv += ["-c", str(CONNECTIONS_H2), "-m", str(STREAMS_H2)]
    argv += ["-d", str(body)]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    code, out, err = _procs.run(argv, _procs.LOAD_CORE, None, timeout=seconds + warmup + 30)
    requests, status, rate = _REQUESTS.search(out), _STATUS.search(out), _RATE.search(out)
    if code != 0 or requests is None or status is None or rate is None:
        raise LoadFailed(f"h2load failed ({code}): {(err or out).strip()[-300:]}")
    _total, _started, done, succeeded, _failed, errored, timeouts = map(int, requests.groups())
    ok, _3xx, client_errors, server_errors = map(int, status.groups())
    if done == 0:
        raise LoadFailed("h2load completed no request")
    if errored or timeouts or client_errors or server_errors:
        raise LoadFailed(
            f"{errored} errored, {timeouts} timed out, {client_errors} 4xx, {server_errors} 5xx "
            f"of {done} requests"
        )
    note = ""
    if succeeded == 0 and ok == 0 and http1:
        # h2load records an HTTP/1.1 status only from a non-empty reason phrase; h11-based
        # servers send "HTTP/1.1 200 " and every response counts as "failed" there. The
        # server's answer was checked with a real client before the load.
        note = "no reason phrase in status line: h2load rate counts done requests"
    return Load(float(rate.group(1)), note)
