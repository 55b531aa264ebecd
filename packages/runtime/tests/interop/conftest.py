"""Fixtures for the interop tests: grpcio stubs generated at test time, tool paths.

The grpcio stubs come from ``grpcio-tools`` run on ``testing.proto`` into a
temporary directory; only ``testing_pb2_grpc.py`` is generated, and it imports
the committed ``connectanyio.testing.v1.testing_pb2`` (one descriptor pool, the
same message classes on both sides).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[4]
PROTO_DIR = REPO / "proto"
TESTING_PROTO = "connectanyio/testing/v1/testing.proto"


@pytest.fixture(scope="session")
def grpc_stubs(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The ``testing_pb2_grpc`` module (EchoServiceStub, EchoServiceServicer, ...)."""
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("grpc_stubs")
    wkt = importlib.resources.files("grpc_tools") / "_proto"
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"-I{wkt}",
            f"--grpc_python_out={out}",
            TESTING_PROTO,
        ]
    )
    assert status == 0, "grpc_tools.protoc failed"
    path = out / TESTING_PROTO.replace(".proto", "_pb2_grpc.py")
    name = "interop_generated_testing_pb2_grpc"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def buf_executable() -> str:
    """``buf`` from the ``buf-bin`` wheel: next to this Python, else on PATH."""
    beside = Path(sys.executable).parent / "buf"
    if beside.exists():
        return str(beside)
    found = shutil.which("buf")
    if found is None:
        pytest.fail("buf is not installed (pip install buf-bin)")
    return found
