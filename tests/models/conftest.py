"""Fixtures for model-manager tests: a fake hub on loopback that HF_ENDPOINT points at (children inherit it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.models.fake_hub import FakeHub


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A running FakeHub with no repositories yet; HF_ENDPOINT points at it for this test and its child processes.

    Add files with ``fake_hub.add_file(repo, path, data)`` (``source=Path`` for big ones), tokens with
    ``fake_hub.add_token(token, {repo: "accepted"})``.
    """
    hub = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    # Never let a test reach a real token or the real cache of the person running the tests.
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
    try:
        yield hub
    finally:
        hub.stop()
