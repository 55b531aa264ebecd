"""``python -m bench.run``: measure every row, print one table of throughput and ratios.

Server rows: a server in its own process on core 0, loaded by h2load on core 1
(16 requests in flight), after one real call checked that the server answers
correctly. Client rows: a client in its own process on core 1 against a fixed
fast server on core 0 (the minimal ASGI app on granian, a Rust HTTP server, for
Connect; grpcio's sync server for gRPC), each as fast as it can, sequentially
or with 16 concurrent tasks. Ratios compare rows of this same run; targets come
from the issues (#3 streaming, #4 gRPC, #6 native server).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

from . import _common, _h2load, _procs, _setup

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------
# what is measured


@dataclass(frozen=True)
class Workload:
    http1: bool
    protocol: str
    stream: bool
    body: bytes
    headers: dict[str, str]
    path: str

    @property
    def per_call(self) -> int:
        return _common.STREAM_COUNT if self.stream else 1


_CONNECT_UNARY = (_common.CONNECT_UNARY_BODY, _common.CONNECT_UNARY_HEADERS, _common.UNARY_PATH)
_GRPC_UNARY = (_common.GRPC_UNARY_BODY, _common.GRPC_HEADERS, _common.UNARY_PATH)
_CONNECT_STREAM = (_common.CONNECT_STREAM_BODY, _common.CONNECT_STREAM_HEADERS, _common.STREAM_PATH)
_GRPC_STREAM = (_common.GRPC_STREAM_BODY, _common.GRPC_HEADERS, _common.STREAM_PATH)

WORKLOADS = {
    "h1": Workload(True, "connect", False, *_CONNECT_UNARY),
    "h2c": Workload(False, "connect", False, *_CONNECT_UNARY),
    "grpc": Workload(False, "grpc", False, *_GRPC_UNARY),
    "stream-h1": Workload(True, "connect", True, *_CONNECT_STREAM),
    "stream-h2c": Workload(False, "connect", True, *_CONNECT_STREAM),
    "stream-grpc": Workload(False, "grpc", True, *_GRPC_STREAM),
}
WORKLOAD_LABEL = {
    "h1": "HTTP/1.1",
    "h2c": "h2c",
    "grpc": "h2c gRPC",
    "stream-h1": "HTTP/1.1",
    "stream-h2c": "h2c",
    "stream-grpc": "h2c gRPC",
}


@dataclass
class Row:
    key: str
    section: str
    label: str
    unit: str = "calls/s"
    value: float | None = None
    server_cpu: float | None = None
    client_cpu: float | None = None
    note: str = ""
    skipped: str = ""
    measured: str = "server"
    """Whose CPU bounds the row: the ``server`` (h2load rows) or the ``client``."""
    saturates: bool = True
    """False for sequential clients: they wait for each answer, so never fill a core."""

    def busy(self) -> float | None:
        """The measured process's share of one core while it was measured."""
        return self.server_cpu if self.measured == "server" else self.client_cpu

    def per_cpu(self) -> float | None:
        """Throughput per CPU-second of the measured process: robust when the machine is busy."""
        busy = self.busy()
        if self.value is None or not busy:
            return None
        return self.value / busy


@dataclass(frozen=True)
class Compare:
    row: str
    baseline: str
    target: float | None = None
    source: str = ""
    guide: str = ""
    """A ratio the issue measured elsewhere, shown for orientation (not a target)."""


@dataclass
class ServerRow:
    row: Row
    server: str
    workload: str


@dataclass
class ClientRow:
    row: Row
    server: str
    argv: list[str]
    connectrpc: bool = False


@dataclass
class Plan:
    servers: dict[str, tuple[str, list[str], bool]] = field(default_factory=dict)
    """id -> (name, argv with {port}, needs connect-python's venv)."""
    server_rows: list[ServerRow] = field(default_factory=list)
    client_rows: list[ClientRow] = field(default_factory=list)
    compares: list[Compare] = field(default_factory=list)

    def rows(self) -> list[Row]:
        return [r.row for r in self.server_rows] + [r.row for r in self.client_rows]


