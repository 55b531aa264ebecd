"""The generated code next to protoc's: ruff-clean, ruff-formatted, mypy --strict, and working."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import CodegenTools

# A keyword in a module path makes the module unimportable by an import statement;
# the generated code imports it with importlib, and no type checker can follow that.
UNTYPABLE = {"acme/class/v1/keyword_path_connect.py"}

RUFF_RULES = "E,F,W,I,UP,B,SIM,RUF,PIE,C4,RET,PERF,ASYNC,ISC,PYI"


def _connect_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*_connect.py"))


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


# Ruff's isort puts a package in "first-party" or "third-party" depending on the
# project; the generated imports must be accepted either way.
ISORT_SETTINGS = [
    [],
    ["--config", "lint.isort.known-first-party = ['acme', 'connect_anyio']"],
    ["--config", "lint.isort.known-third-party = ['acme', 'connect_anyio']"],
    ["--config", "lint.isort.known-first-party = ['connect_anyio', 'google']"],
]


@pytest.mark.parametrize("settings", ISORT_SETTINGS, ids=["auto", "first", "third", "mixed"])
def test_ruff_check(generated_tree: Path, settings: list[str]) -> None:
    _run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--isolated",
            "--no-cache",
            "--target-version=py310",
            f"--select={RUFF_RULES}",
            *settings,
            *_connect_files(generated_tree),
        ],
        cwd=generated_tree,
    )


def test_ruff_format_leaves_it_unchanged(generated_tree: Path) -> None:
    _run(
        [
            sys.executable,
            "-m",
            "ruff",
            "format",
            "--isolated",
            "--no-cache",
            "--check",
            "--diff",
            *_connect_files(generated_tree),
        ],
        cwd=generated_tree,
    )


# Implements the services and calls the clients; mypy must infer exactly these types.
# ``type: ignore`` comments mark what must fail (strict mode reports unused ignores).
USAGE = """\
from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from typing_extensions import assert_type

from acme.common.v1 import common_pb2
from acme.hats.v1 import hats_pb2
from acme.hats.v1.hats_connect import (
    Haberdasher,
    HaberdasherASGIApplication,
    HaberdasherClient,
    HaberdasherMethods,
    HaberdasherSync,
    HatStoreClient,
    _haberdasher_endpoints_sync,
)
from connect_anyio.client import ResponseStream
from connect_anyio.method import MethodInfo
from connect_anyio.request import RequestContext

Ctx = RequestContext[hats_pb2.Size, hats_pb2.Hat]


class Shop:
    async def make_hat(self, request: hats_pb2.Size, ctx: Ctx) -> hats_pb2.Hat:
        return hats_pb2.Hat(inches=request.inches)

    async def make_similar_hats(
        self, request: hats_pb2.Size, ctx: Ctx
    ) -> AsyncIterator[hats_pb2.Hat]:
        yield hats_pb2.Hat(inches=request.inches)

    async def collect_sizes(
        self, request: AsyncIterator[hats_pb2.Size], ctx: Ctx
    ) -> hats_pb2.Hat:
        return hats_pb2.Hat(inches=sum([s.inches async for s in request]))

    async def make_various_hats(
        self, request: AsyncIterator[hats_pb2.Size], ctx: Ctx
    ) -> AsyncIterator[hats_pb2.Hat]:
        async for size in request:
            yield hats_pb2.Hat(inches=size.inches)


class SyncShop:
    def make_hat(self, request: hats_pb2.Size, ctx: Ctx) -> hats_pb2.Hat:
        return hats_pb2.Hat()

    def make_similar_hats(self, request: hats_pb2.Size, ctx: Ctx) -> Iterator[hats_pb2.Hat]:
        yield hats_pb2.Hat()

    def collect_sizes(self, request: Iterator[hats_pb2.Size], ctx: Ctx) -> hats_pb2.Hat:
        return hats_pb2.Hat()

    def make_various_hats(
        self, request: Iterator[hats_pb2.Size], ctx: Ctx
    ) -> Iterator[hats_pb2.Hat]:
        yield from ()


class WrongShop(Shop):
    async def make_hat(  # type: ignore[override]
        self, request: hats_pb2.Hat, ctx: Ctx
    ) -> hats_pb2.Hat:
        return request


service: Haberdasher = Shop()
sync_service: HaberdasherSync = SyncShop()
app = HaberdasherASGIApplication(Shop())
HaberdasherASGIApplication(WrongShop())  # type: ignore[arg-type]
HaberdasherASGIApplication(SyncShop())  # type: ignore[arg-type]
assert_type(app.path, str)
_haberdasher_endpoints_sync(SyncShop())
assert_type(HaberdasherMethods.MakeHat, MethodInfo[hats_pb2.Size, hats_pb2.Hat])
assert_type(HaberdasherMethods.MakeHat.output, type[hats_pb2.Hat])


