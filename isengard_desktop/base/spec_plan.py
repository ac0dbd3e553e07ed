"""The memory plan of a built training spec: what the engines' pre-flight and the Training tab ask before a run.

``memory_plan`` is the arithmetic; this fills in its ``TrainingSetup`` from a spec's fields. The preset side (a
preset's plan, every preset on a card, the plan as lines of text) is the app's: core/training_plan.py.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Protocol

from isengard_desktop.base.memory_plan import Card, ModelSizes, Plan, TrainingSetup, plan_training

PLANNED_ENGINES = ("aitoolkit", "diffusers")


class PlannedSpec(Protocol):
    """The fields of ``engines.interface.TrainingSpec`` the plan reads (base does not import the engines)."""

    resolutions: Sequence[int]
    rank: int
    batch_size: int
    low_vram: bool
    sample_prompts: Sequence[str]
    sample_every: int


def bitsandbytes_for(engine: str) -> bool:
    """Whether the engine's environment has bitsandbytes: the app's own for the built-in engine; AI-Toolkit's
    GPU install always gets it (core/engines_install.py)."""
    if engine == "aitoolkit":
        return True
    return importlib.util.find_spec("bitsandbytes") is not None


def plan_for_spec(spec: PlannedSpec, engine: str, card: Card, sizes: ModelSizes | None = None,
                  bitsandbytes: bool | None = None) -> Plan:
    """The plan of a built spec; ``sizes`` from the base model's folder when it is there, else the catalogue's."""
    bnb = bitsandbytes_for(engine) if bitsandbytes is None else bitsandbytes
    setup = TrainingSetup(engine, tuple(spec.resolutions), spec.rank, spec.batch_size, spec.low_vram,
                          bool(spec.sample_prompts) and spec.sample_every > 0, bnb)
    return plan_training(setup, card, sizes or ModelSizes.from_catalogue())
