"""Where captions may be written (never over a person's own without overwrite, only valid ones), and whether the
captioning model is ready: fast-test builds its tiny one, production needs Qwen3-VL-4B-Instruct in the volume."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from isengard_desktop.base import catalogue
from isengard_desktop.context import AppContext
from isengard_desktop.core import autocaption
from isengard_desktop.core.models import inventory
from isengard_desktop.storage.repositories import ImageRepository
from tests.captioning.conftest import PERSON_CAPTION, TRIGGER


def test_an_automatic_caption_never_replaces_a_persons_own_unless_asked(caption_ctx: AppContext) -> None:
    ctx = caption_ctx
    repo = ImageRepository(ctx.db)
    first, second = (i.id for i in ctx.dataset.list()[:2])
    spec = {"trigger": TRIGGER, "overwrite": False}
    # A person's caption (typed before or while the job runs) is kept; a photo without one gets the caption.
    assert autocaption.store_caption(ctx.db, spec, {"image_id": first, "caption": f"a photo of {TRIGGER}, auto"}) \
        == {"stored": False, "reason": "person_caption_kept"}
    assert repo.get(first).caption == PERSON_CAPTION
    assert autocaption.store_caption(ctx.db, spec, {"image_id": second, "caption": f"a photo of {TRIGGER}, auto"}) \
        == {"stored": True}
    assert (repo.get(second).caption, repo.get(second).caption_source) == (f"a photo of {TRIGGER}, auto", "auto")
    # Editing an automatic caption makes it the person's.
    ctx.dataset.set_caption(second, f"{TRIGGER} edited by hand")
    assert repo.get(second).caption_source == "person"
    ctx.dataset.set_caption(second, None)
    assert repo.get(second).caption_source is None
    # A caption breaking the rules is never stored, whatever the worker sent.
    for bad in ("a photo of someone", f"{TRIGGER} and {TRIGGER}", TRIGGER + " x" * 600):
        assert autocaption.store_caption(ctx.db, {**spec, "overwrite": True},
                                         {"image_id": first, "caption": bad})["stored"] is False
    assert autocaption.store_caption(ctx.db, {**spec, "overwrite": True},
                                     {"image_id": first, "caption": f"a photo of {TRIGGER}"}) == {"stored": True}


def test_fast_test_is_ready_with_the_tiny_model(caption_ctx: AppContext) -> None:
    ready = autocaption.readiness(caption_ctx)
    assert ready.ready and ready.model == autocaption.TINY_MODEL


def test_production_without_the_model_is_not_ready_and_says_how_to_get_it(tmp_path: Path) -> None:
    ctx = AppContext.open(tmp_path / "vol", "production")
    try:
        person = ctx.characters.create("Eileen", TRIGGER)
        ready = autocaption.readiness(ctx)
        assert not ready.ready and ready.model is None
        assert "Qwen3-VL-4B-Instruct" in ready.reason and autocaption.DOWNLOAD_COMMAND in ready.reason
        assert "8.9 GB" in ready.reason
        with pytest.raises(autocaption.CaptionerNotReady, match="isengard models download qwen3-vl-4b-instruct"):
            autocaption.submit(ctx, person.id)
        assert ctx.jobs.list() == []

        # Every file in place with its catalogue size (sparse files: nothing is downloaded in tests) -> ready, and
        # the job loads that folder. The captioning model never counts as a base model for training.
        model = catalogue.get(autocaption.MODEL_ID)
        for placement in model.placements(autocaption.ENGINE):
            path = ctx.volume.models_dir / placement.dest
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as handle:
                handle.truncate(placement.file.size)
        ready = autocaption.readiness(ctx)
        assert ready.ready and ready.model == str(ctx.volume.models_dir / "Qwen3-VL-4B-Instruct")
        assert os.path.isfile(Path(ready.model) / "model-00001-of-00002.safetensors")
        assert not inventory.production_model_ready(ctx.volume, [])
    finally:
        ctx.close()


def test_the_catalogue_entry_is_complete() -> None:
    model = catalogue.get(autocaption.MODEL_ID)
    assert model.role == "captioner" and not model.gated and model.engines() == [autocaption.ENGINE]
    files = model.placements(autocaption.ENGINE)
    assert all(f.file.sha256 and f.file.size and f.file.revision != "main" for f in files)  # pinned and checked
    assert sum(f.file.size for f in files) == 8_882_829_521
