"""Where the ComfyUI the app runs lives, and where its folders go inside the volume.

The development variables win (``ISENGARD_COMFYUI_DIR``, a checkout at the pinned commit, and
``ISENGARD_COMFYUI_PYTHON``, its environment's python); otherwise the install in the volume made by
``isengard engines install comfyui`` (``engines/comfyui/src`` and ``engines/comfyui/venv``).
"""

from __future__ import annotations

from pathlib import Path

INSTALL_HINT = ("run `isengard engines install comfyui` (needs internet, or --source with a local clone), or "
                "generate with the built-in diffusers engine")


def locate() -> tuple[Path, Path] | str:
    """(checkout, python) of the ComfyUI to run, or a sentence saying why there is none and what to do."""
    folder = os.environ.get("ISENGARD_COMFYUI_DIR")
    if folder:
        checkout = Path(folder)
        python = Path(os.environ.get("ISENGARD_COMFYUI_PYTHON") or checkout / "venv" / "bin" / "python")
    elif os.environ.get("ISENGARD_VOLUME"):
        installed = Path(os.environ["ISENGARD_VOLUME"]) / "engines" / "comfyui"
        checkout, python = installed / "src", installed / "venv" / "bin" / "python"
        if not checkout.is_dir():
            return f"ComfyUI is not installed: {INSTALL_HINT}."
    else:
        return (f"ComfyUI is not installed: {INSTALL_HINT}; for development set ISENGARD_COMFYUI_DIR to a checkout "
                "and ISENGARD_COMFYUI_PYTHON to its environment's python.")
    if not (checkout / "main.py").is_file():
        return f"{checkout} has no main.py; reinstall ComfyUI with `isengard engines install comfyui`."
    if not python.is_file():
        return f"ComfyUI's python ({python}) does not exist; reinstall it with `isengard engines install comfyui`."
    return checkout, python


def engine_dir(volume_root: Path) -> Path:
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
