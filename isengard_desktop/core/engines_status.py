"""What is installed of each pinned upstream engine, compared with vendor/VENDOR_PINS.json.

An engine counts as installed from the development variables (``ISENGARD_AITOOLKIT_DIR`` and its
python) or from the volume's ``engines/<name>/`` folder (``src/`` at the pinned commit, ``venv/``).
``isengard engines install`` (core/engines_install.py) puts an engine there; this module only reports.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from isengard_desktop.base.resources import resources_dir

ENV_DIRS = {"aitoolkit": "ISENGARD_AITOOLKIT_DIR", "comfyui": "ISENGARD_COMFYUI_DIR"}
ENV_PYTHONS = {"aitoolkit": "ISENGARD_AITOOLKIT_PYTHON", "comfyui": "ISENGARD_COMFYUI_PYTHON"}
# What each engine's own environment must import for the engine to start.
HEALTH_IMPORTS = {"aitoolkit": ("torch", "diffusers"), "comfyui": ("torch", "torchvision", "aiohttp", "requests")}


def pins_path() -> Path:
    return resources_dir().parent / "vendor" / "VENDOR_PINS.json"


def pins() -> dict:
    return json.loads(pins_path().read_text(encoding="utf-8"))


@dataclass(frozen=True)
class EngineStatus:
    name: str
    pinned_commit: str
    installed: bool
    source: str  # "env", "volume" or ""
    checkout: str | None
    commit: str | None  # what the checkout says it is at, if it can tell
    environment_ok: bool
    matches_pin: bool
    detail: str

    def to_json(self) -> dict:
        return asdict(self)


def _commit_of(checkout: Path) -> str | None:
    marker = checkout / ".isengard-commit"
    if marker.exists():
        return marker.read_text(encoding="utf-8").strip()
    try:
        out = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _python_ok(python: Path, modules: tuple[str, ...]) -> bool:
    if not python.is_file():
        return False
    try:
        out = subprocess.run([str(python), "-c", "import " + ", ".join(modules)], capture_output=True, timeout=120,
                             check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def status(name: str, volume_root: Path) -> EngineStatus:
    pin = pins()["engines"][name]["commit"]
    folder = os.environ.get(ENV_DIRS[name])
    if folder:
        checkout, source = Path(folder), "env"
        python = Path(os.environ.get(ENV_PYTHONS[name]) or checkout / "venv" / "bin" / "python")
    else:
        checkout, source = volume_root / "engines" / name / "src", "volume"
        python = volume_root / "engines" / name / "venv" / "bin" / "python"
    if not checkout.is_dir():
        return EngineStatus(name, pin, False, "", None, None, False, False,
                            f"not installed: use Install (or `isengard engines install {name}`)")
    commit = _commit_of(checkout)
    env_ok = _python_ok(python, HEALTH_IMPORTS[name])
    matches = bool(commit) and (commit.startswith(pin) or pin.startswith(commit))
    problems = []
    if not env_ok:
        problems.append(f"its environment ({python}) cannot import {' and '.join(HEALTH_IMPORTS[name])}")
    if not matches:
        problems.append(f"the checkout is at {commit or 'an unknown commit'}, the pin is {pin}")
    return EngineStatus(name, pin, True, source, str(checkout), commit, env_ok, matches,
                        "; ".join(problems) or "installed at the pinned commit, environment healthy")
