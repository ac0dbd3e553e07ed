"""The memory plan of a preset as the CLI, the doctor and the first-run page ask for it.

A built spec's plan (the engines' pre-flight, the Training tab) is base/spec_plan.py's.

``memory_plan`` is the arithmetic; this module fills it in from what the app has: a preset (with the
Advanced overrides), the engine's name, and a card — a size typed on the command line,
or this machine's first GPU with its display state. The tiny fast-test model has no plan (it runs on
the CPU), so only FLUX.1-dev runs are planned.
"""

from __future__ import annotations

from typing import Any

from isengard_desktop.base.errors import ValidationError
from isengard_desktop.base.memory_plan import Card, ModelSizes, Plan, TrainingSetup, plan_training
from isengard_desktop.base.spec_plan import PLANNED_ENGINES, bitsandbytes_for
from isengard_desktop.core.presets import load_preset


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
