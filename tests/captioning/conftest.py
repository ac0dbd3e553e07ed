"""Fixtures for the captioning tests: a fast-test volume with a character and real photographs (scikit-image ships
them in its wheel), one of which already has a caption a person wrote."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from isengard_desktop.context import AppContext

TRIGGER = "ohwx_eileen"
PERSON_CAPTION = f"{TRIGGER} in her flight suit, written by hand"
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


def real_photos(folder: Path, names: tuple[str, ...] = PHOTOS) -> Path:
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}.png")
    return folder


@pytest.fixture
def caption_ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppContext]:
    monkeypatch.setenv("ISENGARD_MODE", "fast-test")
    ctx = AppContext.open(tmp_path / "vol", "fast-test")
    person = ctx.characters.create("Eileen", TRIGGER)
    report = ctx.importer.run(person.id, [real_photos(tmp_path / "photos")])
    assert len(report.imported) == len(PHOTOS)
    first = min(item["id"] for item in report.imported)
    ctx.dataset.set_caption(first, PERSON_CAPTION)
    yield ctx
    ctx.jobs.shutdown(wait=10)
    ctx.close()
