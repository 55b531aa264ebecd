"""Fixtures for the toolbox tests."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
"""The repository root, where ``examples`` lives."""


@pytest.fixture
def examples_importable(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Puts the repository root on ``sys.path`` so ``import examples...`` works; its path."""
    monkeypatch.syspath_prepend(str(ROOT))
    return ROOT
