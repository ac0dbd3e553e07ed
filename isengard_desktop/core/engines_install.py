"""Installing a pinned upstream engine into the volume: ``engines/<name>/src`` and ``engines/<name>/venv``.

Everything is built in a staging folder beside the current install and swapped in only when the new
environment imports what the engine declares (``Upstream.imports``), so a failed install leaves the
previous working one intact.
The source comes from a local git repository or checkout (``--source``), or is cloned from the pinned
repository on a machine with internet. The commit is verified against vendor/VENDOR_PINS.json.

ComfyUI also gets the node packs pinned under "custom_nodes" (the IP-Adapter and FaceDetailer toggles
need them): each is exported at its pinned commit into ``engines/comfyui/base/custom_nodes/<directory>``
(ComfyUI's --base-directory) and its requirements go into ComfyUI's environment with torch held at the
engine's pin. Everything else in the engine folder that the install does not own (ComfyUI's base
folder with its database, inputs and outputs; the run state) is carried over to the new install.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog

from isengard_desktop.base.errors import IsengardError
from isengard_desktop.base.mode import detect_gpu
from isengard_desktop.core.engine_python import find_engine_python, venv_commands
from isengard_desktop.core.engines import installable_engines, upstream
from isengard_desktop.core.engines_status import pins
from isengard_desktop.storage.volume import Volume

log = structlog.get_logger(__name__)

Progress = Callable[[int, int, str], None]  # done, total, what is happening

# Entries of engines/<name>/ that an install builds and replaces; everything else there is carried over.
OWNED = {"src", "venv", "install.json", "requirements.isengard.txt", "constraints.isengard.txt", "node_packs"}
# A folder of local clones of the node packs, one per pin key (<dir>/<key>), used instead of cloning.
NODE_SOURCES_ENV = "ISENGARD_CUSTOM_NODE_SOURCES"
TORCH = ["torch==2.14.1", "torchvision==0.29.1"]


def torch_install_args(name: str, gpus: list, system: str | None = None) -> list[list[str]]:
    """The ``pip install`` arguments that put torch into engine ``name``'s environment, one list per pip run.

    Without an NVIDIA GPU: the pinned torch as it always was (pip picks the build; here, from local disk). With
    one: the exact CUDA build core/torch_builds.py chooses for the cards and driver, from the PyTorch index
    for that build, then the pinned bitsandbytes where the engine's low-VRAM presets need it. Raises
    TorchBuildError (what to update) when no build runs on this machine."""
    if not gpus:
        return [list(TORCH)]
    from isengard_desktop.core.torch_builds import choose_build, rules

    versions = dict(spec.split("==", 1) for spec in TORCH)
    build = choose_build(gpus, versions["torch"], system)
    commands = [[*(build.requirement(package, version) for package, version in versions.items()), *build.pip_args]]
    if upstream(name).bitsandbytes:
        commands.append([f"bitsandbytes=={rules()['bitsandbytes']['version']}"])
    return commands


class InstallError(IsengardError):
    """An engine could not be installed; the previous install (if any) is untouched."""


def _run(command: list[str], what: str, log_file: Path, extra_env: dict[str, str] | None = None) -> None:
    with open(log_file, "a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                check=False, env={**os.environ, **extra_env} if extra_env else None)
    if result.returncode != 0:
        tail = log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-3:]
        raise InstallError(f"{what} failed (exit code {result.returncode}): {' / '.join(tail)[:400]}. "
                           f"The full output is in {log_file}; the previous install is unchanged.")


def export_source(name: str, source: Path | None, target: Path, log_file: Path, pin: dict | None = None) -> str:
    """Put the pinned commit's files into ``target``; returns the full commit id.

    ``pin`` is the engine's entry of VENDOR_PINS.json unless given (a node pack's entry)."""
    pin = pin or pins()["engines"][name]
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


def _requirement_lines(path: Path, skips: tuple[str, ...]) -> list[str]:
    """The requirement lines of ``path`` without comments and skipped ones: a skip that is a plain name drops that
    package only ("torch" keeps "torchsde"), one with punctuation is a prefix ("git+")."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.split(" #", 1)[0].strip()
        if not text or text.startswith("#"):
            continue
        name = re.split(r"[\s\[=<>!~;@]", text, maxsplit=1)[0].lower()
        if any(name == skip or (not skip.replace("-", "").isalnum() and text.startswith(skip)) for skip in skips):
            continue
        out.append(text)
    return out


def build_environment(name: str, src: Path, venv: Path, log_file: Path, progress: Progress) -> None:
    # The app's interpreter from source; a system Python from the bundle (core/engine_python.py).
    for command, extra_env in venv_commands(venv):
        _run(command, "Creating the engine's Python environment", log_file, extra_env)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    progress(2, 6, "Installing PyTorch (several GB; this takes a while)")
    from isengard_desktop.base.mode import query_gpus

    for args in torch_install_args(name, query_gpus()):
        _run([*pip, *args], "Installing PyTorch", log_file)
    progress(3, 6, "Installing the engine's requirements")
    requirements = venv.parent / "requirements.isengard.txt"
    policy = upstream(name)  # what the engine declares about building its environment
    requirements.write_text("\n".join(_requirement_lines(src / "requirements.txt", policy.skip_requirements)) + "\n")
    _run([*pip, *policy.extra_packages, "-r", str(requirements)], "Installing the requirements", log_file)
    if policy.no_deps_packages:
        _run([*pip, "--no-deps", *policy.no_deps_packages], "Installing extra packages", log_file)
    for package in policy.remove_packages:
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-y", "--quiet", package],
                       capture_output=True, check=False)


