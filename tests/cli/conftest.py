"""The CLI tests say their own mode: fast-test, set for each test (and the processes it starts), never inherited."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def fast_test_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISENGARD_MODE", "fast-test")
