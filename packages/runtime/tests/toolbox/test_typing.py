"""Typing: ``examples/typed_service.py`` runs, and mypy rejects wrong user code.

The example (every stream kind served async and sync, called async and sync, typed
interceptors) is type-checked with the rest of the repository (``nox -s typecheck``); here it
also runs against real servers. Then mypy --strict runs on small snippets of user code: the
correct one passes, and each mistake (a handler's ``RequestContext`` with the wrong message
types, a wrong response type, a sync service given to the ASGI application, a client result
used as the wrong type, an interceptor whose token types disagree) is an error on its line.
That is what makes ``RequestContext[Req, Res]`` and the generated protocols real types.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import ModuleType

import mypy.api
import pytest
from _support.servers import SERVERS, run_server
from connectanyio.example.v1.haberdasher_connect import HaberdasherClient, HaberdasherClientSync
from toolbox._helpers import serve_in_thread, serve_wsgi

from connect_anyio import ProtocolType

ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture
def example(examples_importable: Path) -> ModuleType:
    import examples.typed_service as module

    return module


def _summary(hats: list[object]) -> list[tuple[int, str]]:
    return [(h.size, h.color) for h in hats]  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_example_serves_and_calls_itself(example: ModuleType) -> None:
    assert _summary(await example.serve_and_call()) == example.EXPECTED


@pytest.mark.anyio
@pytest.mark.parametrize("server", SERVERS)
async def test_example_async_service_and_client(example: ModuleType, server: str) -> None:
    timing = example.Timing()
    async with (
        run_server(example.asgi_app(timing), server=server, transport="h2c") as srv,
        srv.http_client() as http,
        HaberdasherClient(srv.url, protocol=ProtocolType.GRPC, http_client=http) as client,
    ):
        assert _summary(await example.call_every_kind(client)) == example.EXPECTED
    assert len(timing.durations) == 4  # the typed metadata interceptor saw every call


def test_example_sync_service_and_sync_client(example: ModuleType) -> None:
    with (
        serve_wsgi(example.wsgi_app()) as url,
        HaberdasherClientSync(url, protocol=ProtocolType.GRPC_WEB) as client,
    ):
        assert _summary(example.call_every_kind_sync(client)) == example.EXPECTED
    with (
        serve_in_thread(example.asgi_app(), transport="h2c") as running,
        HaberdasherClientSync(running.url, protocol=ProtocolType.GRPC) as client,
    ):
        assert _summary(example.call_every_kind_sync(client)) == example.EXPECTED


PRELUDE = """\
from collections.abc import AsyncIterator, Iterator
from typing import Any

from connectanyio.example.v1.haberdasher_connect import (
    HaberdasherASGIApplication,
    HaberdasherClient,
    HaberdasherWSGIApplication,
)
from connectanyio.example.v1.haberdasher_pb2 import Hat, Size

from connect_anyio import RequestContext
from connect_anyio.interceptor import MetadataInterceptor


class Service:
    async def make_hat(self, request: Size, ctx: RequestContext[Size, Hat]) -> Hat:
        return Hat()

    async def make_similar_hats(
        self, request: Size, ctx: RequestContext[Size, Hat]
    ) -> AsyncIterator[Hat]:
        yield Hat()

    async def collect_sizes(
        self, request: AsyncIterator[Size], ctx: RequestContext[Size, Hat]
    ) -> Hat:
        return Hat()

    async def make_various_hats(
        self, request: AsyncIterator[Size], ctx: RequestContext[Size, Hat]
    ) -> AsyncIterator[Hat]:
        yield Hat()
"""

# name -> (code after PRELUDE, whether mypy must reject it). A rejected snippet's last line
# is where the error must be reported.
SNIPPETS = {
    "correct": (
        """
        app = HaberdasherASGIApplication(Service())

        async def call(client: HaberdasherClient) -> int:
            hat: Hat = await client.make_hat(Size(inches=1))
            return hat.size
        """,
        False,
    ),
    "context_with_swapped_types": (
        """
        class Swapped(Service):
            async def make_hat(  # type: ignore[override]
                self, request: Size, ctx: RequestContext[Hat, Size]
            ) -> Hat:
                return Hat()

        app = HaberdasherASGIApplication(Swapped())
        """,
        True,
    ),
    "wrong_response_type": (
        """
        class WrongResponse(Service):
            async def make_hat(  # type: ignore[override]
                self, request: Size, ctx: RequestContext[Size, Hat]
            ) -> Size:
                return Size()

        app = HaberdasherASGIApplication(WrongResponse())
        """,
        True,
    ),
    "sync_service_to_the_asgi_app": (
        """
        class SyncService:
            def make_hat(self, request: Size, ctx: RequestContext[Size, Hat]) -> Hat:
                return Hat()

            def make_similar_hats(
                self, request: Size, ctx: RequestContext[Size, Hat]
            ) -> Iterator[Hat]:
                yield Hat()

            def collect_sizes(
                self, request: Iterator[Size], ctx: RequestContext[Size, Hat]
            ) -> Hat:
                return Hat()

            def make_various_hats(
                self, request: Iterator[Size], ctx: RequestContext[Size, Hat]
            ) -> Iterator[Hat]:
                yield Hat()

        wsgi = HaberdasherWSGIApplication(SyncService())  # the right place: accepted
        app = HaberdasherASGIApplication(SyncService())
        """,
        True,
    ),
    "client_result_as_the_wrong_type": (
        """
        async def call(client: HaberdasherClient) -> None:
            size: Size = await client.make_hat(Size(inches=1))
        """,
        True,
    ),
    "interceptor_token_types_disagree": (
        """
        class Timing:
            async def on_start(self, ctx: RequestContext[Any, Any]) -> float:
                return 0.0

            async def on_end(self, token: str, ctx: RequestContext[Any, Any]) -> None:
                pass

        timing: MetadataInterceptor[float] = Timing()
        """,
        True,
    ),
}


def test_mypy_rejects_wrong_user_code(tmp_path: Path) -> None:
    files: dict[str, Path] = {}
    last_lines: dict[str, int] = {}
    for name, (code, _) in SNIPPETS.items():
        text = PRELUDE + textwrap.dedent(code)
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        files[name] = path
        last_lines[name] = len(text.rstrip().splitlines())
    config = tmp_path / "mypy.ini"
    config.write_text(
        textwrap.dedent(
            f"""\
            [mypy]
            strict = True
            python_version = 3.10
            mypy_path = {ROOT / "gen"}:{ROOT / "packages/runtime/src"}
            cache_dir = {tmp_path / "cache"}

            [mypy-connectanyio.example.v1.haberdasher_pb2]
            disallow_any_generics = False
            """
        )
    )
    stdout, stderr, _ = mypy.api.run(
        ["--config-file", str(config), "--no-error-summary", *map(str, files.values())]
    )
    assert "error: Cannot find implementation or library stub" not in stdout, stdout
    errors: dict[str, list[int]] = {name: [] for name in SNIPPETS}
    for line in stdout.splitlines():
        for name, path in files.items():
            if line.startswith(f"{path}:") and ": error:" in line:
                errors[name].append(int(line.split(":")[1]))
    unexpected = [line for line in stdout.splitlines() if str(tmp_path) not in line and line]
    assert unexpected == [], stdout  # nothing outside the snippets (the runtime is clean)
    for name, (_, rejected) in SNIPPETS.items():
        if rejected:
            assert errors[name] == [last_lines[name]], (name, stdout)
        else:
            assert errors[name] == [], (name, stdout)
    assert stderr == ""
