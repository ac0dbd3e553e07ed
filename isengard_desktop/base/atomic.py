"""Atomic writes: a temporary file (or folder) beside the target, flushed to disk, then renamed over it.

A crash, a kill or a power cut leaves either the old state or the new one, never half of a file;
that is what lets an interrupted job resume from its newest checkpoint (SPEC §4). Used by the app
and by the built-in engines in their worker processes alike.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _write_atomically(target: Path, fill: Callable[[BinaryIO], None], durable: bool = True) -> None:
    """Write ``target`` through a temporary file beside it that ``fill`` writes: synced, then renamed over the
    target, so a reader or a crash sees the old file or the whole new one; the temporary file never stays.
    Not ``durable``: no syncing, for a file that is only shown for a moment (a reader still never sees half)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(target.parent)


def write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically, creating the parent folder if needed; ``durable=False`` skips the
    disk syncs (a preview replaced a moment later: a power cut may lose it, a reader never sees half of it)."""
    _write_atomically(path, lambda handle: handle.write(data), durable)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def copy_file(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` atomically; the source is only read."""
    def fill(handle: BinaryIO) -> None:
        with open(source, "rb") as src:
            shutil.copyfileobj(src, handle, length=1024 * 1024)

    _write_atomically(target, fill)


def move_file(source: Path, target: Path) -> None:
    """Move ``source`` to ``target``: a rename on the same disk, an atomic copy and delete across disks."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except OSError:
        copy_file(source, target)
        source.unlink()
    fsync_dir(target.parent)


def write_png(path: Path, image) -> None:
    """Save a PIL image as PNG atomically."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    write_bytes(path, buffer.getvalue())


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file under ``root`` (written by libraries that do not fsync themselves)."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        elif path.is_dir():
            fsync_dir(path)


def staging_dir(parent: Path, name: str) -> Path:
    """A fresh hidden folder next to where ``name`` will be published."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=parent))


def publish_dir(staging: Path, target: Path) -> None:
    """Flush ``staging`` and rename it to ``target`` (which must not exist)."""
    fsync_tree(staging)
    try:
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(target.parent)
