"""CI: make sure the real engines are installed in a cache outside the clone, and say where they are.

    eval "$(.venv/bin/python tools/ci_engines.py)"     # what .ci/run does before the test suite

AI-Toolkit and ComfyUI with its pinned node packs are installed from the snapshots in ``../shared/engines``
(see its README) by the app's own command, ``isengard --volume CACHE engines install NAME --source ...``, into
``${ISENGARD_CI_CACHE:-~/.cache/isengard-ci}/engines-<first 12 hex of sha256(vendor/VENDOR_PINS.json)>``: a
later run on the same machine reuses it, a moved pin gives a new key (older keys are removed). The cache counts as
complete only once ``.ci-complete.json`` is written, after both installs and a check of each (install.json at the
pinned commit, every pinned node pack at its commit, the environment imports what the engine needs). Without that
marker each engine is checked again: one that passes is kept (the app's install is atomic: a staging folder renamed
into place at the very end), one that fails is wiped and installed again, and staging folders left by a killed
install are removed. Without ``../shared/engines`` nothing is installed and the real-engine tests skip, with reason.

Prints ``export ISENGARD_COMFYUI_DIR=...`` (and _PYTHON, and the two AI-Toolkit ones) on stdout; messages go to
stderr. Written in Python rather than bash because the checks read JSON and compare pins.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PINS = ROOT / "vendor" / "VENDOR_PINS.json"
SOURCES = Path(os.environ.get("ISENGARD_CI_ENGINES") or ROOT.parent / "shared" / "engines")
ENGINES = ("comfyui", "aitoolkit")  # ComfyUI first: its node packs need the most checking
MARKER = ".ci-complete.json"
ENV_NAMES = {"comfyui": ("ISENGARD_COMFYUI_DIR", "ISENGARD_COMFYUI_PYTHON"),
             "aitoolkit": ("ISENGARD_AITOOLKIT_DIR", "ISENGARD_AITOOLKIT_PYTHON")}
# A foreign install into the cache (another CI run, or an install started by hand) is waited for this long.
FOREIGN_WAIT_S = 60 * 60


def say(message: str) -> None:
    sys.stderr.write(f"ci_engines: {message}\n")
    sys.stderr.flush()


def cache_key() -> str:
    return hashlib.sha256(PINS.read_bytes()).hexdigest()[:12]


def cache_root() -> Path:
    return Path(os.environ.get("ISENGARD_CI_CACHE") or Path.home() / ".cache" / "isengard-ci")


def _clean_env() -> dict[str, str]:
    """The environment for the app's commands: no development variable may point them at another install."""
    env = {k: v for k, v in os.environ.items() if k not in {"ISENGARD_VOLUME", *sum(ENV_NAMES.values(), ())}}
    env["ISENGARD_CUSTOM_NODE_SOURCES"] = str(SOURCES)
    return env


def paths(volume: Path, name: str) -> tuple[Path, Path]:
    """(checkout, python) of an engine installed in ``volume`` (engines/<name>/src and engines/<name>/venv)."""
    folder = volume / "engines" / name
    return folder / "src", folder / "venv" / "bin" / "python"


def problems(volume: Path, name: str, pins: dict) -> list[str]:
    """What is wrong with ``name`` in ``volume`` against ``pins``; empty when it is installed and healthy."""
    from isengard_desktop.core.engines import upstream
    from isengard_desktop.storage.volume import Volume

    imports_needed = upstream(name).imports  # what the engine declares (the install check and status use the same)
    folder = Volume(volume).engine_dir(name)
    record_file = folder / "install.json"
    if not record_file.is_file():
        return [f"{name}: no install.json (not installed, or the install did not finish)"]
    record = json.loads(record_file.read_text(encoding="utf-8"))
    found: list[str] = []
    pin = pins["engines"][name]["commit"]
    if not str(record.get("commit", "")).startswith(pin):
        found.append(f"{name}: installed at {record.get('commit')}, the pin is {pin}")
    for pack, entry in pins.get("custom_nodes", {}).items():
        if entry.get("engine") != name:
            continue
        if record.get("custom_nodes", {}).get(pack) != entry["commit"]:
            found.append(f"{name}: node pack {pack} is at {record.get('custom_nodes', {}).get(pack)}, "
                         f"the pin is {entry['commit']}")
        if not (folder / "base" / "custom_nodes" / entry["directory"]).is_dir():
            found.append(f"{name}: node pack folder base/custom_nodes/{entry['directory']} is missing")
    checkout, python = paths(volume, name)
    if not checkout.is_dir() or not python.is_file():
        return [*found, f"{name}: {checkout} or {python} is missing"]
    imports = subprocess.run([str(python), "-c", "import " + ", ".join(imports_needed)], capture_output=True,
                             text=True, timeout=300, check=False)
    if imports.returncode != 0:
        found.append(f"{name}: its environment cannot import {', '.join(imports_needed)}: "
                     f"{imports.stderr.strip().splitlines()[-1:]}")
    return found


