"""The volume's trash: deleted images are moved there (never unlinked) with a manifest to restore them by hand."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from isengard_desktop.base import atomic
from isengard_desktop.storage.repositories import ImageRow
from isengard_desktop.storage.volume import Volume


def move_to_trash(volume: Volume, label: str, rows: list[ImageRow], extra: dict[str, Any] | None = None) -> Path:
    """Move the files of ``rows`` into a new trash folder, with ``manifest.json`` describing them.

    A stored file shared with an image that is *not* being deleted (same bytes in another character)
    is copied instead of moved, so the remaining image keeps its file.
    """
    folder = volume.new_trash_folder(label)
    users: dict[str, int] = {}
    for row in rows:
        users[row.rel_path] = users.get(row.rel_path, 0) + 1
    manifest = {"label": label, "images": [asdict(row) for row in rows], **(extra or {})}
    atomic.write_text(folder / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
    done: set[str] = set()
    for row in rows:
        if row.rel_path in done:
            continue
        done.add(row.rel_path)
        source = volume.root / row.rel_path
        if not source.exists():
            continue
        target = folder / "images" / Path(row.rel_path).name
        # duplicate_count counts every image with these bytes; more than we delete means another keeps it.
        if row.duplicate_count > users[row.rel_path]:
            atomic.copy_file(source, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
            volume.thumbnail_path(row.sha256).unlink(missing_ok=True)
    return folder