async def calls(client: HaberdasherClient, store: HatStoreClient) -> None:
    size = hats_pb2.Size(inches=7)

    async def sizes() -> AsyncIterator[hats_pb2.Size]:
        yield size

    assert_type(await client.make_hat(size, use_get=True, timeout_ms=100), hats_pb2.Hat)
    assert_type(client.make_similar_hats(size), ResponseStream[hats_pb2.Hat])
    assert_type(await client.collect_sizes(sizes()), hats_pb2.Hat)
    assert_type(client.make_various_hats(sizes()), ResponseStream[hats_pb2.Hat])
    await client.make_hat(hats_pb2.Hat())  # type: ignore[arg-type]
    client.make_similar_hats(size, use_get=True)  # type: ignore[call-arg]
    await client.collect_sizes(size)  # type: ignore[arg-type]
    trim = await store.get_trim(common_pb2.Page(), headers={"x-trace": "1"})
    assert_type(trim, hats_pb2.Hat.Style.Trim)
"""


# The WSGI application and the sync client: mypy must infer exactly these types too.
SYNC_USAGE = """\
from __future__ import annotations

from collections.abc import Iterator

from typing_extensions import assert_type

from acme.hats.v1 import hats_pb2
from acme.hats.v1.hats_connect import (
    HaberdasherClientSync,
    HaberdasherWSGIApplication,
)
from connect_anyio.client import ResponseStreamSync
from connect_anyio.request import RequestContext

Ctx = RequestContext[hats_pb2.Size, hats_pb2.Hat]


class SyncShop:
    def make_hat(self, request: hats_pb2.Size, ctx: Ctx) -> hats_pb2.Hat:
        return hats_pb2.Hat()

    def make_similar_hats(self, request: hats_pb2.Size, ctx: Ctx) -> Iterator[hats_pb2.Hat]:
        yield hats_pb2.Hat()

    def collect_sizes(self, request: Iterator[hats_pb2.Size], ctx: Ctx) -> hats_pb2.Hat:
        return hats_pb2.Hat()

    def make_various_hats(
        self, request: Iterator[hats_pb2.Size], ctx: Ctx
    ) -> Iterator[hats_pb2.Hat]:
        yield from ()


class AsyncShop:
    async def make_hat(self, request: hats_pb2.Size, ctx: Ctx) -> hats_pb2.Hat:
        return hats_pb2.Hat()


app = HaberdasherWSGIApplication(SyncShop())
HaberdasherWSGIApplication(AsyncShop())  # type: ignore[arg-type]
assert_type(app.path, str)


def calls(client: HaberdasherClientSync) -> None:
    size = hats_pb2.Size(inches=7)
    assert_type(client.make_hat(size, use_get=True), hats_pb2.Hat)
    assert_type(client.make_similar_hats(size), ResponseStreamSync[hats_pb2.Hat])
    assert_type(client.collect_sizes([size]), hats_pb2.Hat)
    assert_type(client.make_various_hats(iter([size])), ResponseStreamSync[hats_pb2.Hat])
    client.collect_sizes(size)  # type: ignore[arg-type]
"""


def _mypy(root: Path, runtime: Path, files: list[str], tmp_path: Path) -> None:
    # protoc's own .pyi files are not --strict clean (bare ``Mapping`` in annotations):
    # they are read for their types only, like the runtime.
    pb2_modules = sorted(
        p.relative_to(root).with_suffix("").as_posix().replace("/", ".")
        for p in root.rglob("*_pb2.pyi")
    )
    config = tmp_path / "mypy.ini"
    config.write_text(
        "[mypy]\n"
        "strict = True\n"
        "warn_unreachable = True\n"
        "python_version = 3.10\n"
        "explicit_package_bases = True\n"
        "follow_imports = silent\n"
        + "".join(f"[mypy-{m}]\nignore_errors = True\n" for m in pb2_modules)
    )
    env = {**os.environ, "MYPYPATH": os.pathsep.join([".", str(runtime)])}
    output = _run(
        [
            sys.executable,
            "-m",
            "mypy",
            f"--config-file={config}",
            f"--cache-dir={tmp_path / 'mypy-cache'}",
            *files,
        ],
        cwd=root,
        env=env,
    )
    assert f"Success: no issues found in {len(files)} source files" in output


def test_mypy_strict(generated_tree: Path, codegen: CodegenTools, tmp_path: Path) -> None:
    """mypy --strict on the generated modules with protoc's .pyi files and the runtime."""
    (generated_tree / "usage_check.py").write_text(USAGE)
    (generated_tree / "sync_usage_check.py").write_text(SYNC_USAGE)
    files = [f for f in _connect_files(generated_tree) if f not in UNTYPABLE]
    _mypy(
        generated_tree,
        codegen.runtime_src,
        ["usage_check.py", "sync_usage_check.py", *files],
        tmp_path,
    )


