"""Stored photos without a database row, left by an import that was killed, collected at the next start.

An import stores each file (content-addressed, under ``images/``) before it writes the rows, in batches;
an import killed in between leaves files no row points at. Every import holds a shared lock on
``images/.import.lock`` and leaves a marker ``images/.import-<pid>-<n>.running`` that it removes when it
ends normally; a killed import, or one that raised, leaves it. At start, ``collect`` looks for markers (a glob:
nothing to do in the usual case); if there are some and no import holds the lock (an exclusive
non-blocking lock succeeds), the files without a row are moved to the trash with a manifest, as deletes
are, and half-written temporary files are removed. Imports starting meanwhile wait for the short sweep.

Where there is no ``fcntl`` (Windows) the lock is left out and only markers older than a day count.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import structlog

from isengard_desktop.base import atomic
from isengard_desktop.storage.repositories import ImageRepository
from isengard_desktop.storage.volume import Volume

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = structlog.get_logger(__name__)

LOCK_NAME = ".import.lock"
MARKER_GLOB = ".import-*.running"
STALE_WITHOUT_LOCK_S = 24 * 3600.0
_counter = itertools.count()


def _lock_fd(volume: Volume) -> int:
    volume.images_dir.mkdir(parents=True, exist_ok=True)
    return os.open(volume.images_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)


@contextmanager
def import_guard(volume: Volume) -> Iterator[None]:
    """Held for the whole of an import: the shared lock, and a marker that only a killed import leaves."""
    fd = _lock_fd(volume)
    marker = volume.images_dir / f".import-{os.getpid()}-{next(_counter)}.running"
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a sweep runs (milliseconds)
        marker.write_text(datetime.now(UTC).isoformat(), encoding="utf-8")
        yield
        # Only an import that ended normally removes its marker: one that raised (Ctrl+C, a database
        # error) may have stored files it never recorded, and the next start collects them.
        marker.unlink(missing_ok=True)
    finally:
        os.close(fd)  # releases the lock


def collect(volume: Volume, images: ImageRepository) -> Path | None:
    """Move stored files without a row to the trash if a killed import left them; returns the trash folder."""
    markers = list(volume.images_dir.glob(MARKER_GLOB))
    if not markers:
        return None
    fd = _lock_fd(volume)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return None  # an import is running now: its files are not leftovers; look again next start
        else:
            markers = [m for m in markers if time.time() - m.stat().st_mtime > STALE_WITHOUT_LOCK_S]
            if not markers:
                return None
        folder = _sweep(volume, images)
        for marker in markers:
            marker.unlink(missing_ok=True)
        return folder
    finally:
        os.close(fd)


def _sweep(volume: Volume, images: ImageRepository) -> Path | None:
    known = images.stored_paths()
    orphans: list[Path] = []
    for path in sorted(volume.images_dir.glob("*/*")):
        if not path.is_file():
            continue
        if path.name.startswith("."):
            path.unlink(missing_ok=True)  # a temporary file the killed import was writing
        elif path.relative_to(volume.root).as_posix() not in known:
            orphans.append(path)
    if not orphans:
        log.info("import_leftovers_none")
        return None
    folder = volume.new_trash_folder("unfinished-import")
    files = []
    for path in orphans:
        sha256 = path.stem
        files.append({"rel_path": path.relative_to(volume.root).as_posix(), "sha256": sha256,
                      "bytes": path.stat().st_size,
                      "stored_at": datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()})
        target = folder / "images" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)
        volume.thumbnail_path(sha256).unlink(missing_ok=True)
    manifest = {"label": "unfinished-import",
                "reason": "Photos an import stored but had not recorded when it was stopped (killed or crashed); "
                          "import them again from their originals, or from here.",
                "files": files}
    atomic.write_text(folder / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
    log.warning("import_leftovers_collected", files=len(files), trash=str(folder))
    return folder
