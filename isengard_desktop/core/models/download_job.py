"""The worker side of a job of kind "download" (engine "hub"): fetch, verify and place the files of a plan.

The spec is the flat dict the planner makes (see MODELS_CONTRACT): ``files`` to fetch from the hub into their
``dest``, ``links`` to make from files already verified. In order: read the token from the keyring (this process
reads it itself: it never travels on a command line, in an environment or in the job file), skip files already
verified at their destination, ask the hub once per gated repository whether the token has access, check the free
disk for everything that remains before writing a byte, download file by file (each resumes from its partial
file), record each verified file in the ledger, then make the links (hard link, else symlink).

Events: ``progress`` in bytes with speed and ETA (at most ~4 a second), ``artifact`` (kind ``model_file``) per
file in place, ``error`` with the one-sentence explanation.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from isengard_desktop.base.errors import IsengardError
from isengard_desktop.core.models import hub, ledger

log = structlog.get_logger(__name__)

Emit = Callable[[dict[str, Any]], None]
EMIT_INTERVAL_S = 0.25


class _Progress:
    """Turns byte counts into throttled progress events with a smoothed speed and an ETA."""

    def __init__(self, emit: Emit, total: int) -> None:
        self.emit, self.total = emit, total
        self.base = 0  # bytes of the files already finished in this job
        self.speed = 0.0
        self._last_t = time.monotonic()
        self._last_done: int | None = None
        self._last_emit = 0.0

    def update(self, done_in_file: int, file: str, phase: str = "download", total: int | None = None,
               force: bool = False) -> None:
        now = time.monotonic()
        if phase != "download":
            self._last_done = None  # bytes hashed on disk are not network speed: measure afresh afterwards
        if not force and now - self._last_emit < EMIT_INTERVAL_S:
            return
        done = self.base + done_in_file if total is None else done_in_file
        if phase == "download" and self._last_done is not None and now > self._last_t:
            rate = max(done - self._last_done, 0) / (now - self._last_t)
            # Smoothed so the ETA does not jump with every burst of the network.
            self.speed = rate if self.speed == 0 else 0.7 * self.speed + 0.3 * rate
        self._last_t, self._last_done, self._last_emit = now, done if phase == "download" else None, now
        whole = self.total if total is None else total
        eta = (whole - done) / self.speed if phase == "download" and self.speed > 0 else None
        self.emit({"event": "progress", "step": done, "total": whole, "unit": "bytes", "speed": round(self.speed),
                   "eta": None if eta is None else round(eta, 1), "file": file, "phase": phase})


def _models_dir(spec: dict[str, Any], models_dir: Path | None) -> Path:
    if models_dir is not None:
        return Path(models_dir)
    if spec.get("models_dir"):
        return Path(spec["models_dir"])
    # Every destination sits under the volume's models/ folder: their common folder is a safe key for the ledger.
    dests = [str(Path(f["dest"]).parent) for f in spec.get("files", [])] or [str(Path.cwd())]
    return Path(os.path.commonpath(dests))


def _already_there(entry: dict[str, Any], dest: Path, models_dir: Path, progress: _Progress,
                   should_stop: Callable[[], bool]) -> bool:
    """Whether ``dest`` already holds this file (recorded in the ledger, or hashed now and recorded)."""
    if not dest.is_file():
        return False
    expected = entry.get("sha256")
    known = ledger.verified_sha256(models_dir, dest)
    if known is not None and (expected is None or known == expected.lower()):
        return True
    if expected is None or (entry.get("size") is not None and dest.stat().st_size != entry["size"]):
        return False
    # A file put there by hand (or by an older run): hashing it costs far less than fetching it again.
    size = dest.stat().st_size
    sha = hub.sha256_file(dest, lambda done, _t: progress.update(done, str(dest), "verify", size), should_stop)
    if sha != expected.lower():
        return False
    ledger.record_verified(models_dir, dest, sha)
    return True


def run(spec: dict[str, Any], emit: Emit, should_stop: Callable[[], bool], models_dir: Path | None = None) -> str:
    """Run a download job to its end: "succeeded", "cancelled" or "failed" (after an ``error`` event)."""
    try:
        return _run(spec, emit, should_stop, _models_dir(spec, models_dir))
    except hub.Stopped:
        return "cancelled"
    except IsengardError as exc:
        log.warning("download_job_failed", error=str(exc), type=type(exc).__name__)
        emit({"event": "error", "message": str(exc), "type": type(exc).__name__,
              **({"reason": exc.reason, "repo": exc.repo, "fix_url": exc.fix_url}
                 if isinstance(exc, hub.HubAccessError) else {})})
        return "failed"


def _run(spec: dict[str, Any], emit: Emit, should_stop: Callable[[], bool], models_dir: Path) -> str:
    from isengard_desktop.core.secrets import get_hf_token

    token = get_hf_token()
    log.info("download_job_started", files=len(spec.get("files", [])), links=len(spec.get("links", [])),
             has_token=token is not None)
    progress = _Progress(emit, 0)
    todo = []
    for entry in spec.get("files", []):
        dest = Path(entry["dest"])
        if _already_there(entry, dest, models_dir, progress, should_stop):
            emit({"event": "artifact", "kind": "model_file", "path": str(dest), "reused": True})
            continue
        todo.append(entry)

    # One access request per gated repository, before anything is fetched.
    for repo in dict.fromkeys(e["repo"] for e in todo if e.get("gated")):
        hub.check_access(repo, token, next(e.get("revision") or "main" for e in todo if e["repo"] == repo))

    plan = []
    for entry in todo:
        remote = hub.remote_file(entry["repo"], entry["path"], token, entry.get("revision") or "main")
        _check_published(entry, remote)
        plan.append((entry, remote, Path(entry["dest"])))

    _check_space(plan)
    progress.total = sum(int(e.get("size") or r.size) for e, r, _ in plan)
    for entry, remote, dest in plan:
        size = int(entry.get("size") or remote.size)
        have = hub.partial_path(dest).stat().st_size if hub.partial_path(dest).exists() else 0
        if have:
            emit({"event": "log", "level": "info", "message": f"Resuming {remote.path} from {have} bytes on disk."})
        state = hub.download(
            remote, dest, token, expected_size=size, expected_sha256=entry.get("sha256"),
            on_progress=lambda done, _t, name=str(dest): progress.update(done, name),
            should_stop=should_stop,
            on_verify=lambda done, _t, name=str(dest), whole=size: progress.update(done, name, "verify", whole))
        if state != "succeeded":
            return state
        sha = (entry.get("sha256") or remote.sha256 or hub.sha256_file(dest)).lower()
        ledger.record_verified(models_dir, dest, sha)
        progress.base += size
        progress.update(0, str(dest), force=True)
        emit({"event": "artifact", "kind": "model_file", "path": str(dest), "sha256": sha})

    for link in spec.get("links", []):
        if should_stop():
            return "cancelled"
        how = place_link(Path(link["src"]), Path(link["dest"]), models_dir)
        emit({"event": "artifact", "kind": "model_file", "path": link["dest"], "linked_from": link["src"],
              "link": how})
    log.info("download_job_finished", files=len(plan), links=len(spec.get("links", [])))
    return "succeeded"


def _check_published(entry: dict[str, Any], remote: hub.RemoteFile) -> None:
    """Refuse before downloading when the hub no longer publishes the file the plan expects."""
    expected = (entry.get("sha256") or "").lower()
    if expected and remote.sha256 and remote.sha256 != expected:
        raise hub.DownloadVerificationError(
            f"The hub now publishes {remote.path} of {remote.repo} with sha256 {remote.sha256[:12]}…, not the "
            f"{expected[:12]}… this download expects, so nothing was downloaded; update Isengard Desktop's model "
            "catalogue and try again.")
    if entry.get("size") is not None and int(entry["size"]) != remote.size:
        raise hub.DownloadVerificationError(
            f"The hub now publishes {remote.path} of {remote.repo} with {remote.size} bytes, not the {entry['size']} "
            "this download expects, so nothing was downloaded; update the model catalogue and try again.")


def _check_space(plan: list[tuple[dict[str, Any], hub.RemoteFile, Path]]) -> None:
    """Free space for everything that remains, per file system, before a single byte is written."""
    needed: dict[int, tuple[Path, int]] = {}
    for entry, remote, dest in plan:
        part = hub.partial_path(dest)
        remaining = int(entry.get("size") or remote.size) - (part.stat().st_size if part.exists() else 0)
        folder = hub._existing(dest.parent)
        device = folder.stat().st_dev
        where, total = needed.get(device, (folder, 0))
        needed[device] = (where, total + max(remaining, 0))
    for folder, total in needed.values():
        hub.check_free_space(folder, total)


def place_link(src: Path, dest: Path, models_dir: Path) -> str:
    """Put ``src`` at ``dest`` without copying: a hard link on the same file system, else a symlink."""
    if dest.exists() and src.exists() and os.path.samefile(src, dest):
        return "existing"
    if not src.is_file():
        raise IsengardError(f"{src} is no longer there to be linked to {dest}; run the download again.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
        how = "hardlink"
    except OSError:  # another file system (or one without hard links): a symlink reads the same
        os.symlink(src.absolute(), tmp)
        how = "symlink"
    os.replace(tmp, dest)  # atomic: a reader sees the old file or the link, never nothing
    sha = ledger.verified_sha256(models_dir, src)
    if sha is not None:
        ledger.record_verified(models_dir, dest, sha)
    return how
