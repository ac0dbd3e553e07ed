"""``DiffusersEngine``: the built-in engine's face towards the app (engines/interface.py).

Asking whether it is available only looks for the libraries (``importlib.util.find_spec``) without
importing them, so the registry can list engines in the GUI process in milliseconds; torch and
diffusers are imported when ``train`` runs, inside the worker subprocess.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace

from engines.flux_base import flux_base_model, resolve
from engines.interface import (
    Availability,
    BaseModel,
    Emit,
    Engine,
    EngineTraits,
    GenerationRequest,
    ShouldStop,
    TrainingSpec,
)

REQUIRED = ("torch", "diffusers", "peft", "transformers", "safetensors")


class DiffusersEngine(Engine):
    """FLUX LoRA training and generation with diffusers + peft, in the worker process."""

    name = "diffusers"
    # Trains after AI-Toolkit in production and first in fast-test; generates after the settings' default.
    traits = EngineTraits(title="Built-in (diffusers)", kinds=("training", "image"), rank=20)

    def availability(self) -> Availability:
        missing = [module for module in REQUIRED if importlib.util.find_spec(module) is None]
        if missing:
            return Availability(
                False,
                f"The diffusers engine needs the Python packages {', '.join(missing)}, which are not installed; "
                "reinstall Isengard Desktop or run: pip install " + " ".join(missing),
            )
        return Availability(True)

    def train(self, spec: TrainingSpec, emit: Emit, should_stop: ShouldStop) -> str:
        """Train the LoRA of ``spec``; returns "succeeded" or "cancelled", raises TrainingError on a problem."""
        from engines.diffusers.trainer import train

        return train(replace(spec, base_model=resolve(spec.base_model, self.context)), emit, should_stop)

    def base_model(self, fast_test: bool) -> BaseModel:
        return flux_base_model(self.context, fast_test)

    def advanced_readiness(self) -> dict[str, Availability]:
        """It declares no Advanced toggles (they are ComfyUI workflows), so it reports none."""
        return {}

    def generate(self, request: GenerationRequest, emit: Emit, should_stop: ShouldStop) -> str:
        """Generate the images of ``request``; the pipeline stays loaded in this worker for the next request."""
        from engines.diffusers.generator import generate
        from isengard_desktop import __version__

        request = replace(request, base_model=resolve(request.base_model, self.context))
        return generate(request, emit, should_stop, __version__)
