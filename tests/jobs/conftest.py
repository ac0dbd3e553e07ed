"""Fixtures for job tests: a fast-test volume with a character and a few small photos."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from isengard_desktop.context import AppContext


@pytest.fixture
def trained_ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppContext]:
    monkeypatch.setenv("ISENGARD_MODE", "fast-test")
    ctx = AppContext.open(tmp_path / "vol", "fast-test")
    character = ctx.characters.create("Ada Lovelace", "ohwx_ada")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        image = Image.new("RGB", (96, 80), (30 + 40 * i, 120, 200 - 30 * i))
        ImageDraw.Draw(image).ellipse((20 + 5 * i, 10, 70, 60), fill=(240, 200, 160))
        image.save(photos / f"ada-{i}.png")
    report = ctx.importer.run(character.id, [photos])
    assert len(report.imported) == 4
    yield ctx
    ctx.jobs.shutdown(wait=10)
    ctx.close()
