"""UI tests run offscreen against a fresh volume in fast-test mode (set per test, never left in os.environ);
message boxes are answered 'Yes' instead of blocking."""

from __future__ import annotations

import os

# Qt reads the platform once, when the first QApplication is made: it cannot be set per test.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402


@pytest.fixture(autouse=True)
def fast_test_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """The window and the workers it starts run in fast-test mode, for this test only."""
    monkeypatch.setenv("ISENGARD_MODE", "fast-test")


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(9):
        image = Image.new("RGB", (96 + i, 80), (30 + 20 * i, 120, 200 - 15 * i))
        ImageDraw.Draw(image).ellipse((20, 10, 70, 60), fill=(240, 200, 160))
        image.save(folder / f"face {i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return folder
