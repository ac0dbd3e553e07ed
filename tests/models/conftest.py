"""Fixtures for model-manager tests (the fake hub and the test keyring are in tests/conftest.py, for every folder)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from isengard_desktop.context import AppContext


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppContext]:
    """A fresh fast-test volume with its job manager."""
    monkeypatch.setenv("ISENGARD_MODE", "fast-test")
    context = AppContext.open(tmp_path / "vol", "fast-test")
    yield context
    context.jobs.shutdown(wait=10)
    context.close()