SECTION_ASGI = "Server, unary: ASGI apps on ASGI servers (h2load, 16 in flight)"
SECTION_NATIVE = "Server, unary: native server and grpcio (h2load, 16 in flight)"
SECTION_STREAM = f"Server streaming: messages/s ({_common.STREAM_COUNT} per call, h2load)"
SECTION_CLIENT = "Client, unary Connect: against the minimal ASGI app on granian"
SECTION_GRPC_CLIENT = "Client, unary gRPC: against grpcio's sync server"
SECTIONS = (SECTION_ASGI, SECTION_NATIVE, SECTION_STREAM, SECTION_CLIENT, SECTION_GRPC_CLIENT)


def build_plan(python: str, crpc_python: str, seconds: float, warmup: float) -> Plan:
    plan = Plan()
    bench = [python, "-m", "bench.servers"]
    port = ["--port", "{port}"]
    crpc = [crpc_python, "-m", "bench.connectrpc_side"]
    granian = [
        python, "-m", "granian", "--interface", "asgi", "--http", "auto", "--host", "127.0.0.1",
        "--port", "{port}", "--workers", "1", "--runtime-threads", "1", "--no-ws",
        "--log-level", "warning",
    ]  # fmt: skip
    plan.servers = {
        "hyp-min": ("hypercorn minimal", [*bench, "hypercorn", "--app", "minimal", *port], False),
        "hyp-ours": ("hypercorn ours", [*bench, "hypercorn", "--app", "ours", *port], False),
        "hyp-crpc": ("hypercorn connect-python", [*crpc, "serve", "hypercorn", *port], True),
        "uv-min": ("uvicorn minimal", [*bench, "uvicorn", "--app", "minimal", *port], False),
        "uv-ours": ("uvicorn ours", [*bench, "uvicorn", "--app", "ours", *port], False),
        "uv-crpc": ("uvicorn connect-python", [*crpc, "serve", "uvicorn", *port], True),
        "gr-min": ("granian minimal", [*granian, "bench.apps:minimal_app"], False),
        "gr-ours": ("granian ours", [*granian, "bench.apps:ours_app"], False),
        "nat-min": ("native minimal", [*bench, "native", "--app", "minimal", *port], False),
        # --loop auto, as the CLI defaults: uvloop, since the bench installs it.
        "nat-a": ("native asyncio", [*bench, "native", "--backend", "asyncio", *port], False),
        "nat-a-std": (
            "native asyncio, standard loop",
            [*bench, "native", "--backend", "asyncio", "--loop", "asyncio", *port],
            False,
        ),
        "nat-t": ("native trio", [*bench, "native", "--backend", "trio", *port], False),
        "grpcio-aio": ("grpcio aio", [*bench, "grpcio-aio", *port], False),
        "grpcio-sync": ("grpcio sync", [*bench, "grpcio-sync", *port], False),
    }

    def srv(key: str, section: str, label: str, server: str, workload: str) -> None:
        unit = "msgs/s" if WORKLOADS[workload].stream else "calls/s"
        row = Row(key, section, f"{label} · {WORKLOAD_LABEL[workload]}", unit)
        plan.server_rows.append(ServerRow(row, server, workload))

    def cmp(
        row: str, baseline: str, target: float | None = None, source: str = "", guide: str = ""
    ) -> None:
        plan.compares.append(Compare(row, baseline, target, source, guide))

    a = SECTION_ASGI
    for wl in ("h1", "h2c"):
        srv(f"hyp.min.{wl}", a, "minimal ASGI app on hypercorn", "hyp-min", wl)
        srv(f"hyp.ours.{wl}", a, "connect-anyio app on hypercorn", "hyp-ours", wl)
        srv(f"hyp.crpc.{wl}", a, "connect-python app on hypercorn", "hyp-crpc", wl)
        cmp(f"hyp.ours.{wl}", f"hyp.min.{wl}", 0.9, "#3")
        cmp(f"hyp.crpc.{wl}", f"hyp.min.{wl}", guide="0.68x" if wl == "h1" else "0.79x")
        cmp(f"hyp.ours.{wl}", f"hyp.crpc.{wl}")
    srv("hyp.min.grpc", a, "minimal ASGI app on hypercorn", "hyp-min", "grpc")
    srv("hyp.ours.grpc", a, "connect-anyio app on hypercorn", "hyp-ours", "grpc")
    cmp("hyp.ours.grpc", "hyp.min.grpc", source="#4")
    srv("uv.min.h1", a, "minimal ASGI app on uvicorn", "uv-min", "h1")
    srv("uv.ours.h1", a, "connect-anyio app on uvicorn", "uv-ours", "h1")
    srv("uv.crpc.h1", a, "connect-python app on uvicorn", "uv-crpc", "h1")
    cmp("uv.ours.h1", "uv.min.h1")
    cmp("uv.crpc.h1", "uv.min.h1", guide="0.43x")
    cmp("uv.ours.h1", "uv.crpc.h1")
    for wl in ("h1", "h2c"):
        srv(f"gr.min.{wl}", a, "minimal ASGI app on granian", "gr-min", wl)
        srv(f"gr.ours.{wl}", a, "connect-anyio app on granian", "gr-ours", wl)
        cmp(f"gr.ours.{wl}", f"gr.min.{wl}")

    n = SECTION_NATIVE
    for wl in ("h1", "h2c"):
        srv(f"nat.min.{wl}", n, "minimal ASGI app on native server (uvloop)", "nat-min", wl)
    for wl in ("h1", "h2c", "grpc"):
        srv(f"nat.a.{wl}", n, "connect-anyio native · asyncio (uvloop)", "nat-a", wl)
    srv("nat.a.std.h1", n, "connect-anyio native · asyncio, standard loop", "nat-a-std", "h1")
    for wl in ("h1", "h2c", "grpc"):
        srv(f"nat.t.{wl}", n, "connect-anyio native · trio", "nat-t", wl)
    srv("grpcio.aio.grpc", n, "grpcio aio server", "grpcio-aio", "grpc")
    srv("grpcio.sync.grpc", n, "grpcio sync server", "grpcio-sync", "grpc")
    cmp("nat.a.h1", "uv.min.h1", 0.5, "#6")
    cmp("nat.a.h1", "uv.crpc.h1", 1.0, "#6")
    cmp("nat.a.h1", "nat.min.h1")
    cmp("nat.a.std.h1", "uv.min.h1")
    cmp("nat.a.h2c", "hyp.ours.h2c", 2.0, "#6")
    cmp("nat.a.h2c", "nat.min.h2c")
    cmp("nat.a.grpc", "grpcio.aio.grpc", 1.0, "#6")
    cmp("nat.a.grpc", "grpcio.sync.grpc")
    for wl in ("h1", "h2c", "grpc"):
        cmp(f"nat.t.{wl}", f"nat.a.{wl}", 0.7, "#6")

    s = SECTION_STREAM
    for wl in ("stream-h1", "stream-h2c"):
        srv(f"st.hyp.min.{wl}", s, "minimal ASGI app on hypercorn", "hyp-min", wl)
        srv(f"st.hyp.ours.{wl}", s, "connect-anyio app on hypercorn", "hyp-ours", wl)
        srv(f"st.nat.a.{wl}", s, "connect-anyio native · asyncio (uvloop)", "nat-a", wl)
        srv(f"st.nat.t.{wl}", s, "connect-anyio native · trio", "nat-t", wl)
        cmp(f"st.hyp.ours.{wl}", f"st.hyp.min.{wl}", source="#3")
        cmp(f"st.nat.a.{wl}", f"st.hyp.ours.{wl}")
        cmp(f"st.nat.t.{wl}", f"st.nat.a.{wl}", 0.7, "#6")
    nat_a = "connect-anyio native · asyncio (uvloop)"
    srv("st.nat.a.stream-grpc", s, nat_a, "nat-a", "stream-grpc")
    srv("st.grpcio.aio.stream-grpc", s, "grpcio aio server", "grpcio-aio", "stream-grpc")
    srv("st.grpcio.sync.stream-grpc", s, "grpcio sync server", "grpcio-sync", "stream-grpc")
    cmp("st.nat.a.stream-grpc", "st.grpcio.aio.stream-grpc")

    # Clients. The fixed servers' own ceiling (h2load) shows whether a client row is
    # bounded by the server instead of by the client.
    c, g = SECTION_CLIENT, SECTION_GRPC_CLIENT
    timing = ["--seconds", f"{seconds:g}", "--warmup", f"{warmup:g}"]
    for wl in ("h1", "h2c"):
        srv(f"c.ceiling.{wl}", c, "fixed server ceiling: minimal ASGI on granian", "gr-min", wl)
    srv("c.ceiling.grpc", g, "fixed server ceiling: grpcio sync server", "grpcio-sync", "grpc")

    def cli(
        key: str, section: str, label: str, server: str, argv: list[str], connectrpc: bool = False
    ) -> None:
        row = Row(key, section, label, measured="client", saturates="sequential" not in label)
        plan.client_rows.append(ClientRow(row, server, argv, connectrpc))

    clients = [python, "-m", "bench.clients"]
    for wl, http in (("h1", "1"), ("h2c", "2")):
        for conc in (1, 16):
            how = f"{WORKLOAD_LABEL[wl]} · " + ("sequential" if conc == 1 else f"{conc} tasks")
            args = ["--url", "{url}", "--http", http, "--concurrency", str(conc), *timing]
            k = f"{wl}.{conc}"
            cli(f"c.crpc.{k}", c, f"connect-python client (pyqwest) · {how}", "gr-min",
                [*crpc, "client", *args], connectrpc=True)  # fmt: skip
            cli(f"c.ours.a.{k}", c, f"connect-anyio client · asyncio · {how}", "gr-min",
                [*clients, "ours", "--backend", "asyncio", *args])  # fmt: skip
            cli(f"c.ours.t.{k}", c, f"connect-anyio client · trio · {how}", "gr-min",
                [*clients, "ours", "--backend", "trio", *args])  # fmt: skip
            cli(f"c.httpcore.{k}", c, f"raw httpcore pool · asyncio · {how}", "gr-min",
                [*clients, "httpcore", *args])  # fmt: skip
            cmp(f"c.ours.a.{k}", f"c.crpc.{k}", 1.0 if conc > 1 else 0.8, "#3")
            cmp(f"c.ours.a.{k}", f"c.httpcore.{k}")
            cmp(f"c.ours.t.{k}", f"c.ours.a.{k}")
            cmp(f"c.httpcore.{k}", f"c.crpc.{k}")
        args = ["--url", "{url}", "--http", http, *timing]
        cli(f"c.sync.{wl}.1", c, f"ConnectClientSync · {WORKLOAD_LABEL[wl]} · sequential",
            "gr-min", [*clients, "ours-sync", *args])  # fmt: skip
        cmp(f"c.sync.{wl}.1", f"c.ours.a.{wl}.1")
    for conc in (1, 16):
        how = "sequential" if conc == 1 else f"{conc} tasks"
        args = ["--url", "{url}", "--http", "2", "--concurrency", str(conc), *timing]
        cli(f"c.grpcio.{conc}", g, f"grpcio aio client · {how}", "grpcio-sync",
            [*clients, "grpcio-aio", *args])  # fmt: skip
        for backend in ("asyncio", "trio"):
            cli(f"c.ours.grpc.{backend[0]}.{conc}", g,
                f"connect-anyio gRPC client · {backend} · {how}", "grpcio-sync",
                [*clients, "ours", "--protocol", "grpc", "--backend", backend, *args])  # fmt: skip
        cmp(f"c.ours.grpc.a.{conc}", f"c.grpcio.{conc}", source="#4")
        cmp(f"c.ours.grpc.t.{conc}", f"c.ours.grpc.a.{conc}")
    return plan


