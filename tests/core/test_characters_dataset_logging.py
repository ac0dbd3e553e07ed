"""Characters' rules, the dataset's filters and captions, deleting to the trash, and the logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog

from isengard_desktop.base import log as app_log
from isengard_desktop.base.errors import NotFoundError, ValidationError
from isengard_desktop.context import AppContext
from isengard_desktop.core.characters import trigger_word_hints
from isengard_desktop.core.dataset import ImageFilter
from tests.core import corpus


@pytest.fixture
def ctx(tmp_path: Path):
    context = AppContext.open(tmp_path / "vol", "fast-test")
    yield context
    context.close()


def test_character_rules(ctx: AppContext) -> None:
    ada = ctx.characters.create("  Ada   Lovelace ", "ohwx_ada", "mathematician")
    assert ada.name == "Ada Lovelace" and ada.lora_state == "No LoRA yet"
    with pytest.raises(ValidationError, match="'ohwx_bob_smith'"):
        ctx.characters.create("Bob", "ohwx bob smith")
    with pytest.raises(ValidationError, match="cannot be used"):
        ctx.characters.create("Bob", "ohwx/bob")
    with pytest.raises(ValidationError, match="needs a name"):
        ctx.characters.create("   ", "ohwx_bob")
    with pytest.raises(ValidationError, match="already exists"):
        ctx.characters.create("ada lovelace", "ohwx_other")
    with pytest.raises(ValidationError, match="already used by 'Ada Lovelace'"):
        ctx.characters.create("Bob", "OHWX_ADA")
    renamed = ctx.characters.update(ada.id, name="Countess Ada", trigger_word="ohwx_countess", description="")
    assert (renamed.name, renamed.trigger_word, renamed.description) == ("Countess Ada", "ohwx_countess", "")
    assert ctx.characters.resolve("countess ada").id == ada.id == ctx.characters.resolve(str(ada.id)).id
    assert trigger_word_hints("Woman") and not trigger_word_hints("ohwx_ada")


def test_delete_character_moves_photos_to_trash_and_keeps_shared_ones(ctx: AppContext, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    corpus._face(color=(1, 1, 1)).save(folder / "own.png")
    corpus._face(color=(2, 2, 2)).save(folder / "shared.png")
    ada, bob = ctx.characters.create("Ada", "ohwx_ada"), ctx.characters.create("Bob", "ohwx_bob")
    ctx.importer.run(ada.id, [folder])
    ctx.importer.run(bob.id, [folder / "shared.png"])
    ada_images = {i.row.source_name: i for i in ctx.dataset.list(ImageFilter(character_id=ada.id))}
    trash = ctx.characters.delete(ada.id)
    manifest = json.loads((trash / "manifest.json").read_text())
    assert sorted(i["source_name"] for i in manifest["images"]) == ["own.png", "shared.png"]
    assert (trash / "images" / ada_images["own.png"].path.name).is_file()
    assert not ada_images["own.png"].path.exists()
    assert ada_images["shared.png"].path.exists(), "Bob still has this photo"
    assert [i.row.source_name for i in ctx.dataset.list()] == ["shared.png"]
    with pytest.raises(NotFoundError):
        ctx.characters.get(ada.id)


def test_dataset_filters_captions_and_delete(ctx: AppContext, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    corpus._face(color=(1, 1, 1)).save(folder / "big.png")
    corpus._face((200, 150), color=(2, 2, 2)).save(folder / "small.png")
    ada = ctx.characters.create("Ada", "ohwx_ada")
    ctx.importer.run(ada.id, [folder])
    big, small = sorted(ctx.dataset.list(), key=lambda i: i.row.source_name)
    assert [i.id for i in ctx.dataset.list(ImageFilter(too_small_only=True))] == [small.id]
    assert big.caption == "a photo of ohwx_ada" and not big.has_own_caption
    ctx.dataset.set_caption(big.id, "  ohwx_ada   at the beach ")
    assert ctx.dataset.get(big.id).caption == "ohwx_ada at the beach"
    assert [i.id for i in ctx.dataset.list(ImageFilter(captioned=True))] == [big.id]
    assert [i.id for i in ctx.dataset.list(ImageFilter(captioned=False))] == [small.id]
    ctx.dataset.set_caption(big.id, "")
    assert ctx.dataset.get(big.id).caption == "a photo of ohwx_ada"
    with pytest.raises(NotFoundError):
        ctx.dataset.delete([small.id, 999])
    assert len(ctx.dataset.list()) == 2, "an unknown id deletes nothing"
    trash = ctx.dataset.delete([small.id])
    assert (trash / "images" / small.path.name).is_file() and not small.path.exists()


def test_logs_are_json_with_correlation_id_and_no_secrets(tmp_path: Path) -> None:
    app_log.configure(tmp_path / "logs")
    try:
        with app_log.correlation("photos_import") as cid:
            structlog.get_logger("test").info("thing_done", hf_token="abc", note="key hf_abcdefghijklmnopqrstuv",
                                              tokens=12)
        lines = [json.loads(line) for line in next((tmp_path / "logs").glob("app-*.jsonl")).read_text().splitlines()]
    finally:
        app_log.configure(None)
    record = next(line for line in lines if line["event"] == "thing_done")
    assert record["correlation_id"] == cid and record["action"] == "photos_import"
    assert record["hf_token"] == "[redacted]" and "hf_abc" not in record["note"] and record["tokens"] == 12
