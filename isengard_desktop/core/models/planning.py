"""Planning a download: which files to fetch and which to link, so one file is never downloaded twice.

The plan is the flat spec a job of kind "download" runs (core/models/download_job.py): ``files`` to fetch and
``links`` to make after them. Before anything is fetched, each placement the engines need is looked for: in
place already (nothing to do), elsewhere on the machine (the volume, the HF cache, an extra model folder: a
link), as an alternative another engine's download of the same job brings (ComfyUI's VAE from FLUX.1-dev's
diffusers VAE: a link to that file once it is there), or else it is fetched, once, and linked to its other places.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import structlog

from isengard_desktop.base import catalogue
from isengard_desktop.base.catalogue import HubFile, Placement
from isengard_desktop.base.errors import ValidationError
from isengard_desktop.core.models.inventory import _ledger_sha, file_size, known_mismatch, partial_path
from isengard_desktop.core.models.reuse import Candidate, ReuseIndex
from isengard_desktop.storage.names import safe_filename
from isengard_desktop.storage.volume import Volume

log = structlog.get_logger(__name__)

ENGINE_TITLES = {"diffusers": "the built-in engine", "aitoolkit": "AI-Toolkit", "comfyui": "ComfyUI"}
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class DownloadPlan:
    spec: dict[str, Any]
    download_bytes: int  # still to fetch (bytes already in partial files are not counted)
    reused: list[dict[str, Any]] = field(default_factory=list)  # {"dest", "src", "source", "checked"}
    free_bytes: int = 0
    enough_space: bool = True
    unknown_sizes: int = 0  # files whose size the catalogue does not know (small ones)

    @property
    def nothing_to_do(self) -> bool:
        return not self.spec["files"] and not self.spec["links"]

    def to_json(self) -> dict[str, Any]:
        return {"spec": self.spec, "download_bytes": self.download_bytes, "reused": self.reused,
                "free_bytes": self.free_bytes, "enough_space": self.enough_space,
                "unknown_sizes": self.unknown_sizes, "nothing_to_do": self.nothing_to_do}


def _file_entry(file: HubFile, dest: Path) -> dict[str, Any]:
    return {"repo": file.repo, "path": file.path, "revision": file.revision, "dest": str(dest),
            "size": file.size, "sha256": file.sha256, "gated": file.gated}


def _trusted(models_dir: Path, candidate: Candidate, verify_reuse: bool,
             on_progress: Callable[[int, int, str], None] | None,
             should_stop: Callable[[], bool] | None) -> bool | None:
    """Whether a file found elsewhere is the catalogue's file: True, False, or None when not checked yet."""
    expected = candidate.file.sha256
    recorded = _ledger_sha(models_dir, candidate.path)
    if recorded is not None:
        return expected is None or recorded == expected
    if candidate.sha256 is not None:  # an HF cache blob is named by the sha256 the hub published
        return expected is None or candidate.sha256 == expected
    if expected is None:
        # Nothing to hash against: such files are only found at the same place of the same layout (reuse.py).
        return True
    if not verify_reuse:
        return None
    from isengard_desktop.core.models import ledger
    from isengard_desktop.core.models.hub import sha256_file

    size = file_size(candidate.path) or 0
    digest = sha256_file(candidate.path, on_progress=(lambda d, t: on_progress(d, t, str(candidate.path)))
                         if on_progress else None, should_stop=should_stop)
    if digest != expected:
        log.warning("reuse_refused", path=str(candidate.path), expected=expected, actual=digest, size=size)
        return False
    ledger.record_verified(models_dir, candidate.path, digest)
    return True


