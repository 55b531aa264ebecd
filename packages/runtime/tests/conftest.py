"""Fixtures shared by the runtime's tests.

Async tests run under both backends: every test marked ``anyio`` (or in a module
with ``pytestmark = pytest.mark.anyio``) runs once on asyncio and once on trio.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _support.tls import TLSFiles, make_tls_files


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    directory: Path = tmp_path_factory.mktemp("tls")
    return make_tls_files(directory)
