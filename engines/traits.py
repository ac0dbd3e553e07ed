"""What an engine declares about itself (``EngineTraits``, with its ``Upstream`` install policy, its Advanced
``Toggle``s, and the ``BaseModel`` it answers with) and what the app gives it (``EngineContext``, with what the app
``Lent`` it). Part of the contract of engines/interface.py, which re-exports every name; frozen dataclasses, no
imports of the app.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class FileCopier(Protocol):
    """Copies files to the machine behind a URL (the app does it over SSH to a machine of Settings → Remotes)."""

    name: str

    def copy_changed(self, paths: list[Path], folder: str, say: Callable[[str], None]) -> None:
        """Copy into ``folder`` there each file whose content it does not hold yet; IsengardError when it cannot."""


@dataclass(frozen=True)
class Lent:
    """What only the app can do, lent to an engine made in the app's process (never written to a job file): the
    engines know no keyring, no SSH and no list of remotes. Without it (a worker, a test) they do without."""

    auth_header: Callable[[str], tuple[str, str] | None] = lambda url: None  # the header to send to a server's URL
    file_copier: Callable[[str], FileCopier | None] = lambda url: None  # who copies files to the URL's machine


@dataclass(frozen=True)
class EngineContext:
    """What the app hands an engine when it makes one: the only way an engine learns where things are.

    Built by the app from the Volume (``Volume.engine_dir`` computes ``engines/<name>`` once) and, in a
    worker, read back from the job file; an engine made without one (``EngineContext(name)``) knows no
    volume and finds only what the development variables point at.
    """

    name: str
    volume_root: Path | None = None
    engine_dir: Path | None = None  # <volume>/engines/<name>: its install and its run state
    models_dir: Path | None = None  # <volume>/models: base models, LoRAs, the tiny fast-test models
    extra_model_dirs: tuple[Path, ...] = ()  # model folders added in Settings (e.g. an existing ComfyUI's)
    lent: Lent = field(default_factory=Lent, compare=False)  # the app's own abilities (not in to_dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "volume_root": _str(self.volume_root), "engine_dir": _str(self.engine_dir),
                "models_dir": _str(self.models_dir), "extra_model_dirs": [str(p) for p in self.extra_model_dirs]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineContext:
        def path(key: str) -> Path | None:
            return Path(data[key]) if data.get(key) else None

        return cls(data["name"], path("volume_root"), path("engine_dir"), path("models_dir"),
                   tuple(Path(p) for p in data.get("extra_model_dirs", ())))


def _str(path: Path | None) -> str | None:
    return str(path) if path is not None else None


@dataclass(frozen=True)
class Upstream:
    """An engine that runs an upstream checkout in its own Python environment (AI-Toolkit, ComfyUI): how it is
    found, and what its environment must import — one declaration for ``isengard engines install`` (the check
    before the new install is swapped in) and ``isengard engines status`` (the health report)."""

    env_prefix: str  # development variables <prefix>_DIR (a checkout) and <prefix>_PYTHON (its python)
    entry_file: str  # the file that proves the checkout is this engine ("run.py", "main.py")
    imports: tuple[str, ...]  # what its environment must import for the engine to start
    title: str  # how sentences name it ("AI-Toolkit")
    fallback: str = ""  # what to do instead while it is not installed ("or use the built-in diffusers engine")
    # How ``isengard engines install`` builds its environment (VENDOR_PINS.json's requirements policy as data):
    skip_requirements: tuple[str, ...] = ()  # requirement lines starting with these are left out
    extra_packages: tuple[str, ...] = ()  # installed with the requirements
    no_deps_packages: tuple[str, ...] = ()  # installed afterwards with --no-deps
    remove_packages: tuple[str, ...] = ()  # uninstalled at the end
    bitsandbytes: bool = False  # its low-VRAM presets need bitsandbytes (8-bit AdamW and weights; ERROR_LIST E1)

    def locate(self, engine_dir: Path | None, name: str) -> tuple[Path, Path] | str:
        """(checkout, python) to run, or a sentence saying why there is none and what to do.

        The development variables win; otherwise the install in the volume (``engine_dir``/src and venv)."""
        install = f"`isengard engines install {name}`"
        folder = os.environ.get(f"{self.env_prefix}_DIR")
        if folder:
            checkout = Path(folder)
            python = Path(os.environ.get(f"{self.env_prefix}_PYTHON") or checkout / "venv" / "bin" / "python")
        elif engine_dir is not None:
            checkout, python = engine_dir / "src", engine_dir / "venv" / "bin" / "python"
            if not checkout.is_dir():
                return (f"{self.title} is not installed: run {install} (needs internet, or --source with a local "
                        f"clone){self.fallback}.")
        else:
            return (f"{self.title} is not installed: run {install}{self.fallback}; for development set "
                    f"{self.env_prefix}_DIR to a checkout and {self.env_prefix}_PYTHON to its environment's python.")
        if not (checkout / self.entry_file).is_file():
            return f"{checkout} has no {self.entry_file}; reinstall {self.title} with {install}."
        if not python.is_file():
            return f"{self.title}'s python ({python}) does not exist; reinstall it with {install}."
        return checkout, python


@dataclass(frozen=True)
class Toggle:
    """An Advanced toggle of the Generate screen: its key in ``GenerationRequest.advanced``, its title, and the
    file it asks the person for ("control image"), or "" when it asks for none."""

    name: str
    title: str
    asks_for: str = ""


@dataclass(frozen=True)
class EngineTraits:
    """What an engine declares about itself, read without running it (frozen: it is a class attribute)."""

    title: str  # what the window and the CLI call it: "Built-in (diffusers)"
    kinds: tuple[str, ...]  # what it does: "training", "image", "video"
    rank: int = 50  # lower is chosen first when the person names no engine (the settings' default goes first)
    auto_in_fast_test: bool = True  # whether it is chosen unasked in fast-test mode (tiny models, CPU)
    toggles: tuple[Toggle, ...] = ()  # the Advanced toggles it offers; advanced_readiness reports exactly these
    needs_worker_process: bool = True  # False: its jobs can run in the app's process (an HTTP client of a server)
    upstream: Upstream | None = None  # an upstream checkout in its own environment: install and health policy

    @property
    def toggle_names(self) -> tuple[str, ...]:
        return tuple(toggle.name for toggle in self.toggles)


@dataclass(frozen=True)
class BaseModel:
    """The base model a job uses: what the engine receives (a folder, "tiny-flux", a name in its folders), the
    human name recorded in metadata, and whether it is there (if not, a sentence saying what to do)."""

    id: str
    name: str
    ready: bool
    reason: str = ""