# ---------------------------------------------------------------------------
# measuring


@dataclass
class Settings:
    seconds: float
    warmup: float
    h2load: str | None
    h2load_missing: str
    crpc_python: str | None
    crpc_missing: str
    env: dict[str, str]
    bodies: Path
    repeat: int = 1
    """Measure each row this many times and keep the best: a busy machine only slows rows."""


def _progress(row: Row) -> None:
    if row.skipped:
        print(f"  {row.key:<28} skipped: {row.skipped}", flush=True)
        return
    cpu = []
    if row.server_cpu is not None:
        cpu.append(f"server CPU {row.server_cpu:.0%}")
    if row.client_cpu is not None:
        cpu.append(f"client CPU {row.client_cpu:.0%}")
    value = f"{row.value:,.0f} {row.unit}" if row.value is not None else "—"
    print(f"  {row.key:<28} {value:>16}  {', '.join(cpu)}", flush=True)


def _body_file(settings: Settings, workload: str) -> Path:
    path = settings.bodies / f"{workload}.bin"
    if not path.exists():
        path.write_bytes(WORKLOADS[workload].body)
    return path


@contextlib.contextmanager
def _maybe_server(
    plan: Plan, server_id: str, settings: Settings, failures: dict[str, str]
) -> Iterator[_procs.Server | None]:
    """Starts one server; yields None (and remembers why) when it cannot run."""
    name, argv, needs_crpc = plan.servers[server_id]
    if server_id in failures:
        yield None
        return
    if needs_crpc and settings.crpc_python is None:
        failures[server_id] = settings.crpc_missing
        yield None
        return
    try:
        ctx = _procs.server(name, argv, settings.env)
        running = ctx.__enter__()
    except _procs.ServerFailed as e:
        failures[server_id] = str(e)
        yield None
        return
    try:
        yield running
    finally:
        ctx.__exit__(None, None, None)


