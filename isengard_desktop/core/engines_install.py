"""Installing a pinned upstream engine into the volume: ``engines/<name>/src`` and ``engines/<name>/venv``.

Everything is built in a staging folder beside the current install and swapped in only when the new
environment imports torch and diffusers, so a failed install leaves the previous working one intact.
The source comes from a local git repository or checkout (``--source``), or is cloned from the pinned
repository on a machine with internet. The commit is verified against vendor/VENDOR_PINS.json.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog

from isengard_desktop.core.engines_status import pins
from isengard_desktop.core.mode import detect_gpu
from isengard_desktop.errors import IsengardError

log = structlog.get_logger(__name__)

Progress = Callable[[int, int, str], None]  # done, total, what is happening

# How each engine's environment is built (the requirements policy of VENDOR_PINS.json, as commands).
REQUIREMENT_SKIPS = {"aitoolkit": ("git+", "setuptools", "torchao")}
EXTRA_PACKAGES = {"aitoolkit": ["setuptools>=77.0.3,<81", "diffusers==0.39.*", "torchao==0.10.0"]}
NO_DEPS_PACKAGES = {"aitoolkit": ["torchaudio==2.11.0"]}
REMOVE_PACKAGES = {"aitoolkit": ["triton"]}
TORCH = ["torch==2.14.1", "torchvision==0.29.1"]


class InstallError(IsengardError):
    """An engine could not be installed; the previous install (if any) is untouched."""


def _run(command: list[str], what: str, log_file: Path) -> None:
    with open(log_file, "a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                check=False)
    if result.returncode != 0:
        tail = log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-3:]
        raise InstallError(f"{what} failed (exit code {result.returncode}): {' / '.join(tail)[:400]}. "
                           f"The full output is in {log_file}; the previous install is unchanged.")


def export_source(name: str, source: Path | None, target: Path, log_file: Path) -> str:
    """Put the pinned commit's files into ``target``; returns the full commit id."""
    pin = pins()["engines"][name]
    repo = source
    if repo is None:
        repo = Path(tempfile.mkdtemp(prefix=f"isengard-{name}-clone-"))
        _run(["git", "clone", "--quiet", "--no-checkout", pin["repository"], str(repo)], "Downloading the source",
             log_file)
    git = ["git", f"--git-dir={_git_dir(repo)}"]
    found = subprocess.run([*git, "rev-parse", "--verify", f"{pin['commit']}^{{commit}}"], capture_output=True,
                           text=True, check=False)
    if found.returncode != 0:
        raise InstallError(f"The source {repo} does not contain the pinned commit {pin['commit']} of {name}; "
                           "fetch it or point --source at a clone that has it.")
    commit = found.stdout.strip()
    listing = subprocess.run([*git, "ls-tree", "-r", "-z", commit], capture_output=True, check=True).stdout
    missing = []
    for entry in listing.split(b"\0"):
        if not entry:
            continue
        meta, path = entry.split(b"\t", 1)
        _mode, kind, sha = meta.decode().split()
        if kind != "blob":
            continue
        destination = target / path.decode("utf-8", "surrogateescape")
        destination.parent.mkdir(parents=True, exist_ok=True)
        # File by file, not git worktree: a snapshot may lack an LFS blob, which must not stop the install.
        blob = subprocess.run([*git, "cat-file", "blob", sha], capture_output=True, check=False)
        if blob.returncode != 0:
            missing.append(path.decode())
            continue
        destination.write_bytes(blob.stdout)
    if missing:
        log.warning("engine_source_files_missing", engine=name, files=missing[:10], count=len(missing))
    (target / ".isengard-commit").write_text(commit + "\n", encoding="utf-8")
    return commit


def _git_dir(repo: Path) -> Path:
    return repo / ".git" if (repo / ".git").exists() else repo


def build_environment(name: str, src: Path, venv: Path, log_file: Path, progress: Progress) -> None:
    _run([sys.executable, "-m", "venv", str(venv)], "Creating the engine's Python environment", log_file)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    progress(2, 6, "Installing PyTorch (several GB; this takes a while)")
    # Where there is no NVIDIA GPU this still installs the same pinned torch; pip picks the build.
    _run([*pip, *TORCH], "Installing PyTorch", log_file)
    progress(3, 6, "Installing the engine's requirements")
    requirements = venv.parent / "requirements.isengard.txt"
    skips = REQUIREMENT_SKIPS.get(name, ())
    lines = (src / "requirements.txt").read_text(encoding="utf-8").splitlines()
    requirements.write_text("\n".join(line for line in lines if line.strip() and not line.startswith(skips)) + "\n")
    _run([*pip, *EXTRA_PACKAGES.get(name, []), "-r", str(requirements)], "Installing the requirements", log_file)
    if NO_DEPS_PACKAGES.get(name):
        _run([*pip, "--no-deps", *NO_DEPS_PACKAGES[name]], "Installing extra packages", log_file)
    for package in REMOVE_PACKAGES.get(name, []):
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-y", "--quiet", package],
                       capture_output=True, check=False)


def install(name: str, volume_root: Path, source: Path | None = None, progress: Progress | None = None) -> dict:
    """Install ``name`` at its pinned commit into the volume; returns what was recorded."""
    if name not in pins()["engines"]:
        raise InstallError(f"There is no engine called {name!r} in the pins; known: {', '.join(pins()['engines'])}.")
    if name != "aitoolkit":
        raise InstallError(f"Installing {name} is not built yet; only aitoolkit can be installed in this version.")
    report = progress or (lambda done, total, what: None)
    engines_dir = volume_root / "engines"
    engines_dir.mkdir(parents=True, exist_ok=True)
    final = engines_dir / name
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.installing.", dir=engines_dir))
    log_file = engines_dir / f"{name}-install.log"
    log_file.write_text("", encoding="utf-8")
    try:
        report(0, 6, "Getting the pinned source")
        commit = export_source(name, source, staging / "src", log_file)
        report(1, 6, "Creating the engine's Python environment")
        build_environment(name, staging / "src", staging / "venv", log_file, report)
        report(5, 6, "Checking the environment")
        _run([str(staging / "venv" / "bin" / "python"), "-c", "import torch, diffusers"],
             "Checking the new environment", log_file)
        record = {"engine": name, "commit": commit, "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
                  "gpu": detect_gpu().summary}
        (staging / "install.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
        backup = engines_dir / f".{name}.previous"
        if final.exists():
            shutil.rmtree(backup, ignore_errors=True)
            final.rename(backup)
        staging.rename(final)
        shutil.rmtree(backup, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report(6, 6, "Installed")
    log.info("engine_installed", engine=name, commit=commit, path=str(final))
    return record


def update(name: str, commit: str, volume_root: Path, source: Path | None = None,
           progress: Progress | None = None) -> dict:
    """Move ``name``'s pin to ``commit`` and reinstall; the old pin comes back if the install fails."""
    from isengard_desktop.core.engines_status import pins_path

    path = pins_path()
    original = path.read_text(encoding="utf-8")
    data = json.loads(original)
    if name not in data["engines"]:
        raise InstallError(f"There is no engine called {name!r} in the pins; known: {', '.join(data['engines'])}.")
    entry = data["engines"][name]
    data["engines"][name] = {**entry, "commit": commit, "date": "", "verified": False}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    try:
        record = install(name, volume_root, source, progress)
    except BaseException:
        path.write_text(original, encoding="utf-8")
        raise
    log.info("engine_pin_moved", engine=name, old=entry["commit"], new=record["commit"])
    return record
