"""Finding a catalogue file the machine already has, and referencing it instead of copying it.

Three places are searched, cheapest first: the volume's own models/ folder (another engine's placement of the
same file), the Hugging Face cache (scanned with huggingface_hub; a blob of an LFS file is named by its sha256,
so a file is found by its hash even under another repository), and the extra model folders from Settings (an
existing ComfyUI ``models/`` folder: matched by exact size for big files, by relative path for small ones).
A file found is *referenced*: a hard link on the same file system, else a symlink. Twenty gigabytes are never
copied.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import structlog

from isengard_desktop.base.catalogue import CatalogueModel, HubFile, Placement

log = structlog.get_logger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MIN_SIZE_MATCH = 1 << 20  # below this a size says nothing; small files are matched by their path
MAX_WALK_DEPTH = 5  # an extra models folder: models/<folder>/<sub>/<file> is deep enough
MAX_WALK_FILES = 50_000


@dataclass(frozen=True)
class Candidate:
    path: Path  # the real file (an HF cache blob, not its snapshot symlink)
    source: str  # "volume" | "hf_cache" | "extra_dir"
    file: HubFile  # which catalogue file it holds (the placement's own or an alternative)
    sha256: str | None = None  # a hash known without reading it (the blob's name), else None
    in_place: bool = False  # the engine reads it where it is (ComfyUI reads the extra model folders)


def hf_hub_cache() -> Path:
    """huggingface_hub's cache folder, resolved now (its own constant is fixed when it is first imported)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def file_size(path: Path) -> int | None:
    """The size of the file ``path`` leads to (following links), or None when there is no such file."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size if _is_regular(st.st_mode) else None


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)


def size_ok(file: HubFile, size: int | None) -> bool:
    return size is not None and (file.size is None or file.size == size)


class ReuseIndex:
    """What the volume, the HF cache and the extra folders hold; built lazily, once per status/plan call."""

    def __init__(self, models_dir: Path, extra_dirs: Iterable[Path], models: list[CatalogueModel]) -> None:
        self.models_dir = models_dir
        self.extra_dirs = [Path(d) for d in extra_dirs]
        self.models = models
        self._hf: tuple[dict[str, Path], dict[tuple[str, str], Path]] | None = None
        self._extra: list[tuple[Path, dict[int, list[Path]], dict[str, list[tuple[str, Path]]]]] | None = None
        self._found: dict[str, list[Candidate]] = {}  # by destination: two engines share a layout

    # -- the volume -----------------------------------------------------------------------------------------
    def in_volume(self, file: HubFile, exclude: str) -> list[Candidate]:
        """Other catalogue placements in this volume that hold ``file`` (two engines, two folders)."""
        out: list[Candidate] = []
        seen: set[str] = {exclude}
        for model in self.models:
            for placement in model.all_placements():
                if placement.dest in seen or file.key not in {f.key for f in placement.accepts()}:
                    continue
                seen.add(placement.dest)
                path = self.models_dir / placement.dest
                if size_ok(file, file_size(path)):
                    out.append(Candidate(path.resolve(), "volume", file))
        return out

    # -- the Hugging Face cache -----------------------------------------------------------------------------
    def _hf_index(self) -> tuple[dict[str, Path], dict[tuple[str, str], Path]]:
        if self._hf is None:
            by_sha: dict[str, Path] = {}
            by_path: dict[tuple[str, str], Path] = {}
            cache = hf_hub_cache()
            if cache.is_dir():
                try:
                    from huggingface_hub import scan_cache_dir

                    info = scan_cache_dir(cache)
                except Exception as exc:  # a damaged cache must not stop the app from listing models
                    log.warning("hf_cache_scan_failed", cache=str(cache), error=str(exc)[:200])
                else:
                    for repo in info.repos:
                        if repo.repo_type != "model":
                            continue
                        for revision in repo.revisions:
                            for cached in revision.files:
                                blob = Path(cached.blob_path)
                                rel = Path(cached.file_path).relative_to(revision.snapshot_path).as_posix()
                                by_path.setdefault((repo.repo_id, rel), blob)
                                if _SHA256.match(blob.name):
                                    by_sha.setdefault(blob.name, blob)
            self._hf = (by_sha, by_path)
        return self._hf

    def in_hf_cache(self, file: HubFile) -> list[Candidate]:
        by_sha, by_path = self._hf_index()
        out = []
        if file.sha256 and file.sha256 in by_sha and size_ok(file, file_size(by_sha[file.sha256])):
            out.append(Candidate(by_sha[file.sha256], "hf_cache", file, sha256=file.sha256))
        blob = by_path.get((file.repo, file.path))
        if blob is not None and blob not in {c.path for c in out} and size_ok(file, file_size(blob)):
            named = blob.name if _SHA256.match(blob.name) else None
            if not (file.sha256 and named and named != file.sha256):  # another version of that path: not it
                out.append(Candidate(blob, "hf_cache", file, sha256=named))
        return out

    # -- extra model folders (Settings) ---------------------------------------------------------------------
    def _extra_index(self) -> list[tuple[Path, dict[int, list[Path]], dict[str, list[tuple[str, Path]]]]]:
        if self._extra is None:
            self._extra = [(root, *_walk(root)) for root in self.extra_dirs if root.is_dir()]
        return self._extra

    def in_extra_dirs(self, file: HubFile, placement: Placement) -> list[Candidate]:
        out = []
        for root, by_size, by_name in self._extra_index():
            found: list[Path] = []
            if file.sha256 and file.size is not None and file.size >= MIN_SIZE_MATCH:
                # Any name: the size finds it, the sha256 decides before it is used (FLUX.1-dev and FLUX.1-Krea-dev
                # shards have the same sizes and different weights).
                suffix = Path(file.path).suffix
                found = [p for p in by_size.get(file.size, []) if p.suffix == suffix]
            else:
                # Nothing to check it against: only the same place in a copy of the same layout will do (the
                # folder added may be models/ above FLUX.1-dev/, or FLUX.1-dev/ itself).
                found = [path for rel, path in by_name.get(PurePosixPath(placement.dest).name, [])
                         if any(name == placement.dest or name.endswith("/" + placement.dest)
                                for name in (rel, f"{root.name}/{rel}"))
                         and size_ok(file, file_size(path))]
            for path in found:
                rel_parts = path.relative_to(root).parts
                in_place = len(rel_parts) >= 2 and rel_parts[0] in placement.in_place_folders
                out.append(Candidate(path.resolve(), "extra_dir", file, in_place=in_place))
        out.sort(key=lambda c: not c.in_place)  # one the engine already reads first
        return out

    # -- all of them ------------------------------------------------------------------------------------------
    def find(self, placement: Placement) -> list[Candidate]:
        """Files elsewhere that can serve ``placement``: its own file first, then its alternatives."""
        if placement.dest not in self._found:
            self._found[placement.dest] = self._find(placement)
        return self._found[placement.dest]

    def _find(self, placement: Placement) -> list[Candidate]:
        out: list[Candidate] = []
        for file in placement.accepts():
            out += self.in_volume(file, placement.dest)
            out += self.in_hf_cache(file)
            out += self.in_extra_dirs(file, placement)
        unique: dict[Path, Candidate] = {}
        for candidate in out:
            unique.setdefault(candidate.path, candidate)
        return list(unique.values())


def _walk(root: Path) -> tuple[dict[int, list[Path]], dict[str, list[tuple[str, Path]]]]:
    """Files under an extra model folder: big ones by size, all by name with their relative path (hidden folders
    skipped)."""
    by_size: dict[int, list[Path]] = {}
    by_name: dict[str, list[tuple[str, Path]]] = {}
    count = 0
    base_depth = len(root.parts)
    for folder, dirs, names in os.walk(root, followlinks=False):
        depth = len(Path(folder).parts) - base_depth
        dirs[:] = [d for d in dirs if not d.startswith(".")] if depth < MAX_WALK_DEPTH else []
        for name in names:
            if name.startswith(".") or name.endswith((".partial", ".incomplete")):
                continue
            path = Path(folder) / name
            size = file_size(path)
            if size is None:
                continue
            by_name.setdefault(name, []).append((path.relative_to(root).as_posix(), path))
            if size >= MIN_SIZE_MATCH:
                by_size.setdefault(size, []).append(path)
            count += 1
            if count >= MAX_WALK_FILES:
                log.warning("extra_dir_walk_truncated", root=str(root), files=count)
                return by_size, by_name
    return by_size, by_name


def link_file(src: Path, dest: Path) -> str:
    """Make ``dest`` refer to ``src``: a hard link on the same file system, else a symlink. Never a copy.

    Returns "hardlink" or "symlink". An existing ``dest`` is replaced atomically (a link is made beside it and
    renamed over it), so a reader never sees a missing file.
    """
    real = src.resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and os.path.samefile(real, dest):
        return "hardlink" if not dest.is_symlink() else "symlink"
    temp = dest.with_name(f".{dest.name}.link-{os.getpid()}")
    temp.unlink(missing_ok=True)
    try:
        os.link(real, temp)
        kind = "hardlink"
    except OSError:
        # Another file system (EXDEV), or one without hard links: a symlink to the absolute path.
        os.symlink(real, temp)
        kind = "symlink"
    os.replace(temp, dest)
    log.info("model_file_linked", src=str(real), dest=str(dest), kind=kind)
    return kind