def measure_server_rows(plan: Plan, settings: Settings, only: re.Pattern[str] | None) -> None:
    from ._probe import probe

    rows = [r for r in plan.server_rows if only is None or only.search(r.row.key)]
    failures: dict[str, str] = {}
    order: list[str] = []
    for r in rows:
        if r.server not in order:
            order.append(r.server)
    for server_id in order:
        group = [r for r in rows if r.server == server_id]
        if settings.h2load is None:
            for r in group:
                r.row.skipped = settings.h2load_missing
                _progress(r.row)
            continue
        with _maybe_server(plan, server_id, settings, failures) as running:
            for r in group:
                if running is None:
                    r.row.skipped = failures[server_id]
                    _progress(r.row)
                    continue
                wl = WORKLOADS[r.workload]
                try:
                    probe(running.url(), http1=wl.http1, protocol=wl.protocol, stream=wl.stream)
                except Exception as e:
                    r.row.skipped = f"server answered wrongly: {type(e).__name__}: {e}"[:200]
                    _progress(r.row)
                    continue
                failure = ""
                for _ in range(settings.repeat):
                    cpu_before, t0 = running.cpu_seconds(), time.monotonic()
                    try:
                        load = _h2load.run_h2load(
                            settings.h2load,
                            running.url() + wl.path,
                            _body_file(settings, r.workload),
                            wl.headers,
                            http1=wl.http1,
                            seconds=settings.seconds,
                            warmup=settings.warmup,
                        )
                    except _h2load.LoadFailed as e:
                        failure = f"{e} (server log: {running.log_tail(2)})"[:300]
                        break
                    value = load.rate * wl.per_call
                    if r.row.value is None or value > r.row.value:
                        r.row.value = value
                        r.row.server_cpu = (running.cpu_seconds() - cpu_before) / (
                            time.monotonic() - t0
                        )
                        r.row.note = load.note
                if failure:
                    r.row.value = r.row.server_cpu = None
                    r.row.skipped = failure
                _progress(r.row)


