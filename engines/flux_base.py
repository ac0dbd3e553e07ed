"""The FLUX.1-dev base model the diffusers-layout engines train and generate on (the built-in engine, AI-Toolkit).

One answer for "which base model, is it there": the diffusers folder ``models/FLUX.1-dev`` in production, the
tiny random-weight FLUX in fast-test mode, which the engine builds in the worker at its first use.
"""

from __future__ import annotations

from pathlib import Path

from engines.interface import BaseModel, EngineContext

TINY_MODEL = "tiny-flux"  # built in the worker by engines/diffusers/tiny_model.py (fast-test mode)
FLUX_DEV = "FLUX.1-dev"


def flux_base_model(context: EngineContext, fast_test: bool) -> BaseModel:
    """The tiny FLUX (fast-test), or FLUX.1-dev's diffusers folder in the models folder, ready or not."""
    if fast_test:
        return BaseModel(TINY_MODEL, "tiny-flux (fast-test)", True)
    if context.models_dir is None:
        return BaseModel(FLUX_DEV, FLUX_DEV, False, "The engine was given no volume, so it cannot find FLUX.1-dev.")
    folder = context.models_dir / FLUX_DEV
    if (folder / "model_index.json").exists():
        return BaseModel(str(folder), FLUX_DEV, True)
    return BaseModel(str(folder), FLUX_DEV, False,
                     f"FLUX.1-dev is not in {folder}; put the diffusers folder of black-forest-labs/FLUX.1-dev there "
                     "(or download it in Settings → Models).")


def resolve(base_model: str, context: EngineContext) -> str:
    """What the engine loads for ``base_model``: the tiny FLUX's folder, built first if needed; else as given."""
    if base_model != TINY_MODEL:
        return base_model
    if context.models_dir is None:
        raise RuntimeError("The worker was given no models folder to build the tiny fast-test model in.")
    from engines.diffusers.tiny_model import ensure_tiny_flux

    return str(ensure_tiny_flux(Path(context.models_dir)))