def node_packs(name: str) -> dict[str, dict]:
    """The node packs pinned for engine ``name`` (VENDOR_PINS.json "custom_nodes"), parents before nested ones."""
    packs = {key: pin for key, pin in pins().get("custom_nodes", {}).items() if pin.get("engine") == name}
    return dict(sorted(packs.items(), key=lambda item: item[1]["directory"].count("/")))


def _pack_source(key: str, node_sources: dict[str, Path] | None) -> Path | None:
    if node_sources and key in node_sources:
        return Path(node_sources[key])
    folder = os.environ.get(NODE_SOURCES_ENV)
    if folder and (Path(folder) / key).exists():
        return Path(folder) / key
    return None  # clone from the pinned repository


def install_node_packs(name: str, staging: Path, log_file: Path, node_sources: dict[str, Path] | None,
                       progress: Progress) -> dict[str, str]:
    """Export every pinned node pack into ``staging/node_packs/<directory>`` and install their requirements into
    ``staging/venv`` with torch held at the engine's pin; returns {pack: full commit}."""
    packs = node_packs(name)
    if not packs:
        return {}
    progress(4, 6, f"Installing the node packs ({', '.join(packs)})")
    commits, lines = {}, []
    for key, pin in packs.items():
        target = staging / "node_packs" / pin["directory"]
        commits[key] = export_source(key, _pack_source(key, node_sources), target, log_file, pin=pin)
        skips = tuple(entry.split()[0] for entry in pin.get("requirements_policy", {}).get("skip", []))
        if (target / "requirements.txt").is_file():
            lines += [line for line in _requirement_lines(target / "requirements.txt", skips) if line not in lines]
    if lines:
        constraints = staging / "constraints.isengard.txt"
        constraints.write_text("\n".join(TORCH) + "\n", encoding="utf-8")
        requirements = staging / "requirements.node_packs.isengard.txt"
        requirements.write_text("\n".join(lines) + "\n", encoding="utf-8")
        _run([str(staging / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet", "-c", str(constraints),
              "-r", str(requirements)], "Installing the node packs' requirements", log_file)
    return commits


def _swap(staging: Path, final: Path, backup: Path, packs: dict[str, dict]) -> None:
    """Put the new install in place; carry over what the install does not own (ComfyUI's base folder with its
    database, inputs and outputs); the pinned packs replace their folders in base/custom_nodes."""
    carried: list[str] = []
    shutil.rmtree(backup, ignore_errors=True)
    if final.exists():
        final.rename(backup)
    try:
        if backup.exists():
            for entry in backup.iterdir():
                if entry.name not in OWNED and not (staging / entry.name).exists():
                    entry.rename(staging / entry.name)
                    carried.append(entry.name)
        custom_nodes = staging / "base" / "custom_nodes"
        for top in dict.fromkeys(pin["directory"].split("/")[0] for pin in packs.values()):
            custom_nodes.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(custom_nodes / top, ignore_errors=True)
            (staging / "node_packs" / top).rename(custom_nodes / top)
        shutil.rmtree(staging / "node_packs", ignore_errors=True)
        staging.rename(final)
    except BaseException:
        for entry_name in carried:  # give the previous install back everything it had
            if (staging / entry_name).exists():
                (staging / entry_name).rename(backup / entry_name)
        if backup.exists() and not final.exists():
            backup.rename(final)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def install(name: str, volume_root: Path, source: Path | None = None, progress: Progress | None = None,
            node_sources: dict[str, Path] | None = None) -> dict:
    """Install ``name`` at its pinned commit into the volume; returns what was recorded.

    ``node_sources`` maps a pinned node pack to a local git clone (or set ISENGARD_CUSTOM_NODE_SOURCES to a
    folder of clones named after the packs); packs without one are cloned from their repository."""
    if name not in pins()["engines"]:
        raise InstallError(f"There is no engine called {name!r} in the pins; known: {', '.join(pins()['engines'])}.")
    installable = installable_engines()
    if name not in installable:
        raise InstallError(f"Installing {name} is not built yet; {', '.join(installable)} can be installed.")
    report = progress or (lambda done, total, what: None)
    find_engine_python()  # before any work: say at once when no Python here can build the environment
    from isengard_desktop.base.mode import query_gpus

    torch_install_args(name, query_gpus())  # likewise when no torch build runs on these GPUs with this driver
    volume = Volume(volume_root)
    engines_dir = volume.engines_dir
    engines_dir.mkdir(parents=True, exist_ok=True)
    final = volume.engine_dir(name)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.installing.", dir=engines_dir))
    log_file = engines_dir / f"{name}-install.log"
    log_file.write_text("", encoding="utf-8")
    try:
        report(0, 6, "Getting the pinned source")
        commit = export_source(name, source, staging / "src", log_file)
        report(1, 6, "Creating the engine's Python environment")
        build_environment(name, staging / "src", staging / "venv", log_file, report)
        packs = install_node_packs(name, staging, log_file, node_sources, report)
        report(5, 6, "Checking the environment")
        # What proves the new environment works: the imports the engine declares (the health report checks the same).
        _run([str(staging / "venv" / "bin" / "python"), "-c", "import " + ", ".join(upstream(name).imports)],
             "Checking the new environment", log_file)
        record = {"engine": name, "commit": commit, "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
                  "gpu": detect_gpu().summary}
        if packs:
            record["custom_nodes"] = packs
        (staging / "install.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
        _swap(staging, final, engines_dir / f".{name}.previous", node_packs(name))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report(6, 6, "Installed")
    log.info("engine_installed", engine=name, commit=commit, path=str(final), custom_nodes=packs)
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