def _client_once(row: Row, argv: list[str], running: _procs.Server, settings: Settings) -> bool:
    """Runs one client process; keeps its result if it beats the row's. False: it failed."""
    timeout = settings.seconds + settings.warmup + 60
    cpu_before = running.cpu_seconds()
    code, out, err = _procs.run(argv, _procs.LOAD_CORE, settings.env, timeout)
    busy = running.cpu_seconds() - cpu_before
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        tail = [line for line in err.strip().splitlines() if line.strip()]
        row.value = row.client_cpu = row.server_cpu = None
        row.skipped = f"client failed ({code}): {tail[-1] if tail else ''}"[:300]
        return False
    result = json.loads(lines[-1])
    if row.value is not None and float(result["rate"]) <= row.value:
        return True
    row.value = float(result["rate"])
    row.client_cpu = float(result["cpu"])
    # The server also worked while the client started and warmed up: an upper bound,
    # good enough to tell a server-bound row.
    row.server_cpu = busy / (settings.seconds + settings.warmup)
    row.note = f"client exited with {code} after reporting" if code != 0 else ""
    return True


def measure_client_rows(plan: Plan, settings: Settings, only: re.Pattern[str] | None) -> None:
    rows = [r for r in plan.client_rows if only is None or only.search(r.row.key)]
    failures: dict[str, str] = {}
    order: list[str] = []
    for r in rows:
        if r.server not in order:
            order.append(r.server)
    for server_id in order:
        group = [r for r in rows if r.server == server_id]
        with _maybe_server(plan, server_id, settings, failures) as running:
            for r in group:
                if running is None:
                    r.row.skipped = failures[server_id]
                elif r.connectrpc and settings.crpc_python is None:
                    r.row.skipped = settings.crpc_missing
                else:
                    argv = [arg.replace("{url}", running.url()) for arg in r.argv]
                    for _ in range(settings.repeat):
                        if not _client_once(r.row, argv, running, settings):
                            break
                _progress(r.row)


