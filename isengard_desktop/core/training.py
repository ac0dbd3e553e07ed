"""Turning "train this character with this preset" into a TrainingSpec for an engine.

Shared by the Training tab and ``isengard train``: pick the engine and base model for the mode,
collect the character's images with their final captions, apply the preset and overrides, and
check the run can start (a pre-flight verdict a person can act on).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Any

from engines.diffusers.preflight import MARGIN as DISK_MARGIN
from engines.flux_base import FLUX_DEV, TINY_MODEL  # noqa: F401  (re-exported: core.remote.jobs)
from engines.interface import BaseModel, DatasetItem, TrainingEngine, TrainingSpec
from isengard_desktop.base.errors import ValidationError
from isengard_desktop.base.mode import FAST_TEST
from isengard_desktop.core.characters import Character
from isengard_desktop.core.dataset import DatasetService, ImageFilter
from isengard_desktop.core.presets import load_preset
from isengard_desktop.storage.names import safe_filename
from isengard_desktop.storage.volume import Volume

MIN_IMAGES = 1
# The built-in trainer's own disk check (engines/diffusers/preflight.py) asks for its MARGIN plus the run's
# checkpoints; on the tiny model those are kilobytes, so MARGIN plus a little is what it needs. Reading the
# same constant keeps "the run can start" here from meeting "not enough disk space" in the worker.
FAST_TEST_DISK_BYTES = DISK_MARGIN + 32 * 2**20
RECOMMENDED_IMAGES = 10


def base_models(volume: Volume, mode: str, engine: str | None = None) -> list[BaseModel]:
    """Base models ``engine`` (by default the preferred trainer) can train on in this volume, in the order to offer
    them: the engine's own declaration."""
    from isengard_desktop.core.engines import load, preferred

    trainer = load(volume, engine or preferred("training"))
    if not isinstance(trainer, TrainingEngine):
        raise ValidationError(f"The {engine} engine does not train LoRAs.")
    return [trainer.base_model(mode == FAST_TEST)]


def default_sample_prompts(trigger: str) -> list[str]:
    return [f"a photo of {trigger}", f"a portrait of {trigger} smiling, soft window light"]


@dataclass
class Preflight:
    problems: list[str] = field(default_factory=list)  # the run cannot start
    warnings: list[str] = field(default_factory=list)  # it can, but the person should know

    @property
    def ok(self) -> bool:
        return not self.problems


def build_spec(
    volume: Volume,
    dataset: DatasetService,
    character: Character,
    mode: str,
    preset_name: str = "balanced",
    overrides: dict[str, Any] | None = None,
    base_model: BaseModel | None = None,
) -> tuple[TrainingSpec, Preflight]:
    preset = load_preset(preset_name)
    values = preset.values(fast_test=(mode == FAST_TEST), overrides=overrides)
    base = base_model or base_models(volume, mode)[0]
    images = dataset.list(ImageFilter(character_id=character.id))
    check = Preflight()
    if not base.ready:
        check.problems.append(base.reason)
    if len(images) < MIN_IMAGES:
        check.problems.append(
            f"{character.name} has no photos yet; import at least {RECOMMENDED_IMAGES} in Characters.")
    elif len(images) < RECOMMENDED_IMAGES:
        check.warnings.append(f"{character.name} has {len(images)} photos; {RECOMMENDED_IMAGES}-30 varied photos "
                              "give a better likeness.")
    small = sum(1 for image in images if image.too_small)
    if small and mode != FAST_TEST:
        check.warnings.append(f"{small} photo(s) are smaller than {dataset.min_training_side} px; they train at a "
                              "smaller size and add less detail.")
    free_gb = shutil.disk_usage(volume.root).free / 2**30
    need_gb = float(preset.predicted.get("disk_gb", 1)) if mode != FAST_TEST else FAST_TEST_DISK_BYTES / 2**30
    if free_gb < need_gb:
        check.problems.append(f"The volume has {free_gb:.2f} GB free and this preset needs about {need_gb:.2g} GB; "
                              "free some space or choose another volume folder.")
    spec = TrainingSpec(
        base_model=base.id,
        base_model_name=base.name,
        output_dir="",  # set by the job manager: the job's own folder
        dataset=[DatasetItem(str(image.path), image.caption) for image in images],
        trigger_word=character.trigger_word,
        lora_name=safe_filename(character.name.lower(), 40),
        preset=preset.name,
        steps=int(values["steps"]),
        learning_rate=float(values["learning_rate"]),
        rank=int(values["rank"]),
        alpha=int(values["alpha"]),
        resolutions=[int(r) for r in values["resolutions"]],
        batch_size=int(values["batch_size"]),
        save_every=int(values["save_every"]),
        sample_every=int(values["sample_every"]),
        sample_prompts=list(values.get("sample_prompts") or default_sample_prompts(character.trigger_word)),
        sample_steps=int(values["sample_steps"]),
        seed=int(values.get("seed", 0)),
        low_vram=bool(values.get("low_vram", False)),
        device="cpu" if mode == FAST_TEST else "auto",
    )
    return spec, check