SMOKE = """\
import importlib
import io

import anyio

from acme.hats.v1 import hats_pb2
from acme.hats.v1.hats_connect import (
    Haberdasher,
    HaberdasherASGIApplication,
    HaberdasherClient,
    HaberdasherMethods,
    HatStoreMethods,
)
from connect_anyio.client import ConnectClient
from connect_anyio.method import IdempotencyLevel, StreamType

# Method descriptors.
assert HaberdasherMethods.MakeHat.stream_type is StreamType.UNARY
assert HaberdasherMethods.MakeHat.idempotency_level is IdempotencyLevel.NO_SIDE_EFFECTS
assert HaberdasherMethods.MakeSimilarHats.stream_type is StreamType.SERVER_STREAM
assert HaberdasherMethods.CollectSizes.stream_type is StreamType.CLIENT_STREAM
assert HaberdasherMethods.MakeVariousHats.stream_type is StreamType.BIDI_STREAM
assert HaberdasherMethods.MakeHat.procedure == "/acme.hats.v1.Haberdasher/MakeHat"
assert HaberdasherMethods.MakeHat.input is hats_pb2.Size
assert HaberdasherMethods.MakeHat.output is hats_pb2.Hat
assert HatStoreMethods.ListHats.idempotency_level is IdempotencyLevel.IDEMPOTENT
assert HatStoreMethods.GetTrim.output is hats_pb2.Hat.Style.Trim

# The client.
assert issubclass(HaberdasherClient, ConnectClient)
for name in ("make_hat", "make_similar_hats", "collect_sizes", "make_various_hats"):
    assert callable(getattr(HaberdasherClient, name)), name


# The ASGI application, serving a Connect unary call; the methods left out of the
# implementation answer "unimplemented" through the Protocol's default bodies.
class Shop(Haberdasher):
    async def make_hat(self, request, ctx):
        return hats_pb2.Hat(inches=request.inches, color="red")


app = HaberdasherASGIApplication(Shop())
assert app.path == "/acme.hats.v1.Haberdasher"


async def call(app, path, body):
    sent = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/proto")],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    status = sent[0]["status"]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


async def main():
    status, body = await call(
        app, "/acme.hats.v1.Haberdasher/MakeHat", hats_pb2.Size(inches=7).SerializeToString()
    )
    assert status == 200, (status, body)
    assert hats_pb2.Hat.FromString(body) == hats_pb2.Hat(inches=7, color="red")
    store = importlib.import_module("acme.hats.v1.hats_connect")
    class Store(store.HatStore):
        pass
    status, body = await call(
        store.HatStoreASGIApplication(Store()), "/acme.hats.v1.HatStore/GetTrim", b""
    )
    assert status == 501, (status, body)
    assert b"acme.hats.v1.HatStore.GetTrim is not implemented" in body, body


anyio.run(main)


# The WSGI application, serving a Connect unary call and a server stream from sync code.
from acme.hats.v1.hats_connect import (
    HaberdasherClientSync,
    HaberdasherSync,
    HaberdasherWSGIApplication,
)
from connect_anyio.client import ConnectClientSync


class SyncShop(HaberdasherSync):
    def make_hat(self, request, ctx):
        return hats_pb2.Hat(inches=request.inches, color="blue")

    def make_similar_hats(self, request, ctx):
        for i in range(2):
            yield hats_pb2.Hat(inches=request.inches + i)


assert issubclass(HaberdasherClientSync, ConnectClientSync)
wsgi = HaberdasherWSGIApplication(SyncShop())
assert wsgi.path == "/acme.hats.v1.Haberdasher"


def wsgi_call(path, body, content_type):
    started = []
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    chunks = list(wsgi(environ, lambda status, headers: started.append(status)))
    return started[0], b"".join(chunks)


status, body = wsgi_call(
    "/acme.hats.v1.Haberdasher/MakeHat",
    hats_pb2.Size(inches=7).SerializeToString(),
    "application/proto",
)
assert status == "200 OK", (status, body)
assert hats_pb2.Hat.FromString(body) == hats_pb2.Hat(inches=7, color="blue")
size = hats_pb2.Size(inches=3).SerializeToString()
status, body = wsgi_call(
    "/acme.hats.v1.Haberdasher/MakeSimilarHats",
    b"\\x00" + len(size).to_bytes(4, "big") + size,
    "application/connect+proto",
)
assert status == "200 OK", (status, body)
assert body.endswith(b"{}"), body  # the end-stream message: no error

# A module in a directory named like a keyword, imported through importlib.
keyword_path = importlib.import_module("acme.class.v1.keyword_path_connect")
pb2 = importlib.import_module("acme.class.v1.keyword_path_pb2")
assert keyword_path.ClosetMethods.Store.input is pb2.Hat
print("ok")
"""


def test_runtime_smoke(generated_tree: Path, codegen: CodegenTools) -> None:
    """Imports the generated code with the runtime and serves a call through ASGI."""
    script = generated_tree / "smoke_check.py"
    script.write_text(textwrap.dedent(SMOKE))
    output = _run(
        [sys.executable, str(script)],
        cwd=generated_tree,
        env=codegen.python_env(generated_tree, codegen.runtime_src),
    )
    assert output.strip() == "ok"
