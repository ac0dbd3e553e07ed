"""Issue 11 items 7 and 8: stored photos without a row are collected at start, never while an import runs;
captions have a length limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from isengard_desktop.base.caption_text import MAX_CAPTION_LENGTH
from isengard_desktop.base.errors import ValidationError
from isengard_desktop.context import AppContext
from isengard_desktop.core import orphans


def leftover(ctx: AppContext, sha: str = "ab" * 32) -> Path:
    """What a killed import leaves: a stored file without its row, a half-written copy and its marker."""
    stored = ctx.volume.images_dir / sha[:2] / f"{sha}.jpg"
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_bytes(b"stored bytes")
    (stored.parent / f".{sha}.jpg.x1y2.tmp").write_bytes(b"half")
    (ctx.volume.images_dir / ".import-999999-0.running").write_text("then")
    return stored


def test_a_killed_imports_leftovers_go_to_the_trash_at_the_next_start(tmp_path: Path) -> None:
    ctx = AppContext.open(tmp_path / "vol", "fast-test")
    ada = ctx.characters.create("Ada", "ohwx_ada")
    Image.new("RGB", (600, 600), "teal").save(tmp_path / "kept.png")
    kept = ctx.importer.run(ada.id, [tmp_path / "kept.png"]).imported[0]
    stray = leftover(ctx)
    ctx.close()

    ctx = AppContext.open(tmp_path / "vol", "fast-test")  # the next start
    try:
        assert not stray.exists() and not list(ctx.volume.images_dir.rglob("*.tmp"))
        assert not list(ctx.volume.images_dir.glob(".import-*.running"))
        assert ctx.dataset.get(kept["id"]).path.is_file(), "a photo with its row stays"
        manifest_path = next(ctx.volume.trash_dir.glob("*unfinished-import*/manifest.json"))
        manifest = json.loads(manifest_path.read_text())
        assert [f["rel_path"] for f in manifest["files"]] == [stray.relative_to(ctx.volume.root).as_posix()]
        assert "import them again" in manifest["reason"]
        assert (manifest_path.parent / "images" / stray.name).read_bytes() == b"stored bytes"
    finally:
        ctx.close()


def test_nothing_is_collected_while_an_import_is_running(tmp_path: Path) -> None:
    ctx = AppContext.open(tmp_path / "vol", "fast-test")
    try:
        stray = leftover(ctx)
        with orphans.import_guard(ctx.volume):  # another import, running now (its own lock and marker)
            assert orphans.collect(ctx.volume, ctx.importer.images) is None
            assert stray.exists(), "a running import's stored file has no row yet: it is not a leftover"
        assert orphans.collect(ctx.volume, ctx.importer.images) is not None
        assert not stray.exists()
    finally:
        ctx.close()


def test_a_caption_has_a_length_limit(tmp_path: Path) -> None:
    ctx = AppContext.open(tmp_path / "vol", "fast-test")
    try:
        ada = ctx.characters.create("Ada", "ohwx_ada")
        Image.new("RGB", (600, 600), "teal").save(tmp_path / "a.png")
        image_id = ctx.importer.run(ada.id, [tmp_path / "a.png"]).imported[0]["id"]
        with pytest.raises(ValidationError, match=f"keep it to {MAX_CAPTION_LENGTH} or fewer"):
            ctx.dataset.set_caption(image_id, "word " * 400)
        assert ctx.dataset.get(image_id).caption == "a photo of ohwx_ada", "the refused caption is not stored"
        assert ctx.dataset.set_caption(image_id, "x" * MAX_CAPTION_LENGTH).caption == "x" * MAX_CAPTION_LENGTH
    finally:
        ctx.close()


def test_an_import_stopped_by_ctrl_c_leaves_its_unrecorded_files_for_the_next_start(tmp_path: Path) -> None:
    ctx = AppContext.open(tmp_path / "vol", "fast-test")
    ada = ctx.characters.create("Ada", "ohwx_ada")
    for i in range(3):
        Image.new("RGB", (600, 600), (i * 80, 10, 10)).save(tmp_path / f"p{i}.png")

    def interrupt(progress) -> None:  # Ctrl+C lands after the second photo is stored, before its batch is written
        if progress.done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ctx.importer.run(ada.id, [tmp_path / f"p{i}.png" for i in range(3)], on_progress=interrupt)
    stored = [p for p in ctx.volume.images_dir.glob("*/*") if not p.name.startswith(".")]
    assert stored and not ctx.dataset.list() and list(ctx.volume.images_dir.glob(".import-*.running"))
    ctx.close()
    ctx = AppContext.open(tmp_path / "vol", "fast-test")
    try:
        assert not [p for p in ctx.volume.images_dir.glob("*/*") if not p.name.startswith(".")]
        assert len(json.loads(next(ctx.volume.trash_dir.glob("*/manifest.json")).read_text())["files"]) == len(stored)
    finally:
        ctx.close()