# ---------------------------------------------------------------------------
# the table


SATURATED = 0.85
"""Below this CPU share, a row that should fill its core did not: the machine was busy."""


@dataclass
class Verdict:
    ratio: float
    ratio_per_cpu: float | None
    unsaturated: list[str]
    """Rows of the pair whose process did not fill its core (the machine was busy)."""
    met: bool | None
    judged_on: str
    """``throughput``, or ``per CPU-s`` when a row was unsaturated: then that is the better
    estimate of the one-core-each ratio the targets are about."""

    def text(self) -> str:
        out = f"{self.ratio:.2f}x"
        if self.ratio_per_cpu is not None:
            out += f" [{self.ratio_per_cpu:.2f}x]"
        return out + (" !" if self.unsaturated else "")

    def outcome(self) -> str:
        if self.met is None:
            return ""
        word = "MET" if self.met else "MISSED"
        return f"  {word}" + (" (per CPU-s)" if self.judged_on != "throughput" else "")


def _verdict(compare: Compare, row: Row, base: Row) -> Verdict:
    ratio = (row.value or 0.0) / (base.value or 1.0)
    row_cpu, base_cpu = row.per_cpu(), base.per_cpu()
    per_cpu = row_cpu / base_cpu if row_cpu and base_cpu else None
    starved = [
        r.key
        for r in (row, base)
        if r.saturates and r.busy() is not None and (r.busy() or 0.0) < SATURATED
    ]
    judged, judged_on = ratio, "throughput"
    if starved and per_cpu is not None:
        judged, judged_on = per_cpu, "per CPU-s"
    met = None if compare.target is None else judged >= compare.target
    return Verdict(ratio, per_cpu, starved, met, judged_on)


def _target_text(compare: Compare) -> str:
    if compare.target is not None:
        return f"target >= {compare.target:g}x ({compare.source})"
    if compare.guide:
        return f"issue guide {compare.guide}"
    return compare.source and f"({compare.source})"


def _row_line(row: Row, width: int) -> str:
    if row.skipped:
        return f"{row.label:<{width}}{'skipped':>9}  {row.skipped}"
    value = f"{row.value:,.0f}" if row.value is not None else "—"
    per_cpu = row.per_cpu()
    cells = [
        f"{value:>9}",
        "msgs/s" if row.unit == "msgs/s" else "      ",
        f"{per_cpu:>9,.0f}" if per_cpu is not None else f"{'':>9}",
        f"{row.server_cpu:>5.0%}" if row.server_cpu is not None else f"{'':>5}",
        f"{row.client_cpu:>5.0%}" if row.client_cpu is not None else f"{'':>5}",
    ]
    note = f"  note: {row.note}" if row.note else ""
    return f"{row.label:<{width}}{' '.join(cells)}{note}".rstrip()


