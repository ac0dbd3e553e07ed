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
from engines.interface import DatasetItem, TrainingSpec
from isengard_desktop.base.errors import ValidationError
from isengard_desktop.core.characters import Character
from isengard_desktop.core.dataset import DatasetService, ImageFilter
from isengard_desktop.base.mode import FAST_TEST
from isengard_desktop.core.names import safe_filename
from isengard_desktop.core.presets import load_preset
from isengard_desktop.storage.volume import Volume

TINY_MODEL = "tiny-flux"  # built locally by the diffusers engine in the worker (fast-test mode)
FLUX_DEV = "FLUX.1-dev"
MIN_IMAGES = 1
# The built-in trainer's own disk check (engines/diffusers/preflight.py) asks for its MARGIN plus the run's
# checkpoints; on the tiny model those are kilobytes, so MARGIN plus a little is what it needs. Reading the
# same constant keeps "the run can start" here from meeting "not enough disk space" in the worker.
FAST_TEST_DISK_BYTES = DISK_MARGIN + 32 * 2**20
RECOMMENDED_IMAGES = 10


@dataclass(frozen=True)
class BaseModel:
    id: str  # what the worker receives: a folder path, or "tiny-flux"
    name: str  # recorded in the LoRA's metadata
    ready: bool
    reason: str = ""


def base_models(volume: Volume, mode: str) -> list[BaseModel]:
    """Base models this volume can train on, in the order to offer them."""
    if mode == FAST_TEST:
        return [BaseModel(TINY_MODEL, "tiny-flux (fast-test)", True)]
    folder = volume.models_dir / FLUX_DEV
    if (folder / "model_index.json").exists():
        return [BaseModel(str(folder), FLUX_DEV, True)]
    return [BaseModel(str(folder), FLUX_DEV, False,
                      f"FLUX.1-dev is not in {folder}; put the diffusers folder of black-forest-labs/FLUX.1-dev there "
                      "(downloading it from Settings is not built yet).")]


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


def choose_training_engine(requested: str | None, available: dict[str, tuple[bool, str]], mode: str) -> str:
    """The engine to train with: the one asked for, else AI-Toolkit in production, else the built-in one."""
    if requested:
        if requested not in available:
            raise ValidationError(f"There is no training engine called {requested!r}; known: {', '.join(available)}.")
        ok, reason = available[requested]
        if not ok:
            raise ValidationError(f"The {requested} engine is not available here: {reason}")
        return requested
    preferred = ["diffusers"] if mode == FAST_TEST else ["aitoolkit", "diffusers"]
    for name in preferred:
        if available.get(name, (False, ""))[0]:
            return name
    reasons = "; ".join(f"{n}: {r}" for n, (ok, r) in available.items() if not ok)
    raise ValidationError(f"No training engine is available here ({reasons}).")
