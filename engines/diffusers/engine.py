"""``DiffusersEngine``: the built-in engine's face towards the app (engines/interface.py).

Asking whether it is available only looks for the libraries (``importlib.util.find_spec``) without
importing them, so the registry can list engines in the GUI process in milliseconds; torch and
diffusers are imported when ``train`` runs, inside the worker subprocess.
"""

from __future__ import annotations

import importlib.util

from engines.interface import Availability, Emit, ShouldStop, TrainingSpec

REQUIRED = ("torch", "diffusers", "peft", "transformers", "safetensors")


class DiffusersEngine:
    """FLUX LoRA training (and later generation) with diffusers + peft, in the worker process."""

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