def installs(volume: Path) -> dict[str, str | None]:
    """Each engine's install as recorded by the app (install.json: commit and time), to recognise it later."""
    found: dict[str, str | None] = {}
    for name in ENGINES:
        record = volume / "engines" / name / "install.json"
        data = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
        found[name] = f"{data['commit']} {data['installed_at']}" if data else None
    return found


def install(volume: Path, name: str) -> None:
    """The app's own install command from the local snapshot; its output goes to the CI log."""
    isengard = Path(sys.executable).parent / "isengard"
    command = [str(isengard), "--volume", str(volume), "engines", "install", name, "--source", str(SOURCES / name)]
    say(f"installing {name}: {shlex.join(command)}")
    started = time.monotonic()
    subprocess.run(command, env=_clean_env(), check=True, stdout=sys.stderr)
    say(f"{name} installed in {time.monotonic() - started:.0f} s")


def foreign_installs(volume: Path) -> list[int]:
    """Pids of other processes running `engines install` into ``volume`` (not taking our lock: started by hand)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = [a.decode(errors="replace") for a in args]
        if "install" in text and "engines" in text and str(volume) in text and int(proc.name) != os.getpid():
            found.append(int(proc.name))
    return found


def wait_for_foreign(volume: Path) -> None:
    deadline = time.monotonic() + FOREIGN_WAIT_S
    while pids := foreign_installs(volume):
        if time.monotonic() > deadline:
            raise SystemExit(f"ci_engines: processes {pids} are still installing into {volume}; giving up")
        say(f"processes {pids} are installing into {volume}: waiting for them")
        time.sleep(15)


def remove_old_caches(root: Path, keep: Path) -> None:
    """Caches of pins no longer in this checkout; skipped while another run holds their lock."""
    for old in root.glob("engines-*"):
        if old == keep or not old.is_dir() or len(old.name) != len("engines-") + 12:
            continue
        with open(root / f"{old.name}.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            if foreign_installs(old):
                continue
            say(f"removing the cache of an older pin: {old}")
            shutil.rmtree(old, ignore_errors=True)
            (root / f"{old.name}.lock").unlink(missing_ok=True)


def ensure(volume: Path, pins: dict, key: str) -> None:
    """Leave ``volume`` complete (both engines checked, marker written), installing what is missing or broken."""
    marker = volume / MARKER
    seen = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else {}
    # Reused only as checked: the same key and the very installs checked then (an engine installed again since,
    # by hand or by another run, is checked again).
    if seen.get("key") == key and seen.get("installs") == installs(volume) and all(
            paths(volume, name)[1].is_file() for name in ENGINES):
        say(f"reusing {volume} (complete since {seen['completed_at']})")
        return
    marker.unlink(missing_ok=True)
    wait_for_foreign(volume)
    engines_dir = volume / "engines"
    for leftover in [*engines_dir.glob(".*.installing.*"), *engines_dir.glob(".*.previous")]:
        say(f"removing what a killed install left: {leftover}")
        shutil.rmtree(leftover, ignore_errors=True)
    for name in ENGINES:
        found = problems(volume, name, pins)
        if found:
            say("; ".join(found) + f": (re)installing {name}")
            shutil.rmtree(engines_dir / name, ignore_errors=True)
            install(volume, name)
            found = problems(volume, name, pins)
            if found:
                raise SystemExit("ci_engines: the new install is not healthy: " + "; ".join(found))
        else:
            say(f"{name} in {volume} is complete and healthy: kept")
    marker.write_text(json.dumps({"key": key, "completed_at": datetime.now(UTC).isoformat(timespec="seconds"),
                                  "installs": installs(volume)}, indent=2), encoding="utf-8")


def main() -> int:
    if not all((SOURCES / name).is_dir() for name in ENGINES):
        say(f"{SOURCES} does not hold the engine snapshots: nothing installed, the real-engine tests will skip")
        return 0
    sys.path.insert(0, str(ROOT))
    key = cache_key()
    root = cache_root()
    volume = root / f"engines-{key}"
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(root / f"{volume.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two CI runs on one machine: the second waits, then reuses
        volume.mkdir(exist_ok=True)
        ensure(volume, json.loads(PINS.read_text(encoding="utf-8")), key)
    remove_old_caches(root, volume)
    say(f"engines ready in {time.monotonic() - started:.0f} s")
    for name in ENGINES:
        checkout, python = paths(volume, name)
        dir_var, python_var = ENV_NAMES[name]
        sys.stdout.write(f"export {dir_var}={shlex.quote(str(checkout))}\n"
                         f"export {python_var}={shlex.quote(str(python))}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