def render(
    plan: Plan, meta: dict[str, str], shown: set[str]
) -> tuple[str, list[dict[str, object]]]:
    rows = plan.rows()
    by_key = {row.key: row for row in rows}
    compares: dict[str, list[Compare]] = {}
    for compare in plan.compares:
        compares.setdefault(compare.row, []).append(compare)
    width = max(len(row.label) for row in rows if row.key in shown) + 2
    lines = [
        "connect-anyio benchmark: " + ", ".join(f"{k} {v}" for k, v in meta.items()),
        "value: calls/s (msgs/s for streams) | per CPU-s: value / CPU share of the measured "
        "process (server for h2load rows, client for client rows) | srv, cli: CPU share of one "
        "core",
        "under each row: ratio to a baseline row of this run (x), the same per CPU-s in "
        "brackets, and the issue's target; '!' marks a row whose process did not fill its "
        f"core (< {SATURATED:.0%}: other load on the machine); targets are then judged on the "
        "per-CPU-s ratio, the better estimate of 'one core each'",
        "",
        f"{'':<{width}}{'value':>9} {'':6} {'per CPU-s':>9} {'srv':>5} {'cli':>5}",
    ]
    records: list[dict[str, object]] = []
    for section in SECTIONS:
        in_section = [row for row in rows if row.section == section and row.key in shown]
        if not in_section:
            continue
        lines += ["", section, "-" * len(section)]
        for row in in_section:
            lines.append(_row_line(row, width))
            for compare in compares.get(row.key, []):
                base = by_key[compare.baseline]
                record: dict[str, object] = {
                    "row": compare.row,
                    "baseline": compare.baseline,
                    "target": compare.target,
                    "source": compare.source,
                    "guide": compare.guide,
                }
                text, outcome = "—", ""
                if row.value is not None and base.value:
                    verdict = _verdict(compare, row, base)
                    record.update(asdict(verdict))
                    text, outcome = verdict.text(), verdict.outcome()
                target = _target_text(compare)
                lines.append(f"    {text} of {base.label}   {target}{outcome}".rstrip())
                records.append(record)
    return "\n".join(lines), records


# ---------------------------------------------------------------------------


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time per row")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured time per row")
    parser.add_argument(
        "--repeat", type=int, default=1, help="measure each row N times, keep the best"
    )
    parser.add_argument("--only", help="regex: measure only rows whose key matches")
    parser.add_argument("--list", action="store_true", help="list row keys and exit")
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / ".nox" / "bench-results" / "latest.json",
        help="where to write the table as JSON",
    )
    parser.add_argument(
        "--connectrpc-venv",
        type=Path,
        default=ROOT / ".nox" / "bench-connectrpc",
        help="venv for connect-python (created when missing)",
    )
    parser.add_argument("--no-connectrpc", action="store_true", help="skip connect-python rows")
    parser.add_argument(
        "--profile",
        metavar="KEY",
        action="append",
        help="instead of the table: sample row KEY's measured process with py-spy (repeatable)",
    )
    args = parser.parse_args(argv)

    plan = build_plan(sys.executable, "{crpc}", args.seconds, args.warmup)
    if args.list:
        for row in plan.rows():
            print(f"{row.key:<30} {row.label}")
        return 0
    only = re.compile(args.only) if args.only else None
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    load_before = _load()

    h2load, h2load_missing = _setup.ensure_h2load()
    if h2load is None:
        print(f"bench: SKIPPING server rows: {h2load_missing}", flush=True)
    crpc_python: str | None = None
    crpc_missing = "connect-python rows disabled (--no-connectrpc)"
    if not args.no_connectrpc:
        crpc_python, crpc_missing = _setup.ensure_connectrpc_venv(args.connectrpc_venv)
        if crpc_python is None:
            print(f"bench: SKIPPING connect-python rows: {crpc_missing}", flush=True)
    plan = build_plan(sys.executable, crpc_python or "python", args.seconds, args.warmup)

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    try:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            settings = Settings(
                args.seconds, args.warmup, h2load, h2load_missing, crpc_python, crpc_missing,
                env, Path(tmp), max(1, args.repeat),
            )  # fmt: skip
            if args.profile:
                from .profile import profile

                for key in args.profile:
                    out_dir = args.json.parent / "profiles"
                    print(f"\n== {key}\n{profile(plan, settings, key, out_dir)}", flush=True)
                return 0
            print("bench: server rows", flush=True)
            measure_server_rows(plan, settings, only)
            print("bench: client rows", flush=True)
            measure_client_rows(plan, settings, only)
    finally:
        _procs.stop_all()

    shown = {row.key for row in plan.rows() if only is None or only.search(row.key)}
    meta = {
        "python": platform.python_version(),
        "cores": str(os.cpu_count()),
        "pinned": "server core 0, load core 1" if _procs.PINNED else "no (taskset missing)",
        "per row": f"{args.seconds:g}s (+{args.warmup:g}s warm-up)"
        + (f", best of {args.repeat}" if args.repeat > 1 else ""),
        "load avg": f"{load_before} -> {_load()}",
        "took": f"{time.monotonic() - started:.0f}s",
    }
    table, records = render(plan, meta, shown)
    print()
    print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "meta": meta,
                "rows": [asdict(r) for r in plan.rows() if r.key in shown],
                "ratios": records,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nbench: table written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
