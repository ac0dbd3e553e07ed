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


class DiffusersEngine:
    """FLUX LoRA training and generation with diffusers + peft, in the worker process."""

    name = "diffusers"
    kinds: tuple[str, ...] = ("training", "image")

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

        return train(spec, emit, should_stop)

    def advanced_readiness(self) -> dict[str, Availability]:
        """The Advanced toggles are ComfyUI workflows; the built-in engine says so instead of failing later."""
        reason = "The built-in engine does not offer this; choose the ComfyUI engine to use it."
        toggles = ("controlnet", "ipadapter", "facedetailer", "upscale")
        return {toggle: Availability(False, reason) for toggle in toggles}

    def generate(self, request: GenerationRequest, emit: Emit, should_stop: ShouldStop) -> str:
        """Generate the images of ``request``; the pipeline stays loaded in this worker for the next request."""
        from engines.diffusers.generator import generate
        from isengard_desktop import __version__

        return generate(request, emit, should_stop, __version__)
