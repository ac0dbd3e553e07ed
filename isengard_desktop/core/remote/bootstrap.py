"""Bootstrap: put this version of the app on a remote machine, in its remote folder, with nothing system-wide.

The first use creates ``<dir>/venv`` with the remote's ``python3 -m venv``, installs torch by the first-run rule
(core/torch_builds.py: the CUDA build for the remote's GPUs and driver from the PyTorch index; on a CPU-only
remote the pinned ``torch==2.13.0`` as pip finds it), then the app's other dependencies from PyPI — without the
GUI ones (PySide6, pyqtgraph): the remote only runs the CLI and the workers, which never import Qt. The app's
own files travel as one tar stream into ``<dir>/app`` and a ``.pth`` file puts them on the venv's path.

Why the source files and not ``pip wheel`` of the project: the app finds its presets, workflow templates and pins
in ``resources/`` and ``vendor/`` *beside* the package (isengard_desktop/base/resources.py), which a wheel of the
package does not carry, so a wheel-installed remote could not find them. The files are the same the source
checkout (or bundle) runs here, ~1.3 MB; no build backend is needed on either side.

A later use only checks: ``installed.json`` holds the app version, a hash of its files and a hash of the
dependency set; when all match, bootstrap returns after the one ssh round trip of ``check_remote``. When only the
app's files changed (a development checkout), only they are sent again.

The engines (AI-Toolkit, ComfyUI) are not installed by bootstrap: a remote job on them runs
``isengard engines install NAME`` there first (``ensure_engine``), at the same pins as here.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from isengard_desktop import __version__
from isengard_desktop.base.errors import IsengardError
from isengard_desktop.core.remote import ssh
from isengard_desktop.core.remote.check import EXPAND_DIR, RemoteReport, check_remote
from isengard_desktop.core.remote.ssh import Remote

log = structlog.get_logger(__name__)

Progress = Callable[[str], None]
SHIPPED = ("isengard_desktop", "engines", "resources", "vendor", "pyproject.toml")
# Dependencies only the window needs; the remote runs the CLI and workers.
GUI_ONLY = ("pyside6", "pyqtgraph")
MIN_PYTHON = (3, 11)
LOCK_POLL_S = 5.0
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


class BootstrapError(IsengardError):
    """The app could not be installed on the remote; the message says what to do there."""


@dataclass(frozen=True)
class RemoteInstall:
    """The app as installed on a remote: what to run there and where its volume is (absolute remote paths)."""

    remote: Remote
    folder: str
    python: str  # <folder>/venv/bin/python
    volume: str  # <folder>/volume
    version: str
    torch: str  # the torch requirement installed there ("torch==2.13.0", "torch==2.13.0+cu130")
    report: RemoteReport

    @property
    def isengard(self) -> list[str]:
        """argv prefix of the CLI there, with its volume: ``[*install.isengard, "jobs", "list"]``."""
        return [self.python, "-m", "isengard_desktop", "--volume", self.volume]


def app_root() -> Path:
    """The folder holding isengard_desktop/, engines/, resources/ and vendor/ (a checkout, or the bundle)."""
    from isengard_desktop.base.resources import resources_dir

    return resources_dir().parent


def _shipped_files() -> list[tuple[str, Path]]:
    root = app_root()
    files = []
    for top in SHIPPED:
        path = root / top
        if path.is_file():
            files.append((top, path))
            continue
        for item in sorted(path.rglob("*")):
            if item.is_file() and "__pycache__" not in item.parts and item.suffix not in (".pyc", ".pyo"):
                files.append((item.relative_to(root).as_posix(), item))
    if not any(name.startswith("isengard_desktop/") for name, _ in files):
        raise BootstrapError(f"The app's files are not found beside {root}; reinstall the app.")
    return files


def source_hash() -> str:
    digest = hashlib.sha256()
    for name, path in _shipped_files():
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def app_dependencies() -> list[str]:
    """The app's requirements (pyproject's [project] dependencies) without the GUI-only ones and torch."""
    import tomllib

    data = tomllib.loads((app_root() / "pyproject.toml").read_text(encoding="utf-8"))
    deps = data["project"]["dependencies"]
    return [d for d in deps if not d.lower().startswith((*GUI_ONLY, "torch"))]


def app_torch_pin() -> str:
    import tomllib

    data = tomllib.loads((app_root() / "pyproject.toml").read_text(encoding="utf-8"))
    pin = next(d for d in data["project"]["dependencies"] if d.replace(" ", "").startswith("torch=="))
    return pin.split("==", 1)[1].strip()


def torch_args(report: RemoteReport) -> list[str]:
    """pip arguments installing the app's torch for the remote's GPUs (the first-run rule)."""
    version = app_torch_pin()
    if not report.gpus:
        return [f"torch=={version}"]
    from isengard_desktop.core.torch_builds import choose_build

    build = choose_build(report.gpus, version, "linux")
    return [build.requirement("torch", version), *build.pip_args]


def _tar_of_app() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, path in _shipped_files():
            tar.add(str(path), arcname=name, recursive=False)
    return buffer.getvalue()


def _python_version(report: RemoteReport) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in (report.python or "").split()[-1].split(".")[:2])
    except ValueError:
        return ()


def _sh(remote: Remote, script: str, *args: str, timeout: float | None = None, input: bytes | None = None) -> str:
    out = ssh.run(remote, ["sh", "-c", EXPAND_DIR + script, "sh", remote.dir, *args], timeout=timeout, input=input)
    return out.stdout.decode(errors="replace")


def _pip(remote: Remote, folder: str, args: list[str], what: str, progress: Progress) -> None:
    """Run pip in the remote venv, passing its Collecting/Installing lines on as progress."""
    import subprocess
    import tempfile

    progress(what)
    argv = [f"{folder}/venv/bin/python", "-m", "pip", "install", "--progress-bar", "off",
            "--disable-pip-version-check", *args]
    with tempfile.TemporaryFile() as err:
        proc = ssh.popen(remote, argv, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        tail: list[str] = []
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            tail = (tail + [line])[-5:]
            if line.startswith(("Collecting", "Installing collected", "Successfully installed")):
                progress("  " + line[:160])
        proc.wait()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if proc.returncode == ssh.SSH_FAILED:
        raise ssh.diagnose(remote, stderr)
    if proc.returncode != 0:
        last = [ln for ln in (stderr.splitlines() or tail) if ln.strip()][-2:]
        raise BootstrapError(f"{what} on {remote.name} failed: {' / '.join(last)[:300]}; fix that there (network, "
                             f"disk) and run isengard remotes bootstrap {remote.name} again.")


def _lock(remote: Remote) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(f"{remote.destination}:{remote.port}:{remote.dir}", threading.Lock())


def ensure_bootstrapped(remote: Remote, progress: Progress | None = None) -> RemoteInstall:
    """The app at this version on ``remote`` (installing or updating it there first). Raises SshError /
    BootstrapError in one sentence."""
    say = progress or (lambda _text: None)
    with _lock(remote):
        return _ensure(remote, say)


@contextmanager
def _remote_lock(remote: Remote, say: Progress) -> Iterator[None]:
    """One install at a time in a remote folder, across processes and machines (two jobs starting together):
    ``mkdir`` of ``<dir>/.bootstrap-lock`` is atomic; a lock older than 30 minutes is a crashed install's."""
    told = False
    while True:
        out = _sh(remote, 'mkdir -p "$d" && if mkdir "$d/.bootstrap-lock" 2>/dev/null; then echo taken; '
                          'elif [ -n "$(find "$d/.bootstrap-lock" -maxdepth 0 -mmin +30)" ]; then '
                          'rmdir "$d/.bootstrap-lock"; echo stale; else echo busy; fi', timeout=60).strip()
        if out == "taken":
            break
        if out == "busy" and not told:
            say(f"Waiting for another install of the app on {remote.name} to finish")
            told = True
        if out == "busy":
            time.sleep(LOCK_POLL_S)
    try:
        yield
    finally:
        _sh(remote, 'rmdir "$d/.bootstrap-lock" 2>/dev/null; exit 0', timeout=60)


