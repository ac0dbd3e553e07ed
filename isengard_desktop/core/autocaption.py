"""Automatic captions for a character's photos, the app's side: is the captioning model here, which photos get a
caption, the job that writes them, and storing each caption it sends back.

The captions are written by a job of kind "caption" on the GPU lane (jobs/manager.py): it never runs beside a
training run, and its worker process exits when it is done, which returns the GPU memory before a training starts.
Each caption is stored as the photo's own caption (``caption_source = 'auto'``) as it arrives; a caption a person
wrote (``caption_source = 'person'``) is never replaced unless ``overwrite`` — checked again at storing time, so a
caption typed while the job runs is kept too.

Qt-free and torch-free: the window and the CLI call it; the model runs in the worker (engines/captioning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from isengard_desktop.base.caption_text import MAX_CAPTION_LENGTH, trigger_count
from isengard_desktop.base.errors import IsengardError, ValidationError
from isengard_desktop.base.mode import FAST_TEST
from isengard_desktop.core.dataset import DatasetImage, ImageFilter
from isengard_desktop.storage.db import Database
from isengard_desktop.storage.repositories import ImageRepository

if TYPE_CHECKING:
    from isengard_desktop.context import AppContext
    from isengard_desktop.storage.jobs_repo import JobRow

log = structlog.get_logger(__name__)

JOB_KIND = "caption"
ENGINE = "captioner"  # the catalogue's engine key for the captioning model's files
MODEL_ID = "qwen3-vl-4b-instruct"
TINY_MODEL = "tiny-qwen3-vl"  # built by the worker (engines/captioning/tiny_model.py)
DOWNLOAD_COMMAND = f"isengard models download {MODEL_ID}"


class CaptionerNotReady(IsengardError):
    """The captioning model is not in the volume (production mode)."""


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str  # why not, or what will run
    model: str | None  # what the job loads: TINY_MODEL or the model folder
    download_command: str = DOWNLOAD_COMMAND

    def to_json(self) -> dict[str, Any]:
        return {"ready": self.ready, "reason": self.reason, "model": self.model, "model_id": MODEL_ID,
                "download_command": self.download_command}


def readiness(ctx: AppContext) -> Readiness:
    """Whether captions can be written here: fast-test builds its tiny model; production needs the real one."""
    if ctx.mode == FAST_TEST:
        return Readiness(True, "Fast-test mode: a tiny random-weight Qwen3-VL writes the captions (they are noise "
                               "words, cleaned into valid captions).", TINY_MODEL)
    from isengard_desktop.base import catalogue
    from isengard_desktop.core.models import inventory

    model = catalogue.get(MODEL_ID)
    status = inventory.status(ctx.volume, ctx.extra_model_dirs(), MODEL_ID)[0].engines[ENGINE]
    if status.ready:
        folder = ctx.volume.models_dir / model.placements(ENGINE)[0].dest.split("/", 1)[0]
        return Readiness(True, f"{model.title} writes the captions.", str(folder))
    missing = status.missing_bytes
    size = f" ({missing / 1e9:.1f} GB to download)" if missing else ""
    return Readiness(False, f"Automatic captions need {model.title}, which is not in this volume{size}: download it "
                            f"with `{DOWNLOAD_COMMAND}` or the Download button.", None)


def plan(ctx: AppContext, character_id: int, overwrite: bool) -> tuple[list[DatasetImage], list[DatasetImage]]:
    """(photos to caption, photos whose caption a person wrote and that are kept)."""
    images = ctx.dataset.list(ImageFilter(character_id=character_id))
    if overwrite:
        return images, []
    kept = [i for i in images if i.has_own_caption and i.row.caption_source == "person"]
    return [i for i in images if i not in kept], kept


def submit(ctx: AppContext, character: str | int, overwrite: bool = False, keep_traits: bool = False) -> JobRow:
    """Queue the caption job for a character's photos; raises when the model is missing or there is nothing to do."""
    ready = readiness(ctx)
    if not ready.ready:
        raise CaptionerNotReady(ready.reason)
    person = ctx.characters.resolve(character)
    todo, kept = plan(ctx, person.id, overwrite)
    if not todo:
        why = (f"all {len(kept)} have a caption a person wrote (add --overwrite to replace them)" if kept
               else "it has no photos yet (import some first)")
        raise ValidationError(f"{person.name} has nothing to caption: {why}.")
    spec = {"model": ready.model, "trigger": person.trigger_word, "keep_traits": keep_traits, "overwrite": overwrite,
            "images": [{"id": i.id, "path": str(i.path)} for i in todo]}
    job = ctx.jobs.submit(JOB_KIND, ENGINE, spec, character_id=person.id,
                          meta={"kept_person_captions": len(kept)})
    log.info("autocaption_submitted", job_id=job.id, character_id=person.id, photos=len(todo), kept=len(kept),
             overwrite=overwrite, keep_traits=keep_traits)
    return job


def store_caption(db: Database, spec: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """Store one caption the worker sent (job manager bookkeeping); returns what the listeners should also see:
    ``stored`` False when a person's caption was kept, or the caption broke the rules (never expected)."""
    caption = str(event.get("caption") or "")
    trigger = str(spec.get("trigger") or "")
    if trigger_count(caption, trigger) != 1 or not caption or len(caption) > MAX_CAPTION_LENGTH:
        log.error("autocaption_refused", image_id=event.get("image_id"), length=len(caption))
        return {"stored": False, "reason": "invalid"}
    stored = ImageRepository(db).set_auto_caption(int(event["image_id"]), caption, bool(spec.get("overwrite")))
    return {"stored": stored} if stored else {"stored": False, "reason": "person_caption_kept"}


def download(ctx: AppContext) -> JobRow:
    """Queue the captioning model's download (a job of the download lane, like `isengard models download`); raises
    when the disk has no room for it."""
    from isengard_desktop.core.models import planning
    from isengard_desktop.core.units import human_bytes

    plan = planning.plan_download(ctx.volume, ctx.extra_model_dirs(), MODEL_ID, [ENGINE])
    if not plan.enough_space:
        raise ValidationError(f"The captioning model needs {human_bytes(plan.download_bytes)} and the volume's disk "
                              f"has {human_bytes(plan.free_bytes)} free: free some space, then download it again.")
    return ctx.jobs.submit("download", "hub", plan.spec)
