"""Turning "generate this prompt with this character's LoRA" into a GenerationRequest for an engine.

Shared by the Generate tab and ``isengard generate``: which LoRAs there are, which image engine to
use, the base model and image size for the mode, the checks a person can act on before anything
runs, and the gallery of past generations.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.interface import ASPECT_PRESETS, GenerationRequest, ImageEngine, LoraRef, aspect_size
from isengard_desktop.base.errors import NotFoundError, ValidationError
from isengard_desktop.base.mode import FAST_TEST
from isengard_desktop.core.engines import load
from isengard_desktop.storage.db import Database
from isengard_desktop.storage.jobs_repo import GenerationRow, JobRepository
from isengard_desktop.storage.volume import Volume

FAST_TEST_SIDE = 64  # the tiny models' long side: every aspect preset, scaled down
MAX_SEED = 2**32 - 1
LIMITS = {"steps": (1, 150), "guidance": (0.0, 30.0), "batch_count": (1, 16)}
DEFAULTS = {"steps": 28, "guidance": 3.5, "batch_count": 1, "aspect": "1:1"}
FAST_TEST_STEPS = 8


@dataclass(frozen=True)
class LoraOption:
    """A trained LoRA the picker offers: whose it is, where it is, what it was trained on."""

    id: int
    character_id: int | None
    character_name: str
    path: Path
    base_model: str
    engine: str
    steps: int
    created_at: str

    @property
    def label(self) -> str:
        return f"{self.character_name} — {self.created_at[:16].replace('T', ' ')} ({self.engine}, {self.steps} steps)"


def lora_options(volume: Volume, db: Database) -> list[LoraOption]:
    """Every trained LoRA whose file is still in the volume, newest first."""
    rows = db.query(
        "SELECT loras.*, characters.name AS character_name FROM loras "
        "LEFT JOIN characters ON characters.id = loras.character_id ORDER BY loras.created_at DESC, loras.id DESC"
    )
    options = []
    for row in rows:
        path = volume.root / row["rel_path"]
        if path.is_file():
            options.append(LoraOption(row["id"], row["character_id"], row["character_name"] or "(deleted character)",
                                      path, row["base_model"], row["engine"], row["steps"], row["created_at"]))
    return options


def lora_for_character(options: list[LoraOption], wanted: str) -> LoraOption:
    """The newest LoRA of the character named (or numbered) ``wanted``."""
    for option in options:
        if option.character_name.lower() == wanted.lower() or str(option.character_id) == wanted:
            return option
    names = sorted({option.character_name for option in options})
    known = f"characters with a LoRA: {', '.join(names)}" if names else "no character has a trained LoRA yet"
    raise NotFoundError(f"{wanted!r} has no trained LoRA ({known}); train one first.")


def parse_lora_arg(value: str) -> tuple[str, float]:
    """``CHARACTER[:STRENGTH]`` from the command line."""
    name, _, strength = value.rpartition(":") if ":" in value else (value, "", "1")
    try:
        return name, float(strength)
    except ValueError as exc:
        raise ValidationError(f"--lora {value!r}: the strength after ':' must be a number, e.g. ada:0.8.") from exc


def random_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


def build_request(
    volume: Volume,
    mode: str,
    engine: str,
    prompt: str,
    loras: Sequence[tuple[LoraOption, float]] = (),
    *,
    aspect: str = "1:1",
    steps: int | None = None,
    guidance: float = 3.5,
    seed: int | None = None,
    batch_count: int = 1,
    advanced: dict[str, dict[str, Any]] | None = None,
) -> GenerationRequest:
    """A checked request; raises ValidationError naming the field and the reason."""
    prompt = prompt.strip()
    if not prompt:
        raise ValidationError("Write a prompt first: what should the image show?")
    if aspect not in ASPECT_PRESETS:
        raise ValidationError(f"The aspect ratio {aspect!r} is not one of {', '.join(ASPECT_PRESETS)}.")
    steps = steps if steps is not None else (FAST_TEST_STEPS if mode == FAST_TEST else DEFAULTS["steps"])
    for name, value in (("steps", steps), ("guidance", guidance), ("batch_count", batch_count)):
        low, high = LIMITS[name]
        if not low <= value <= high:
            title = name.replace("_", " ").capitalize()
            raise ValidationError(f"{title} must be between {low} and {high}, not {value}.")
    if seed is None:
        seed = random_seed()
    if not 0 <= seed <= MAX_SEED:
        raise ValidationError(f"The seed must be between 0 and {MAX_SEED}, not {seed}.")
    for option, strength in loras:
        if not -2.0 <= strength <= 2.0:
            raise ValidationError(f"The strength of {option.character_name}'s LoRA must be between -2 and 2.")
    fast = mode == FAST_TEST
    width, height = aspect_size(aspect, FAST_TEST_SIDE if fast else None)
    generator = load(volume, engine)
    if not isinstance(generator, ImageEngine):
        raise ValidationError(f"The {engine} engine does not generate images.")
    base = generator.base_model(fast)  # each engine says which base model it uses, and whether it is there
    if not base.ready:
        raise ValidationError(base.reason)
    return GenerationRequest(
        prompt=prompt,
        base_model=base.id,
        base_model_name=base.name,
        output_dir="",  # the job manager sets the job's folder
        width=width,
        height=height,
        aspect=aspect,
        loras=[LoraRef(str(option.path), float(strength), option.character_name) for option, strength in loras],
        steps=int(steps),
        guidance=float(guidance),
        seed=int(seed),
        batch_count=int(batch_count),
        advanced=dict(advanced or {}),
        device="cpu" if fast else "auto",
    )


def gallery(db: Database, volume: Volume, limit: int = 500) -> list[tuple[GenerationRow, Path]]:
    """Past generations whose files still exist, newest first, with their absolute paths."""
    out = []
    for row in JobRepository(db).generations(limit):
        path = volume.root / row.rel_path
        if path.is_file():
            out.append((row, path))
    return out


