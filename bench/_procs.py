"""Child processes of the benchmark: started pinned to a core, always cleaned up.

Every child gets its own session (process group), so a signal meant for the
benchmark never reaches a server half-way, and ``stop_all`` (run from
``finally`` on any exit, Ctrl-C included) ends each group this process started,
by its id, and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

SERVER_CORE = 0
LOAD_CORE = 1

_TASKSET = shutil.which("taskset")
PINNED = _TASKSET is not None and (os.cpu_count() or 1) >= 2
"""Server on core 0, load generator or client on core 1 (when taskset and 2 cores exist)."""

_started: list[subprocess.Popen[bytes]] = []


def pinned(argv: Sequence[str], core: int) -> list[str]:
    if PINNED and _TASKSET is not None:
        return [_TASKSET, "-c", str(core), *argv]
    return list(argv)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    else:
        # The leader is gone; a worker it forked (granian's) may still hold the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    if process in _started:
        _started.remove(process)


def stop_all() -> None:
    while _started:
        _stop(_started[-1], grace=1.0)


def spawn(
    argv: Sequence[str], core: int, env: dict[str, str] | None, log: Path | None
) -> subprocess.Popen[bytes]:
    stderr = log.open("wb") if log is not None else subprocess.DEVNULL
    try:
        process = subprocess.Popen(
            pinned(argv, core),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if log is None else stderr,
            stderr=stderr,
            env=env,
            start_new_session=True,
        )
    finally:
        if log is not None and not isinstance(stderr, int):
            stderr.close()
    _started.append(process)
    return process


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " / ".join(line.strip() for line in text[-lines:])

    def cpu_seconds(self) -> float:
        """CPU time of every process in the server's group (granian forks a worker)."""
        return group_cpu_seconds(self.process.pid)


class ServerFailed(Exception):
    pass


@contextlib.contextmanager
def server(
    name: str, argv: Sequence[str], env: dict[str, str] | None, timeout: float = 30.0
) -> Iterator[Server]:
    """Starts a server on a free port (``{port}`` in ``argv``) and waits until it accepts."""
    port = free_port()
    with tempfile.NamedTemporaryFile(prefix="bench-server-", suffix=".log", delete=False) as f:
        log = Path(f.name)
    process = spawn([arg.replace("{port}", str(port)) for arg in argv], SERVER_CORE, env, log)
    running = Server(name, port, process, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise ServerFailed(f"{name} exited ({process.returncode}): {running.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise ServerFailed(f"{name} did not listen within {timeout:.0f}s")
            time.sleep(0.05)
        yield running
    finally:
        _stop(process)
        log.unlink(missing_ok=True)


def run(
    argv: Sequence[str], core: int, env: dict[str, str] | None, timeout: float
) -> tuple[int, str, str]:
    """Runs a load generator or client to completion (pinned); returns code, stdout, stderr."""
    process = subprocess.Popen(
        pinned(argv, core),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    _started.append(process)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(process, grace=0.5)
        out, err = process.communicate()
        return -1, out.decode(errors="replace"), f"timed out after {timeout:.0f}s"
    finally:
        if process in _started:
            _stop(process)
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def group_cpu_seconds(pgid: int) -> float:
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        # fields[2] is the process group; [11] and [12] are utime and stime in ticks.
        if len(fields) > 12 and int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / _TICK
