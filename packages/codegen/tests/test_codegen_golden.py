"""Expected-output tests: real protoc requests in, committed ``_connect.py`` files out.

``UPDATE_GOLDEN=1 pytest packages/codegen/tests`` rewrites the files under ``golden/``
from the current generator; review the diff before committing.

Golden files end in ``.golden`` rather than ``.py`` so that the monorepo's lint and
format settings (line length 100, more rules) leave the generated code alone;
``test_codegen_checks.py`` checks the same code with ruff's defaults and mypy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import CodegenTools

PROTOS = Path(__file__).parent / "protos"
GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
SUFFIX = ".golden"


@dataclass(frozen=True)
class Case:
    name: str
    files: tuple[str, ...]
    parameter: str = ""
    emit_sync_runtime: bool | None = None


HATS_AND_NAMES = ("acme/hats/v1/hats.proto", "acme/names/v1/names.proto")
CASES = [
    # Every test proto: stream kinds, idempotency, imports across files, packages and
    # well-known types, nested messages, two services in a file, proto2, proto3
    # optional, edition 2023, dashes in paths, keywords in names and paths, comments,
    # and names long enough to make lines wrap.
    Case(
        "default", tuple(sorted(p.relative_to(PROTOS).as_posix() for p in PROTOS.rglob("*.proto")))
    ),
    Case("method_names_proto", HATS_AND_NAMES, parameter="method_names=proto"),
    # Without the WSGI application and the sync client (the plugin's switch turned off).
    Case("without_sync_runtime", HATS_AND_NAMES, emit_sync_runtime=False),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case: Case, codegen: CodegenTools) -> None:
    request = codegen.request(case.files, parameter=case.parameter)
    assert request.parameter == case.parameter
    assert list(request.file_to_generate) == list(case.files)
    got = codegen.files(codegen.generate(request, emit_sync_runtime=case.emit_sync_runtime))
    directory = GOLDEN / case.name
    if UPDATE:
        for stale in directory.rglob(f"*{SUFFIX}"):
            stale.unlink()
        for name, content in got.items():
            path = directory / (name + SUFFIX)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    want = {
        p.relative_to(directory).as_posix()[: -len(SUFFIX)]: p.read_text()
        for p in directory.rglob(f"*{SUFFIX}")
    }
    assert sorted(got) == sorted(want), "generated files differ; UPDATE_GOLDEN=1 rewrites them"
    for name, content in got.items():
        assert content == want[name], f"{name} differs; UPDATE_GOLDEN=1 rewrites the golden files"


def test_one_file_per_proto_with_services(codegen: CodegenTools) -> None:
    """Beside protoc's _pb2.py (dashes become underscores); files without services: nothing."""
    files = codegen.proto_files(PROTOS)
    assert "acme/common/v1/common.proto" in files
    got = codegen.files(codegen.generate(codegen.request(files)))
    assert sorted(got) == [
        "acme/class/v1/keyword_path_connect.py",
        "acme/editions/v1/editions_connect.py",
        "acme/empty/v1/empty_connect.py",
        "acme/hats/v1/hats_connect.py",
        "acme/legacy/v1/legacy_connect.py",
        "acme/long/v1/long_names_connect.py",
        "acme/my_dir/v1/dash_file_connect.py",
        "acme/names/v1/names_connect.py",
        "acme/optional/v1/optional_connect.py",
    ]
