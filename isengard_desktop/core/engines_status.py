"""What is installed of each pinned upstream engine, compared with vendor/VENDOR_PINS.json.

An engine counts as installed from its development variables (``<Upstream.env_prefix>_DIR`` and its
python) or from its folder in the volume (``Volume.engine_dir``: ``src/`` at the pinned commit, ``venv/``).
``isengard engines install`` (core/engines_install.py) puts an engine there; this module only reports.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from isengard_desktop.base.resources import resources_dir
from isengard_desktop.core.engines import upstream
from isengard_desktop.storage.volume import Volume


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
    """What is installed of engine ``name`` (found the way the engine finds it: ``Upstream.locate``)."""
    pin = pins()["engines"][name]["commit"]
    declared = upstream(name)
    from_env = bool(os.environ.get(f"{declared.env_prefix}_DIR"))
    engine_dir = Volume(volume_root).engine_dir(name)
    located = declared.locate(engine_dir, name)
    if isinstance(located, str):
        checkout = Path(os.environ[f"{declared.env_prefix}_DIR"]) if from_env else engine_dir / "src"
        if not checkout.is_dir():
            return EngineStatus(name, pin, False, "", None, None, False, False,
                                f"not installed: use Install (or `isengard engines install {name}`)")
        python = Path(os.environ.get(f"{declared.env_prefix}_PYTHON") or checkout / "venv" / "bin" / "python") \
            if from_env else engine_dir / "venv" / "bin" / "python"
    else:
        checkout, python = located
    source = "env" if from_env else "volume"
    commit = _commit_of(checkout)
    env_ok = _python_ok(python, declared.imports)
    matches = bool(commit) and (commit.startswith(pin) or pin.startswith(commit))
    problems = []
    if not env_ok:
        problems.append(f"its environment ({python}) cannot import {', '.join(declared.imports)}")
    if not matches:
        problems.append(f"the checkout is at {commit or 'an unknown commit'}, the pin is {pin}")
    return EngineStatus(name, pin, True, source, str(checkout), commit, env_ok, matches,
                        "; ".join(problems) or "installed at the pinned commit, environment healthy")
