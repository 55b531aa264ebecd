"""The README's toolbox section runs: its ```python blocks, in order, as one program.

The section is what lies between ``<!-- toolbox:start -->`` and ``<!-- toolbox:end -->``.
Its first block is the harness the others use (a service and ``running()``, the native
server on a free port). The blocks assert what they show, so a snippet that stops
working fails here. Each block's ``anyio.run(main)`` runs on the backend under test.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio
import pytest

README = Path(__file__).resolve().parents[4] / "README.md"


def _blocks() -> list[str]:
    text = README.read_text()
    match = re.search(r"<!-- toolbox:start -->(.*?)<!-- toolbox:end -->", text, re.DOTALL)
    assert match is not None, "README.md has no toolbox section"
    return re.findall(r"^```python\n(.*?)^```$", match.group(1), re.DOTALL | re.MULTILINE)


def test_the_section_covers_the_toolbox() -> None:
    blocks = _blocks()
    code = "\n".join(blocks)
    assert len(blocks) >= 6
    for needle in [
        "intercept_unary",
        "intercept_server_stream",
        "on_start",
        "ResponseMetadata",
        "AsyncGenerator",
        "HaberdasherClientSync",
        "HaberdasherWSGIApplication",
        "CORSMiddleware",
        ".path",
    ]:
        assert needle in code, needle


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_snippets_run(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real_run = anyio.run
    runs: list[str] = []

    def run(func: Any, *args: Any, **kwargs: Any) -> Any:
        runs.append(func.__name__)
        kwargs["backend"] = backend
        return real_run(func, *args, **kwargs)

    monkeypatch.setattr(anyio, "run", run)
    namespace: dict[str, Any] = {"__name__": "readme"}
    blocks = _blocks()
    for number, block in enumerate(blocks, 1):
        code = compile(block, f"README.md (toolbox block {number})", "exec")
        exec(code, namespace)
    # Every async block ran its main on this backend.
    assert runs == ["main"] * sum("anyio.run(main)" in block for block in blocks)
    assert len(runs) >= 4
