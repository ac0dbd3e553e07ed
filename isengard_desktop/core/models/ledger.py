"""Which model files were verified (sha256 checked), so a 20 GB file is hashed once, not at every look.

Stored in ``models/.verified.json``: ``{"<path relative to models/ or absolute>": {"sha256", "size", "mtime_ns"}}``.
An entry counts only while the file keeps the size and modification time it had when it was hashed: a file
replaced or rewritten since is unknown again. Writes are atomic (a crash leaves the old ledger or the new one).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from isengard_desktop.base import atomic

LEDGER_FILE = ".verified.json"
LOCK_FILE = ".verified.lock"
_lock = threading.Lock()  # one writer at a time within a process


@contextmanager
def _exclusive(models_dir: Path) -> Iterator[None]:
    """One read-modify-write at a time across processes too (the download worker and the window's Verify)."""
    with _lock:
        try:
            import fcntl
        except ImportError:  # Windows: the in-process lock only
            yield
            return
        models_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(models_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def _ledger_path(models_dir: Path) -> Path:
    return models_dir / LEDGER_FILE


def _key(models_dir: Path, path: Path) -> str:
    path = Path(path).absolute()
    try:
        return path.relative_to(Path(models_dir).absolute()).as_posix()
    except ValueError:
        return str(path)  # a file outside the volume (an extra model folder)


def _read(models_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads(_ledger_path(models_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_verified(models_dir: Path, path: Path, sha256: str) -> None:
    """Remember that ``path`` (as it is now on disk) has this sha256."""
    stat = Path(path).stat()
    with _exclusive(Path(models_dir)):
        data = _read(models_dir)
        data[_key(models_dir, path)] = {"sha256": sha256.lower(), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        atomic.write_text(_ledger_path(models_dir), json.dumps(data, indent=1, sort_keys=True))


def verified_sha256(models_dir: Path, path: Path) -> str | None:
    """The sha256 recorded for ``path``, or None if unknown or the file changed since it was recorded."""
    entry = _read(models_dir).get(_key(models_dir, path))
    if not isinstance(entry, dict):
        return None
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    if stat.st_size != entry.get("size") or stat.st_mtime_ns != entry.get("mtime_ns"):
        return None
    return entry.get("sha256")
