"""Removing a base model's files: the ones no other engine or catalogue model reads, links first.

Files another engine or another catalogue model reads are kept, and so are the targets of their symlinks (ComfyUI's
VAE may be a symlink to FLUX.1-dev's diffusers VAE). A hard-linked file frees its bytes only when its last link goes.
Files outside the volume (the HF cache, extra model folders) are never touched.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import structlog

from isengard_desktop.base import catalogue
from isengard_desktop.core.models.inventory import partial_path
from isengard_desktop.storage.volume import Volume

log = structlog.get_logger(__name__)


def remove(volume: Volume, model_id: str, engines: Iterable[str] | None = None) -> int:
    """Delete the model's files for ``engines`` (default: all); returns the bytes freed.

    Files another engine or another catalogue model reads are kept (so are the targets of their symlinks);
    a hard-linked file frees its bytes only when its last link goes.
    """
    model = catalogue.get(model_id)
    chosen = set(engines or model.engines())
    models_dir = volume.models_dir
    doomed: set[str] = set()
    kept: set[str] = set()
    for other in catalogue.load():
        for engine in other.engines():
            dests = {p.dest for p in other.layout(engine).placements}
            (doomed if other.id == model.id and engine in chosen else kept).update(dests)
    doomed -= kept
    kept_targets = set()
    for dest in kept:
        path = models_dir / dest
        if path.is_symlink():
            kept_targets.add(path.resolve())
    freed = 0
    for dest in sorted(doomed):
        path = models_dir / dest
        for target in (path, partial_path(path), path.with_name(path.name + ".partial.json")):  # + resume sidecar
            if target.is_symlink():
                target.unlink()
                continue
            if not target.is_file():
                continue
            if target.resolve() in kept_targets:
                log.info("model_file_kept", path=str(target), reason="another engine links to it")
                continue
            st = target.stat()
            target.unlink()
            if st.st_nlink == 1:
                freed += st.st_size
    _prune_empty(models_dir, doomed)
    log.info("model_removed", model=model.id, engines=sorted(chosen), freed_bytes=freed)
    return freed


def _prune_empty(models_dir: Path, dests: set[str]) -> None:
    """Remove folders the model's files leave empty (FLUX.1-dev/transformer/...), never models/ itself."""
    folders = {(models_dir / d).parent for d in dests}
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        current = folder
        while current != models_dir and models_dir in current.parents:
            try:
                os.rmdir(current)
            except OSError:
                break
            current = current.parent