def _ensure(remote: Remote, say: Progress, locked: bool = False) -> RemoteInstall:
    if not locked:
        say(f"Checking {remote.name} ({remote.address})")
    report = check_remote(remote)
    folder = report.folder
    wanted_hash = source_hash()
    torch = torch_args(report)
    deps = app_dependencies()
    deps_hash = hashlib.sha256(json.dumps([torch, deps]).encode()).hexdigest()[:16]
    installed = report.installed
    install = RemoteInstall(remote, folder, f"{folder}/venv/bin/python", f"{folder}/volume", __version__,
                            " ".join(torch), report)
    if (report.app_version == __version__ and installed.get("source_hash") == wanted_hash
            and installed.get("deps_hash") == deps_hash):
        say(f"{remote.name} has Isengard Desktop {__version__} already")
        return install
    if not locked:  # take the remote folder's lock, then look again: another process may have just installed it
        with _remote_lock(remote, say):
            return _ensure(remote, say, locked=True)
    if _python_version(report) < MIN_PYTHON:
        raise BootstrapError(f"{remote.name} needs Python {'.'.join(map(str, MIN_PYTHON))} or newer as python3 (it "
                             f"has {report.python or 'none'}); install it there (e.g. apt-get install python3.11 "
                             "python3.11-venv) and try again.")
    log.info("remote_bootstrap_started", remote=remote.name, folder=folder, gpus=len(report.gpus))
    python = report.python.split()[0] if report.python else "python3"
    if installed.get("deps_hash") != deps_hash or not installed.get("venv"):
        say(f"Creating the Python environment in {folder}/venv")
        try:
            _sh(remote, 'mkdir -p "$d/volume" && rm -f "$d/installed.json" && exec "$2" -m venv --clear "$d/venv"',
                python, timeout=600)
        except ssh.RemoteCommandError as exc:
            why = exc.stderr.strip()[-200:]
            raise BootstrapError(f"{python} on {remote.name} cannot create a virtual environment ({why}); install "
                                 "the venv module there (Debian/Ubuntu: apt-get install python3-venv) and try "
                                 "again.") from exc
        _pip(remote, folder, torch, f"Installing {' '.join(a for a in torch if not a.startswith('-'))[:60]} "
             f"for {'the ' + report.gpus[0].name if report.gpus else 'the CPU'}", say)
        _pip(remote, folder, deps, "Installing the app's dependencies from PyPI", say)
    say(f"Sending the app's files ({__version__})")
    _sh(remote, 'rm -rf "$d/app.new" && mkdir -p "$d/app.new" && tar -C "$d/app.new" -xzf - && rm -rf "$d/app" '
                '&& mv "$d/app.new" "$d/app" && p=$("$d/venv/bin/python" -c "import sysconfig; '
                'print(sysconfig.get_paths()[\'purelib\'])") && echo "$d/app" > "$p/isengard-desktop-app.pth"',
        input=_tar_of_app(), timeout=600)
    version = _sh(remote, 'exec "$d/venv/bin/python" -c "import isengard_desktop as m, torch; '
                          'print(m.__version__, torch.__version__)"', timeout=300).split()
    if not version or version[0] != __version__:
        raise BootstrapError(f"The app on {remote.name} reports version {version[:1]} after installing "
                             f"{__version__}; run isengard remotes bootstrap {remote.name} again.")
    record = {"version": __version__, "source_hash": wanted_hash, "deps_hash": deps_hash, "venv": True,
              "torch": version[1] if len(version) > 1 else None, "python": report.python,
              "installed_at": datetime.now(UTC).isoformat(timespec="seconds")}
    _sh(remote, 'cat > "$d/installed.json.tmp" && mv "$d/installed.json.tmp" "$d/installed.json"',
        input=json.dumps(record).encode())
    say(f"{remote.name} has Isengard Desktop {__version__} (torch {record['torch']})")
    log.info("remote_bootstrap_done", remote=remote.name, torch=record["torch"])
    return install


def ensure_engine(install: RemoteInstall, engine: str, progress: Progress | None = None) -> None:
    """Install engine ``engine`` (aitoolkit, comfyui) in the remote volume at this app's pins, unless it is there.
    Runs ``isengard engines install`` on the remote; its own progress stays in its install log there."""
    say = progress or (lambda _text: None)
    status = ssh.run(install.remote, [*install.isengard, "--json", "engines", "status"], timeout=120)
    rows = {row["name"]: row for row in json.loads(status.stdout or b"[]")}
    if rows.get(engine, {}).get("installed"):
        return
    say(f"Installing the {engine} engine on {install.remote.name} (several minutes)")
    ssh.run(install.remote, [*install.isengard, "engines", "install", engine])
