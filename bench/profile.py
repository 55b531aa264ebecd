"""``python -m bench.run --profile KEY``: where one row's measured process spends its time.

Runs the row as the benchmark does while py-spy samples the process that bounds it
(the server for h2load rows, the client for client rows), then prints the
functions with the most samples: on their own (self) and with what they call
(inclusive). Needs ``py-spy`` (``pip install py-spy``); the nox session has it.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import _h2load, _procs

if TYPE_CHECKING:
    from .run import Plan, Settings

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")
SITE = re.compile(r".*/(site-packages|lib/python3\.\d+)/")
IDLE_LEAVES = (
    "_worker (concurrent/futures/thread.py)",
    "wait (threading.py)",
    "EpollSelector.select (selectors.py)",
)
"""Waits py-spy does not always see as idle: a thread pool's queue.get, an event loop's
epoll_wait (whose own CPU cost is small)."""
STARTUP = ("_find_and_load (", "SSLContext.load_default_certs (", "create_default_context (")
"""Frames of a client process's start (imports, TLS defaults), not of its calls."""


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    path = SITE.sub("", match["file"])
    path = re.sub(r".*/packages/runtime/src/", "", path)
    path = re.sub(r".*/work/main/", "", path)
    return f"{match['func']} ({path})"


def _module(frame: str) -> str:
    """The package a short frame's file belongs to (``asyncio``, ``h11``, ``connect_anyio``)."""
    path = frame[frame.rfind("(") + 1 : -1]
    top = path.split("/", 1)[0]
    return top.removesuffix(".py") if top else path


def summarize(raw: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per function, from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    modules: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        # The first frame is the process/thread name py-spy adds.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames or frames[-1].startswith(IDLE_LEAVES):
            continue
        if any(f.startswith(STARTUP) for f in frames):
            continue
        total += count
        own[frames[-1]] += count
        modules[_module(frames[-1])] += count
        for frame in set(frames):
            inclusive[frame] += count
    if total == 0:
        return "py-spy recorded no samples"
    lines = [
        f"{total} samples (active only; idle and process start excluded)",
        "",
        "self, by package:",
    ]
    lines += [f"  {n / total:6.1%}  {m}" for m, n in modules.most_common(12)]
    lines += ["", "self:"]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in inclusive.most_common(top * 2)]
    return "\n".join(lines)


def profile(plan: Plan, settings: Settings, key: str, out_dir: Path) -> str:
    from .run import WORKLOADS

    pyspy = shutil.which("py-spy")
    if pyspy is None:
        return "py-spy is not installed (pip install py-spy)"
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / f"{key}.txt"
    duration = settings.seconds + settings.warmup
    for srow in plan.server_rows:
        if srow.row.key != key:
            continue
        if settings.h2load is None:
            return settings.h2load_missing
        name, argv, _ = plan.servers[srow.server]
        wl = WORKLOADS[srow.workload]
        with _procs.server(name, argv, settings.env) as running, tempfile.TemporaryDirectory() as t:
            body = Path(t) / "body.bin"
            body.write_bytes(wl.body)
            spy = subprocess.Popen(
                [pyspy, "record", "--format", "raw", "-r", "250", "-o", str(raw),
                 "-d", f"{duration + 1:.0f}", "-p", str(running.process.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            time.sleep(0.5)
            load = _h2load.run_h2load(
                settings.h2load, running.url() + wl.path, body, wl.headers,
                http1=wl.http1, seconds=settings.seconds, warmup=settings.warmup,
            )  # fmt: skip
            spy.wait(duration + 30)
        return f"{key}: {load.rate * wl.per_call:,.0f}/s under py-spy\n" + summarize(raw)
    for crow in plan.client_rows:
        if crow.row.key != key:
            continue
        name, argv, _ = plan.servers[crow.server]
        with _procs.server(name, argv, settings.env) as running:
            command = [arg.replace("{url}", running.url()) for arg in crow.argv]
            code, out, err = _procs.run(
                [pyspy, "record", "--format", "raw", "-r", "250", "-o", str(raw), "--", *command],
                _procs.LOAD_CORE, settings.env, duration + 60,
            )  # fmt: skip
        if code != 0:
            return f"{key}: failed: {err.strip()[-300:]}"
        result = [line for line in out.splitlines() if line.startswith("{")]
        return f"{key}: {result[-1] if result else '?'} under py-spy\n" + summarize(raw)
    return f"no row {key!r} (see --list)"
