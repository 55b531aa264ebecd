"""The plugin as protoc and buf run it: features, editions, parameters and errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2

from protoc_gen_connect_anyio import generate

if TYPE_CHECKING:
    from conftest import CodegenTools

PLUGIN_SCRIPT = """\
import runpy

runpy.run_module("protoc_gen_connect_anyio", run_name="__main__")
"""


@pytest.fixture(scope="module")
def plugin(codegen: CodegenTools, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An executable running ``python -m protoc_gen_connect_anyio``, as protoc needs one."""
    directory = tmp_path_factory.mktemp("plugin")
    return codegen.write_executable(directory / "protoc-gen-connect-anyio", PLUGIN_SCRIPT)


def _protoc(
    codegen: CodegenTools,
    plugin: Path,
    out: Path,
    files: list[str],
    *,
    root: Path,
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    out.mkdir(exist_ok=True)
    return subprocess.run(
        [
            codegen.protoc(),
            f"--plugin=protoc-gen-connect-anyio={plugin}",
            f"--connect-anyio_out={out}",
            f"-I{root}",
            *extra,
            *files,
        ],
        env=codegen.python_env(),
        capture_output=True,
        text=True,
        check=False,
    )


def test_response_declares_features() -> None:
    response = generate(plugin_pb2.CodeGeneratorRequest())
    features = response.supported_features
    assert features & plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    assert features & plugin_pb2.CodeGeneratorResponse.FEATURE_SUPPORTS_EDITIONS
    assert response.minimum_edition == descriptor_pb2.EDITION_PROTO2
    assert response.maximum_edition == descriptor_pb2.EDITION_2024
    assert not response.HasField("error")
    assert not response.file


def test_protoc_runs_the_plugin(codegen: CodegenTools, plugin: Path, tmp_path: Path) -> None:
    """protoc accepts the response (proto2, proto3 optional, edition 2023) and writes it."""
    files = codegen.proto_files(codegen.protos)
    result = _protoc(codegen, plugin, tmp_path / "out", files, root=codegen.protos)
    assert result.returncode == 0, result.stderr
    expected = codegen.files(codegen.generate(codegen.request(files)))
    written = {
        p.relative_to(tmp_path / "out").as_posix(): p.read_text()
        for p in (tmp_path / "out").rglob("*")
        if p.is_file()
    }
    assert written == expected


def test_parameter_through_protoc(codegen: CodegenTools, plugin: Path, tmp_path: Path) -> None:
    result = _protoc(
        codegen,
        plugin,
        tmp_path / "out",
        ["acme/names/v1/names.proto"],
        root=codegen.protos,
        extra=("--connect-anyio_opt=method_names=proto",),
    )
    assert result.returncode == 0, result.stderr
    content = (tmp_path / "out/acme/names/v1/names_connect.py").read_text()
    assert "    async def GetHTTPResponse(\n" in content


def test_protoc_reports_errors(codegen: CodegenTools, plugin: Path, tmp_path: Path) -> None:
    result = _protoc(
        codegen,
        plugin,
        tmp_path / "out",
        ["acme/hats/v1/hats.proto"],
        root=codegen.protos,
        extra=("--connect-anyio_opt=method_names=camel",),
    )
    assert result.returncode != 0
    assert "invalid value 'camel' for option method_names" in result.stderr
    assert not list((tmp_path / "out").rglob("*"))


EDITION_2024 = """\
edition = "2024";

package acme.future.v1;

message Note {
  string text = 1;
}

service Notes {
  rpc Add(Note) returns (Note);
}
"""


def test_edition_2024(codegen: CodegenTools, plugin: Path, tmp_path: Path) -> None:
    """Edition 2024 (experimental in protoc 30) is accepted: nothing it changes matters here."""
    root = tmp_path / "protos"
    (root / "acme/future/v1").mkdir(parents=True)
    (root / "acme/future/v1/future.proto").write_text(EDITION_2024)
    result = _protoc(
        codegen,
        plugin,
        tmp_path / "out",
        ["acme/future/v1/future.proto"],
        root=root,
        extra=("--experimental_editions",),
    )
    assert result.returncode == 0, result.stderr
    content = (tmp_path / "out/acme/future/v1/future_connect.py").read_text()
    assert "class NotesClient(ConnectClient):" in content
    assert "from acme.future.v1 import future_pb2" in content


BUF_TEMPLATE = """\
version: v2
plugins:
  - local: ["{python}", "-m", "protoc_gen_connect_anyio"]
    out: {out}
    opt: method_names=proto
"""


def test_buf_generate(codegen: CodegenTools, tmp_path: Path) -> None:
    """buf runs the plugin from a buf.gen.yaml, as users will."""
    buf = shutil.which("buf")
    if buf is None:
        pytest.fail("buf is not on PATH: install buf-bin==1.75.0")
    workspace = tmp_path / "workspace"
    (workspace / "acme/hats/v1").mkdir(parents=True)
    (workspace / "acme/common/v1").mkdir(parents=True)
    for name in ("acme/hats/v1/hats.proto", "acme/common/v1/common.proto"):
        (workspace / name).write_text((codegen.protos / name).read_text())
    (workspace / "buf.yaml").write_text("version: v2\n")
    template = tmp_path / "buf.gen.yaml"
    template.write_text(BUF_TEMPLATE.format(python=sys.executable, out=tmp_path / "gen"))
    result = subprocess.run(
        [buf, "generate", str(workspace), "--template", str(template)],
        cwd=workspace,
        env=codegen.python_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    content = (tmp_path / "gen/acme/hats/v1/hats_connect.py").read_text()
    assert "    async def MakeHat(\n" in content
    assert sorted(p.name for p in (tmp_path / "gen").rglob("*.py")) == ["hats_connect.py"]
