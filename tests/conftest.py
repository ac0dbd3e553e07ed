"""Fixtures every test folder may use: a loopback fake Hugging Face hub (HF_ENDPOINT points at it, child processes
inherit it) and a file keyring (never the real one)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.models.fake_hub import FakeHub

REPO = Path(__file__).resolve().parents[1]


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


@pytest.fixture
def test_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A file keyring for this test and the worker processes it starts (never the real keyring)."""
    import keyring.core

    from tests.models.file_keyring import ENV, FileKeyring

    path = tmp_path / "keyring.json"
    monkeypatch.setenv(ENV, str(path))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "tests.models.file_keyring.FileKeyring")
    # Worker processes run `python -m ...` and must import the backend from this checkout.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setattr(keyring.core, "_keyring_backend", FileKeyring())
    yield path