def plan_download(volume: Volume, extra_dirs: Iterable[Path], model_id: str, engines: list[str],
                  variant: str | None = None, *, verify_reuse: bool = True,
                  on_progress: Callable[[int, int, str], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> DownloadPlan:
    """What to fetch and what to link for ``model_id`` to be complete for ``engines``.

    ``verify_reuse`` hashes a file found elsewhere that no ledger entry or cache blob name vouches for (once:
    the result goes to the ledger); without it such a file is planned as a link marked ``checked: False``.
    """
    model = catalogue.get(model_id)
    models_dir = volume.models_dir
    index = ReuseIndex(models_dir, extra_dirs, catalogue.load())
    wanted: dict[str, Placement] = {}
    for engine in engines:
        chosen = variant if variant and variant in model.variants(engine) else None
        for placement in model.placements(engine, chosen):
            wanted.setdefault(placement.dest, placement)

    files: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    reused: list[dict[str, Any]] = []
    pending: list[Placement] = []
    for placement in wanted.values():
        dest = models_dir / placement.dest
        if any(file_size(dest) is not None and (f.size is None or f.size == file_size(dest))
               for f in placement.accepts()) and not known_mismatch(models_dir, dest, placement):
            continue  # in place already
        found = [c for c in index.find(placement) if not known_mismatch(models_dir, c.path, placement)]
        if any(c.in_place for c in found):
            continue  # ComfyUI reads it from the extra model folder where it is
        for candidate in found:
            checked = _trusted(models_dir, candidate, verify_reuse, on_progress, should_stop)
            if checked is False:
                continue
            links.append({"src": str(candidate.path), "dest": str(dest)})
            reused.append({"dest": str(dest), "src": str(candidate.path), "source": candidate.source,
                           "file": candidate.file.id, "size": candidate.file.size, "checked": checked is True})
            break
        else:
            pending.append(placement)

    # Files this job fetches, by hub identity -> where the first copy lands. Placements without alternatives go
    # first so an alternative another engine brings anyway is linked, not fetched again.
    fetched: dict[tuple[str, str, str], Path] = {}
    download_bytes = unknown = 0
    for placement in sorted(pending, key=lambda p: bool(p.alternatives)):
        dest = models_dir / placement.dest
        alternative = next((fetched[a.key] for a in placement.alternatives if a.key in fetched), None)
        source = fetched.get(placement.file.key) or alternative
        if source is not None:
            links.append({"src": str(source), "dest": str(dest)})
            continue
        fetched[placement.file.key] = dest
        files.append(_file_entry(placement.file, dest))
        if placement.file.size is None:
            unknown += 1
        else:
            download_bytes += max(placement.file.size - (file_size(partial_path(dest)) or 0), 0)

    titles = ", ".join(ENGINE_TITLES.get(e, e) for e in engines)
    spec = {"title": f"{model.title} for {titles}", "model": model.id, "engines": list(engines),
            "variant": variant, "models_dir": str(models_dir), "files": files, "links": links}
    free = _free_bytes(models_dir)
    from isengard_desktop.core.models.hub import RESERVE_BYTES  # the margin the download job keeps free too

    enough = download_bytes == 0 or free >= download_bytes + RESERVE_BYTES
    plan = DownloadPlan(spec, download_bytes, reused, free, enough, unknown)
    log.info("download_planned", model=model.id, engines=engines, files=len(files), links=len(links),
             download_bytes=download_bytes, reused=len(reused))
    return plan


def _free_bytes(folder: Path) -> int:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def safe_subfolder(models_dir: Path, folder: str) -> Path:
    """``folder`` (from a person) as a folder inside models/: each part sanitised, never outside it."""
    parts = [p for p in PurePosixPath(folder.replace("\\", "/")).parts if p not in ("", ".", "/")]
    if not parts or ".." in parts or folder.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", folder):
        raise ValidationError(f"The folder {folder!r} is not a folder inside models/; give a relative name such as "
                              "loras or checkpoints.")
    target = models_dir.joinpath(*(safe_filename(p) for p in parts))
    root = models_dir.resolve()
    if root not in target.resolve().parents and target.resolve() != root:
        raise ValidationError(f"The folder {folder!r} leads outside models/; give a relative name such as loras.")
    return target


def plan_get(volume: Volume, repo: str, path: str, folder: str, revision: str = "main") -> DownloadPlan:
    """One file of any hub repository into a folder under models/ (a LoRA or a checkpoint someone shared)."""
    if not _REPO.match(repo):
        raise ValidationError(f"{repo!r} is not a hub repository name; write it as owner/name.")
    clean = PurePosixPath(path.replace("\\", "/"))
    if clean.is_absolute() or ".." in clean.parts or not clean.name:
        raise ValidationError(f"{path!r} is not a file path inside the repository {repo}.")
    dest = safe_subfolder(volume.models_dir, folder) / safe_filename(clean.name, max_length=200)
    if dest.exists() and _ledger_sha(volume.models_dir, dest) is None:
        # Not one we downloaded and checked: it may be the person's own file of the same name.
        raise ValidationError(f"{dest} already exists and is not a file this app downloaded; move it away or choose "
                              "another folder with --to.")
    file = HubFile(id=clean.name, repo=repo, path=clean.as_posix(), revision=revision, size=None, sha256=None,
                   gated=False)
    spec = {"title": f"{clean.name} from {repo}", "model": None, "models_dir": str(volume.models_dir),
            "files": [_file_entry(file, dest)], "links": []}
    free = _free_bytes(volume.models_dir)
    return DownloadPlan(spec, 0, [], free, True, 1)
