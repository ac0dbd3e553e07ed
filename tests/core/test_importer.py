"""Importing awkward photos: everything readable is stored, everything else is refused with a reason."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from PIL import Image

from isengard_desktop.context import AppContext
from isengard_desktop.core.importer import POOL_THRESHOLD
from tests.core import corpus


@pytest.fixture
def ctx(tmp_path: Path):
    context = AppContext.open(tmp_path / "vol", "fast-test")
    yield context
    context.close()


def snapshot(folder: Path) -> dict[str, tuple[str, float]]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime) for p in folder.iterdir()}


def test_awkward_corpus(ctx: AppContext, tmp_path: Path) -> None:
    files = corpus.build(tmp_path / "in")
    assert len(files) >= POOL_THRESHOLD  # the process-pool path
    before = snapshot(tmp_path / "in")
    character = ctx.characters.create("Ada", "ohwx_ada")
    progress = []
    report = ctx.importer.run(character.id, [tmp_path / "in"], on_progress=progress.append)

    refused = {Path(item["file"]).name: item["reason"] for item in report.refused}
    assert set(refused) == {"animated.gif", "truncated.jpg", "empty.jpg", "notes.jpg", "bomb.png"}
    assert "GIF" in refused["animated.gif"]
    assert "damaged" in refused["truncated.jpg"] and "incomplete" in refused["truncated.jpg"]
    assert "empty" in refused["empty.jpg"]
    assert "not an image" in refused["notes.jpg"]
    assert "too large" in refused["bomb.png"] and "20000×20000" in refused["bomb.png"]

    imported = {Path(item["file"]).name: item for item in report.imported}
    assert set(imported) == {"rotated.jpg", "cmyk.jpg", "grey16.png", "palette.png", "rgba.png", "фото 1 ✨.jpg",
                             "  spaced  name .png", "photo.webp", "photo.bmp", "scan.tif", "tiny.jpg"}
    assert imported["tiny.jpg"]["too_small"] and not imported["cmyk.jpg"]["too_small"]
    assert progress[-1].done == progress[-1].total == len(files)
    assert snapshot(tmp_path / "in") == before, "the originals must never change"

    by_name = {image.row.source_name: image for image in ctx.dataset.list()}
    rotated = by_name["rotated.jpg"]
    assert (rotated.row.width, rotated.row.height, rotated.row.orientation) == (600, 800, 6)
    with Image.open(rotated.thumbnail_path) as thumb:
        assert thumb.height > thumb.width, "the thumbnail is upright"
        assert thumb.getpixel((thumb.width - 3, 3))[0] > 200, "the red corner marker ends top-right after rotation"
    with Image.open(by_name["grey16.png"].thumbnail_path) as thumb:
        assert thumb.convert("L").getextrema()[0] < 50, "16-bit grey is scaled, not clipped to white"
    with Image.open(by_name["palette.png"].thumbnail_path) as thumb:
        assert thumb.mode == "RGB"
    for image in by_name.values():
        assert image.path.is_file() and image.thumbnail_path.is_file()
        assert hashlib.sha256(image.path.read_bytes()).hexdigest() == image.row.sha256
    assert not list(ctx.volume.root.rglob("*.tmp")), "no temporary file is left behind"


def test_duplicates_and_small_batches(ctx: AppContext, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / "nested" / "deeper").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    image = corpus._face()
    image.save(folder / "a.jpg", "JPEG")
    (folder / "nested" / "copy of a.jpg").write_bytes((folder / "a.jpg").read_bytes())
    corpus._face(color=(1, 2, 3)).save(folder / "nested" / "deeper" / "b.png")
    corpus._face(color=(9, 9, 9)).save(folder / ".hidden" / "c.png")
    (folder / ".DS_Store").write_bytes(b"junk")
    character = ctx.characters.create("Ada", "ohwx_ada")
    report = ctx.importer.run(character.id, [folder, tmp_path / "missing.jpg"])
    assert sorted(Path(i["file"]).name for i in report.imported) == ["a.jpg", "b.png"]
    assert [Path(d["file"]).name for d in report.duplicates] == ["copy of a.jpg"]
    assert [r["reason"] for r in report.refused] == ["there is no such file or folder"]
    again = ctx.importer.run(character.id, [folder / "a.jpg"])
    assert again.imported == [] and len(again.duplicates) == 1
    other = ctx.characters.create("Bob", "ohwx_bob")
    shared = ctx.importer.run(other.id, [folder / "a.jpg"])
    assert len(shared.imported) == 1  # the same photo may belong to two people


def test_cancel_keeps_what_was_imported(ctx: AppContext, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(30):
        corpus._face(color=(i * 8, 0, 0)).save(folder / f"{i:02d}.png")
    character = ctx.characters.create("Ada", "ohwx_ada")
    seen = []
    report = ctx.importer.run(character.id, [folder], on_progress=seen.append, should_cancel=lambda: len(seen) >= 5)
    assert report.cancelled
    assert 5 <= len(report.imported) < 30
    assert len(ctx.dataset.list()) == len(report.imported)


def test_heic_when_supported(ctx: AppContext, tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif is not installed here")
    path = tmp_path / "iphone.heic"
    try:
        pillow_heif.from_pillow(corpus._face()).save(path, quality=80)
    except Exception as exc:  # an encoder build without HEVC
        pytest.skip(f"this pillow-heif cannot write HEIC ({exc})")
    character = ctx.characters.create("Ada", "ohwx_ada")
    report = ctx.importer.run(character.id, [path])
    assert len(report.imported) == 1 and ctx.dataset.list()[0].row.format == "HEIF"


def test_unreadable_file_is_refused(ctx: AppContext, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can read any file, so permissions cannot be tested")
    path = tmp_path / "secret.jpg"
    corpus._face().save(path)
    path.chmod(0)
    character = ctx.characters.create("Ada", "ohwx_ada")
    report = ctx.importer.run(character.id, [path])
    assert "permission denied" in report.refused[0]["reason"]
