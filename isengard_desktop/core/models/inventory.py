"""What the volume holds of each catalogue model, per engine: missing, partial, present or verified, and where.

``status`` is cheap (stat calls, one HF cache scan, no hashing); ``verify`` hashes what is in place and records
the result in the ledger (models/.verified.json), so a file is hashed again only after it changed. Planning a
download lives in ``planning`` and removing a model in ``removal`` (both re-exported here, as the contract names
them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from isengard_desktop.base import catalogue
from isengard_desktop.base.catalogue import CatalogueModel, HubFile, Placement
from isengard_desktop.core.models.reuse import ReuseIndex, file_size, size_ok
from isengard_desktop.storage.volume import Volume

log = structlog.get_logger(__name__)

STATES = ("missing", "partial", "present", "verified")


@dataclass
class FileStatus:
    placement: Placement
    state: str  # "missing" | "partial" | "present" | "verified"
    where: Path | None
    partial_bytes: int = 0
    source: str = ""  # "volume" | "hf_cache" | "extra_dir" | ""
    file: HubFile | None = None  # which accepted file is there (the placement's own or an alternative)
    in_place: bool = False  # the engine reads it where it is: at its destination, or in a folder ComfyUI reads
    checkable: bool = True  # a sha256 is known to check it against (not for small non-LFS files)
    problem: str = ""  # set by verify: the file is there but its sha256 is not the published one

    def to_json(self) -> dict[str, Any]:
        file = self.placement.file
        return {"id": file.id, "repo": file.repo, "path": file.path, "dest": self.placement.dest,
                "size": file.size, "sha256": file.sha256, "state": self.state,
                "where": str(self.where) if self.where else None, "source": self.source,
                "partial_bytes": self.partial_bytes, "holds": self.file.id if self.file else None,
                "in_place": self.in_place, "checkable": self.checkable, "problem": self.problem or None}


@dataclass
class EngineModelStatus:
    engine: str
    state: str  # all verified -> verified; all there -> present; nothing -> missing; otherwise partial
    files: list[FileStatus]
    missing_bytes: int
    total_bytes: int
    variant: str | None = None
    ready: bool = False  # every file is where the engine reads it

    def to_json(self) -> dict[str, Any]:
        return {"engine": self.engine, "state": self.state, "ready": self.ready, "variant": self.variant,
                "missing_bytes": self.missing_bytes, "total_bytes": self.total_bytes,
                "files": [f.to_json() for f in self.files]}


@dataclass
class ModelStatus:
    model: CatalogueModel
    engines: dict[str, EngineModelStatus] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        m = self.model
        return {"id": m.id, "title": m.title, "family": m.family, "repo": m.repo, "gated": m.gated,
                "licence_url": m.licence_url, "description": m.description,
                "engines": {name: status.to_json() for name, status in self.engines.items()}}


def partial_path(dest: Path) -> Path:
    try:
        from isengard_desktop.core.models.hub import partial_path as hub_partial
    except ImportError:  # the downloader's naming, kept in one place once it is there
        return dest.with_name(dest.name + ".partial")
    return hub_partial(dest)


def _ledger_sha(models_dir: Path, path: Path) -> str | None:
    from isengard_desktop.core.models import ledger

    try:
        return ledger.verified_sha256(models_dir, path)
    except (ValueError, OSError):
        return None


def expected_sha256(placement: Placement) -> set[str]:
    return {f.sha256 for f in placement.accepts() if f.sha256}


def _held(placement: Placement, size: int | None) -> HubFile | None:
    """Which accepted file a file of this size is (the first whose size matches)."""
    for file in placement.accepts():
        if size_ok(file, size):
            return file
    return None


def is_verified(models_dir: Path, path: Path, file: HubFile) -> bool:
    recorded = _ledger_sha(models_dir, path)
    if recorded is None:
        return False
    return file.sha256 is None or recorded == file.sha256


def known_mismatch(models_dir: Path, path: Path, placement: Placement) -> bool:
    """Whether ``path`` was hashed (as it is now) and is none of the files the placement accepts."""
    expected = expected_sha256(placement)
    recorded = _ledger_sha(models_dir, path) if expected else None
    return recorded is not None and recorded not in expected


def _mismatch_text(path: Path, placement: Placement) -> str:
    file = placement.file
    return (f"{path} has the size of {file.repo}/{file.path} but not its sha256; download it again (the download "
            "replaces it).")


def file_status(models_dir: Path, placement: Placement, index: ReuseIndex) -> FileStatus:
    dest = models_dir / placement.dest
    checkable = bool(placement.file.sha256)
    held = _held(placement, file_size(dest))
    if held is not None and known_mismatch(models_dir, dest, placement):
        # Hashed before and found to be another file: it counts as missing (a download replaces it).
        return FileStatus(placement, "missing", dest, 0, "volume", None, False, checkable,
                          _mismatch_text(dest, placement))
    if held is not None:
        verified = is_verified(models_dir, dest, held)
        return FileStatus(placement, "verified" if verified else "present", dest, 0, "volume", held, True,
                          bool(held.sha256) or verified)
    found = [c for c in index.find(placement) if not known_mismatch(models_dir, c.path, placement)]
    if found:
        best = found[0]
        verified = is_verified(models_dir, best.path, best.file)
        return FileStatus(placement, "verified" if verified else "present", best.path, 0, best.source, best.file,
                          best.in_place, bool(best.file.sha256) or verified)
    partial = partial_path(dest)
    size = file_size(partial)
    if size is not None:
        return FileStatus(placement, "partial", partial, size, "volume", None, False, checkable)
    return FileStatus(placement, "missing", None, 0, "", None, False, checkable)


def engine_state(files: list[FileStatus]) -> str:
    there = [f for f in files if f.state in ("present", "verified")]
    if len(there) == len(files):
        # A small file with no published sha256 cannot be verified: it does not hold the engine back.
        return "verified" if all(f.state == "verified" or not f.checkable for f in files) else "present"
    if not there and not any(f.state == "partial" for f in files):
        return "missing"
    return "partial"


def _missing_bytes(files: list[FileStatus]) -> int:
    return sum(max((f.placement.file.size or 0) - f.partial_bytes, 0)
               for f in files if f.state in ("missing", "partial"))


def _engine_status(models_dir: Path, model: CatalogueModel, engine: str, variant: str | None,
                   index: ReuseIndex) -> EngineModelStatus:
    files = [file_status(models_dir, p, index) for p in model.placements(engine, variant)]
    total = sum(f.placement.file.size or 0 for f in files)
    missing = _missing_bytes(files)
    state = engine_state(files)
    # Ready: every file where the engine reads it (at its destination, or in a folder ComfyUI reads); a file
    # elsewhere in the volume or in the HF cache still needs its link.
    ready = state in ("present", "verified") and all(f.in_place for f in files)
    chosen = variant or (model.variants(engine) or [None])[0]
    return EngineModelStatus(engine, state, files, missing, total, chosen, ready)


def _best_variant(models_dir: Path, model: CatalogueModel, engine: str, index: ReuseIndex) -> EngineModelStatus:
    """For an engine with variants (ComfyUI's T5 in fp16 or fp8), the variant that is furthest along."""
    options = [_engine_status(models_dir, model, engine, v, index) for v in (model.variants(engine) or [None])]
    rank = {"verified": 4, "present": 3, "partial": 2, "missing": 1}
    return max(options, key=lambda s: (s.ready, rank[s.state], -s.missing_bytes))


def _models(model_id: str | None) -> list[CatalogueModel]:
    return [catalogue.get(model_id)] if model_id else catalogue.load()


def status(volume: Volume, extra_dirs: Iterable[Path], model_id: str | None = None,
           variant: str | None = None) -> list[ModelStatus]:
    """Every catalogue model (or one) per engine. Cheap: sizes, the ledger and one HF cache scan, no hashing."""
    index = ReuseIndex(volume.models_dir, extra_dirs, catalogue.load())
    out = []
    for model in _models(model_id):
        result = ModelStatus(model)
        for engine in model.engines():
            if variant and variant in model.variants(engine):
                result.engines[engine] = _engine_status(volume.models_dir, model, engine, variant, index)
            else:
                result.engines[engine] = _best_variant(volume.models_dir, model, engine, index)
        out.append(result)
    return out


def production_model_ready(volume: Volume, extra_dirs: Iterable[Path]) -> bool:
    """Whether some base model of the catalogue is complete, where its engine reads it, for at least one engine (the
    captioning model does not count)."""
    return any(engine.ready for model in status(volume, list(extra_dirs)) if model.model.role == "base"
               for engine in model.engines.values())


Progress = Callable[[int, int, str], None]


def verify(volume: Volume, extra_dirs: Iterable[Path], model_id: str | None = None,
           on_progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
           force: bool = False) -> list[ModelStatus]:
    """Hash every file in place against the catalogue's sha256 and record the good ones in the ledger.

    A file already verified and unchanged since is not hashed again (unless ``force``). A mismatch is not
    deleted (it may be the person's own file): its FileStatus carries ``problem`` naming the file.
    """
    from isengard_desktop.core.models import ledger
    from isengard_desktop.core.models.hub import sha256_file

    extra = list(extra_dirs)
    statuses = status(volume, extra, model_id)
    todo: dict[Path, list[FileStatus]] = {}
    for model in statuses:
        for engine in model.engines.values():
            for item in engine.files:
                if item.where is None or item.state not in ("present", "verified") or not item.checkable:
                    continue
                if item.source != "volume" and not item.in_place:
                    continue  # found elsewhere, not used yet: a download plan checks it before linking it
                if item.state == "verified" and not force:
                    continue
                todo.setdefault(item.where, []).append(item)
    total = sum(file_size(p) or 0 for p in todo)
    done = 0
    hashed: dict[tuple[int, int], str] = {}  # (device, inode): hard links are hashed once
    for path, items in todo.items():
        try:
            st = path.stat()
        except OSError:
            continue  # gone since the status was read
        key = (st.st_dev, st.st_ino)
        if key not in hashed:
            base = done

            def progress(step: int, _total: int, base: int = base, path: Path = path) -> None:
                if on_progress:
                    on_progress(base + step, total, str(path))

            hashed[key] = sha256_file(path, on_progress=progress, should_stop=should_stop)
        done += st.st_size
        digest = hashed[key]
        held = items[0].file or items[0].placement.file
        expected = held.sha256 or _ledger_sha(volume.models_dir, path)
        for item in items:
            if expected is None:
                continue  # nothing published to compare with: it stays "present"
            if digest == expected:
                ledger.record_verified(volume.models_dir, path, digest)
                item.state = "verified"
            else:
                # Recorded too: the cheap status then knows this file is not the catalogue's, without hashing.
                ledger.record_verified(volume.models_dir, path, digest)
                inside = volume.models_dir in path.parents
                item.problem = (f"{path} is not {held.repo}/{held.path}: its sha256 is {digest[:12]}…, the hub "
                                f"publishes {expected[:12]}…; "
                                + ("download it again (the download replaces it)." if inside else
                                   "it is not used as that file."))
                item.state, item.in_place = "missing", False
                log.warning("model_file_mismatch", path=str(path), expected=expected, actual=digest)
    for model in statuses:
        for engine in model.engines.values():
            engine.state = engine_state(engine.files)
            engine.missing_bytes = _missing_bytes(engine.files)
            if any(f.problem for f in engine.files):
                engine.ready = False
    return statuses
