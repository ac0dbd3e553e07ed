"""Which Python builds an upstream engine's environment (AI-Toolkit, ComfyUI): the ``-m venv`` step of an install.

From a source checkout the app's own interpreter does it (``sys.executable -m venv``). In the installer bundle
(PyInstaller, ``sys.frozen``) ``sys.executable`` is the app itself and there is no standalone Python inside it, so
a Python installed on the machine is used: ``ISENGARD_ENGINE_PYTHON`` if set, else the first of python3.12,
python3.11, python3.13, python3.10, python3 on PATH whose version the engines' pinned torch supports. Where that
Python lacks ensurepip (Debian and Ubuntu without the python3-venv package) the environment is created
``--without-pip`` and pip is bootstrapped from the copy of pip the bundle carries (``pip_bootstrap/``), so only
the python3 that these systems ship is needed. Why not a standalone Python or ``uv python install``: both download
from GitHub at install time, which is not always reachable (it is not on the build machine).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import structlog

from isengard_desktop.base.errors import IsengardError

log = structlog.get_logger(__name__)

PYTHON_ENV = "ISENGARD_ENGINE_PYTHON"
# Versions the engines' pinned torch (2.14.1) and their requirements install on; 3.14 has torch wheels but not yet
# wheels for all of AI-Toolkit's and ComfyUI's requirements.
SUPPORTED = ((3, 10), (3, 13))
CANDIDATES = ("python3.12", "python3.11", "python3.13", "python3.10", "python3")
_PROBE = ("import sys, importlib.util; print('%d.%d' % sys.version_info[:2]); "
          "print(int(importlib.util.find_spec('venv') is not None)); "
          "print(int(importlib.util.find_spec('ensurepip') is not None))")


class NoEnginePythonError(IsengardError):
    """No Python on this machine can build an engine's environment."""


@dataclass(frozen=True)
class EnginePython:
    path: Path
    version: tuple[int, int]
    has_ensurepip: bool


def frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def probe(path: str | Path) -> EnginePython | None:
    """What ``path`` is, or None when it does not run or has no venv module."""
    try:
        out = subprocess.run([str(path), "-I", "-c", _PROBE], capture_output=True, text=True, timeout=30,
                             check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.split()
    if out.returncode != 0 or len(lines) != 3 or lines[1] != "1":
        return None
    major, minor = (int(part) for part in lines[0].split("."))
    return EnginePython(Path(path), (major, minor), lines[2] == "1")


def supported(version: tuple[int, int]) -> bool:
    return SUPPORTED[0] <= version <= SUPPORTED[1]


def _wanted() -> str:
    low, high = (f"{major}.{minor}" for major, minor in SUPPORTED)
    return f"Python {low} to {high}"


def find_engine_python() -> EnginePython:
    """The Python that builds engines' environments; raises NoEnginePythonError saying what to install."""
    if not frozen() and not os.environ.get(PYTHON_ENV):
        return EnginePython(Path(sys.executable), sys.version_info[:2], True)
    chosen = os.environ.get(PYTHON_ENV)
    if chosen:
        found = probe(chosen)
        if found is None or not supported(found.version):
            what = "does not run" if found is None else f"is Python {found.version[0]}.{found.version[1]}"
            raise NoEnginePythonError(f"{PYTHON_ENV}={chosen} {what}; point it at {_wanted()} or unset it.")
        return found
    seen: set[Path] = set()
    rejected = []
    for name in CANDIDATES:
        where = shutil.which(name)
        if where is None or Path(where).resolve() in seen:
            continue
        seen.add(Path(where).resolve())
        found = probe(where)
        if found is not None and supported(found.version):
            log.info("engine_python_found", path=where, version=f"{found.version[0]}.{found.version[1]}",
                     ensurepip=found.has_ensurepip)
            return found
        rejected.append(where if found is None else f"{where} ({found.version[0]}.{found.version[1]})")
    besides = f" (found only {', '.join(rejected)})" if rejected else ""
    raise NoEnginePythonError(
        f"Installing an engine needs {_wanted()} on this machine and none was found on PATH{besides}: install "
        "python3.12 (Debian/Ubuntu: `sudo apt install python3`, Fedora: `sudo dnf install python3`, Windows/macOS: "
        f"python.org) or set {PYTHON_ENV} to one, then install again.")


def pip_bootstrap_dir() -> Path | None:
    """The folder holding the bundle's copy of pip (``pip_bootstrap/pip``), None outside the bundle."""
    base = getattr(sys, "_MEIPASS", None)
    folder = Path(base) / "pip_bootstrap" if base else None
    return folder if folder and (folder / "pip").is_dir() else None


def venv_commands(venv: Path, python: EnginePython | None = None,
                  pip_source: Path | None = None) -> list[tuple[list[str], dict[str, str] | None]]:
    """The commands (with extra environment variables, or None) that create ``venv`` with pip in it.

    ``pip_source`` is a folder containing the ``pip`` package, used only when ``python`` lacks ensurepip."""
    python = python or find_engine_python()
    if python.has_ensurepip:
        return [([str(python.path), "-m", "venv", str(venv)], None)]
    pip_source = pip_source or pip_bootstrap_dir()
    if pip_source is None:
        raise NoEnginePythonError(
            f"{python.path} cannot create environments with pip (its ensurepip module is missing): install "
            f"python{python.version[0]}.{python.version[1]}-venv (Debian/Ubuntu) or point {PYTHON_ENV} at another "
            "Python, then install again.")
    venv_python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    # pip runs from the bundle's copy (PYTHONPATH) and installs itself, from PyPI, into the new environment.
    return [([str(python.path), "-m", "venv", "--without-pip", str(venv)], None),
            ([str(venv_python), "-m", "pip", "install", "--quiet", "pip"], {"PYTHONPATH": str(pip_source)})]
