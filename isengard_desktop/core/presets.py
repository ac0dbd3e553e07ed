"""Training presets (Quick / Balanced / High Quality) as data in resources/presets/, with overrides.

A preset gives every training field; the Advanced panel (or ``--steps`` on the CLI) overrides any of
them; fast-test mode swaps in the preset's ``fast_test`` values so a run on the tiny model takes seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from isengard_desktop.errors import ValidationError
from isengard_desktop.resources import resource_path

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


def _check(values: dict[str, Any]) -> None:
    def positive(key: str) -> None:
        if not isinstance(values[key], int | float) or values[key] <= 0:
            raise ValidationError(f"{key.replace('_', ' ').capitalize()} must be a positive number, not {values[key]!r}.")

    for key in ("steps", "learning_rate", "rank", "alpha", "batch_size", "save_every", "sample_every", "sample_steps"):
        positive(key)
    if values["learning_rate"] > 0.01:
        raise ValidationError(f"A learning rate of {values['learning_rate']} would destroy the model; use 0.0001 to 0.001.")
    if not values["resolutions"] or any(int(r) < 64 or int(r) % 16 for r in values["resolutions"]):
        raise ValidationError("Resolutions must be multiples of 16 and at least 64 px, for example 512, 768, 1024.")


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
