"""Training presets (Quick / Balanced / High Quality) as data in resources/presets/, with overrides.

A preset gives every training field; the Advanced panel (or ``--steps`` on the CLI) overrides any of
them; fast-test mode swaps in the preset's ``fast_test`` values so a run on the tiny model takes seconds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from typing import Any

from isengard_desktop.base.errors import ValidationError
from isengard_desktop.base.resources import resource_path

PRESET_NAMES = ("quick", "balanced", "high")
OVERRIDABLE = {
    "steps": int, "learning_rate": float, "rank": int, "alpha": int, "resolutions": list, "batch_size": int,
    "save_every": int, "sample_every": int, "sample_steps": int, "low_vram": bool, "sample_prompts": list,
    "seed": int,
}


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    description: str
    training: dict[str, Any]
    fast_test: dict[str, Any]
    predicted: dict[str, Any]

    def values(self, fast_test: bool, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The training fields of this preset, for the mode, with ``overrides`` applied and checked."""
        values = dict(self.training)
        if fast_test:
            values.update(self.fast_test)
        for key, value in (overrides or {}).items():
            if value is None:
                continue
            if key not in OVERRIDABLE:
                raise ValidationError(f"{key!r} is not a training setting; known: {', '.join(sorted(OVERRIDABLE))}.")
            values[key] = value
        _check(values)
        return values


# The checked range of every numeric training field: the CLI, the Training tab's Advanced fields (their
# spin boxes take these ranges) and a hand-edited preset all meet the same limits, as generation's do.
LIMITS: dict[str, tuple[int | float, int | float]] = {
    "steps": (1, 100_000),
    "learning_rate": (1e-6, 1e-2),  # above 0.01 a LoRA diverges within a few steps
    "rank": (1, 256),
    "alpha": (1, 256),
    "batch_size": (1, 16),
    "save_every": (1, 100_000),
    "sample_every": (1, 100_000),
    "sample_steps": (1, 150),  # generation's own step limit
    "seed": (0, 2**32 - 1),
}
RESOLUTION_LIMITS = (64, 2048)
MAX_SAMPLE_PROMPTS = 16
MAX_PROMPT_LENGTH = 1000


def _title(key: str) -> str:
    return key.replace("_", " ").capitalize()


def check_value(key: str, value: Any) -> None:
    """Raise ValidationError (one sentence naming the field and its range) unless ``value`` is in range.

    NaN and infinity fail every comparison, so the range test is written to refuse them; a bool is not a
    number here, and a field of whole numbers refuses 2.5.
    """
    low, high = LIMITS[key]
    whole = OVERRIDABLE[key] is int
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and isinstance(value, float) and (not math.isfinite(value) or (whole and not value.is_integer())):
        number = False
    if not number or not low <= value <= high:
        kind = "a whole number" if whole else "a number"
        raise ValidationError(f"{_title(key)} must be {kind} between {low:g} and {high:g}, not {value!r}.")


def _check(values: dict[str, Any]) -> None:
    for key in LIMITS:
        if key in values:
            check_value(key, values[key])
    low, high = RESOLUTION_LIMITS
    resolutions = values["resolutions"]
    if (not isinstance(resolutions, list) or not resolutions or len(resolutions) > 8
            or any(not isinstance(r, int) or isinstance(r, bool) or not low <= r <= high or r % 16
                   for r in resolutions)):
        raise ValidationError(f"Resolutions must be one to eight multiples of 16 between {low} and {high} px, for "
                              f"example 512, 768, 1024, not {resolutions!r}.")
    prompts = values.get("sample_prompts") or []
    if (not isinstance(prompts, list) or len(prompts) > MAX_SAMPLE_PROMPTS
            or any(not isinstance(p, str) or len(p) > MAX_PROMPT_LENGTH for p in prompts)):
        raise ValidationError(f"Sample prompts must be at most {MAX_SAMPLE_PROMPTS} texts of up to "
                              f"{MAX_PROMPT_LENGTH} characters each.")


@cache
def load_preset(name: str) -> Preset:
    if name not in PRESET_NAMES:
        raise ValidationError(f"There is no preset called {name!r}; choose quick, balanced or high.")
    data = json.loads(resource_path("presets", f"{name}.json").read_text(encoding="utf-8"))
    return Preset(
        name=data["name"], label=data["label"], description=data["description"], training=data["training"],
        fast_test=data.get("fast_test", {}), predicted=data.get("predicted", {}),
    )


def all_presets() -> list[Preset]:
    return [load_preset(name) for name in PRESET_NAMES]
