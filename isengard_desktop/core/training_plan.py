"""The memory plan of a training run as the CLI, the Training tab and the engines ask for it.

``memory_plan`` is the arithmetic; this module fills it in from what the app has: a preset (with the
Advanced overrides) or a TrainingSpec, the engine's name, and a card — a size typed on the command line,
or this machine's first GPU with its display state. The tiny fast-test model has no plan (it runs on
the CPU), so only FLUX.1-dev runs are planned.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from engines.interface import TrainingSpec
from isengard_desktop.base.errors import ValidationError
from isengard_desktop.base.memory_plan import Card, ModelSizes, Plan, TrainingSetup, plan_training
from isengard_desktop.core.presets import load_preset

PLANNED_ENGINES = ("aitoolkit", "diffusers")


def bitsandbytes_for(engine: str) -> bool:
    """Whether the engine's environment has bitsandbytes: the app's own for the built-in engine; AI-Toolkit's
    GPU install always gets it (core/engines_install.py)."""
    if engine == "aitoolkit":
        return True
    return importlib.util.find_spec("bitsandbytes") is not None


def plan_for_preset(engine: str, preset: str, card: Card, overrides: dict[str, Any] | None = None,
                    bitsandbytes: bool | None = None) -> Plan:
    """The plan of ``preset`` (production values, with ``overrides``) with ``engine`` on ``card``."""
    if engine not in PLANNED_ENGINES:
        raise ValidationError(f"There is no memory plan for the engine {engine!r}; plan for aitoolkit or diffusers.")
    values = load_preset(preset).values(fast_test=False, overrides=overrides)
    bnb = bitsandbytes_for(engine) if bitsandbytes is None else bitsandbytes
    return plan_training(TrainingSetup.from_values(engine, values, bnb), card, ModelSizes.from_catalogue())


def presets_on_card(card: Card) -> dict[str, dict[str, Plan]]:
    """Every preset's plan with every planned engine on ``card`` (engine -> preset name -> plan): what the doctor and
    the first-run page say a card can run."""
    from isengard_desktop.core.presets import PRESET_NAMES

    return {engine: {name: plan_for_preset(engine, name, card) for name in PRESET_NAMES} for engine in PLANNED_ENGINES}


def plan_for_spec(spec: TrainingSpec, engine: str, card: Card, sizes: ModelSizes | None = None,
                  bitsandbytes: bool | None = None) -> Plan:
    """The plan of a built spec; ``sizes`` from the base model's folder when it is there, else the catalogue's."""
    bnb = bitsandbytes_for(engine) if bitsandbytes is None else bitsandbytes
    setup = TrainingSetup(engine, tuple(spec.resolutions), spec.rank, spec.batch_size, spec.low_vram,
                          bool(spec.sample_prompts) and spec.sample_every > 0, bnb)
    return plan_training(setup, card, sizes or ModelSizes.from_catalogue())


def card_for_size(gb: float) -> Card:
    if not 1 <= gb <= 1024:
        raise ValidationError(f"--plan-for-vram takes the card's memory in GB (for example 24), not {gb:g}.")
    return Card.nominal(gb)


def describe(plan: Plan) -> list[str]:
    """The plan as lines for a terminal or the Training tab."""
    mark = {"fits": "✔", "adjusted": "•", "refused": "✖"}[plan.verdict]
    phases = ", ".join(f"{name.replace('_', ' ')} {gb:.1f}" for name, gb in plan.phases.items())
    lines = [f"{mark} {plan.reason}", f"  GPU memory by phase (GB, {plan.engine}): {phases}."]
    if plan.verdict == "adjusted":
        lines.append("  Settings the run will use: " + ", ".join(plan.changes) + ".")
    return lines
