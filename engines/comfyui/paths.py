"""Where the ComfyUI the app runs lives, and where its folders go inside the volume.

The development variables win (``ISENGARD_COMFYUI_DIR``, a checkout at the pinned commit, and
``ISENGARD_COMFYUI_PYTHON``, its environment's python); otherwise the install in the volume made by
``isengard engines install comfyui`` (``engines/comfyui/src`` and ``engines/comfyui/venv``).
"""

from __future__ import annotations

from pathlib import Path

from engines.interface import Upstream

# How the ComfyUI the app runs is found and what its environment must import (its requirements plus the
# Upscale toggle's spandrel): one declaration for the install check, the health report and the engine.
UPSTREAM = Upstream(
    "ISENGARD_COMFYUI", "main.py", ("torch", "torchvision", "aiohttp", "requests", "yaml", "spandrel"), "ComfyUI",
    ", or generate with the built-in diffusers engine",
    skip_requirements=("torch", "torchvision", "torchaudio"),  # the install puts the pinned torch in first
    extra_packages=("requests",),
)


def locate(engine_dir: Path | None = None) -> tuple[Path, Path] | str:
    """(checkout, python) of the ComfyUI to run, or a sentence saying why there is none and what to do.

    ``engine_dir`` is its folder in the volume (the engine's context); without it only the development
    variables count."""
    return UPSTREAM.locate(engine_dir, "comfyui")


def engine_dir(volume_root: Path) -> Path:
    """The engine's folder for the server-side code that is keyed on the volume (the supervisor, the state file).
    It must stay what ``Volume.engine_dir("comfyui")`` says; tests/engines/test_conformance.py checks that."""
    return volume_root / "engines" / "comfyui"


def base_dir(volume_root: Path) -> Path:
    """ComfyUI's --base-directory: its input, output, temp, user and custom_nodes folders."""
    return engine_dir(volume_root) / "base"


def state_file(volume_root: Path) -> Path:
    """Where the running server is written down (pid, port, state) for the worker and other app processes."""
    return engine_dir(volume_root) / "run" / "server.json"


def log_file(volume_root: Path) -> Path:
    return volume_root / "logs" / "comfyui.log"


def models_dir(volume_root: Path) -> Path:
    return volume_root / "models"
