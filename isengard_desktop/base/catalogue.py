"""The base-model catalogue: which hub files each engine reads and where they go in the volume's models/ folder.

The catalogue is data (resources/models/catalogue.json, schema-versioned), so more base models are added without
code. A model lists its hub files once (id -> repo, path, size and sha256 the hub publishes), then *layouts*: the
placements (file id -> destination under models/) one kind of engine reads. Engines map to layouts
(diffusers and aitoolkit both read the diffusers layout in models/FLUX.1-dev/). A placement may name
*alternatives*: other files the engine reads just as well at that destination (ComfyUI's VAELoader converts
FLUX.1-dev's diffusers VAE), so a file already present for another engine is linked instead of downloaded.

``ISENGARD_MODEL_CATALOGUE`` points at another catalogue file: for tests and for maintainers trying one out.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from isengard_desktop.base.errors import IsengardError, NotFoundError
from isengard_desktop.base.resources import resource_path

SCHEMA_VERSION = 1
ENV_CATALOGUE = "ISENGARD_MODEL_CATALOGUE"


class CatalogueError(IsengardError):
    """The catalogue file cannot be read (broken JSON, a newer schema, a placement naming an unknown file)."""


@dataclass(frozen=True)
class HubFile:
    id: str
    repo: str
    path: str
    revision: str
    size: int | None
    sha256: str | None
    gated: bool
    source: str = ""  # where the size and sha256 were found (for maintainers)

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes two entries the same file on the hub."""
        return (self.repo, self.path, self.revision)


@dataclass(frozen=True)
class Placement:
    file: HubFile
    dest: str  # relative to the volume's models/ folder, POSIX separators
    alternatives: tuple[HubFile, ...] = ()  # other files the engine reads as well at dest (linked, never fetched)
    variant: str | None = None  # set for placements that belong to one variant only (e.g. T5 "fp8")
    in_place_folders: tuple[str, ...] = ()  # folders of an extra model dir the engine reads this file from

    def accepts(self) -> tuple[HubFile, ...]:
        """Every file that may sit at dest, the one to download first."""
        return (self.file, *self.alternatives)


@dataclass(frozen=True)
class Layout:
    name: str
    placements: tuple[Placement, ...]
    variants: tuple[str, ...] = ()
    reads_extra_dirs: bool = False


@dataclass(frozen=True)
class CatalogueModel:
    id: str
    title: str
    family: str
    repo: str
    gated: bool
    licence_url: str
    description: str
    files: dict[str, HubFile] = field(default_factory=dict, repr=False)
    layouts: dict[str, Layout] = field(default_factory=dict, repr=False)
    engine_layouts: dict[str, str] = field(default_factory=dict, repr=False)
    # "base": a base model people train and generate with; "captioner": the dataset's captioning model (it never
    # counts as a production base model).
    role: str = "base"

    def engines(self) -> list[str]:
        return list(self.engine_layouts)

    def layout(self, engine: str) -> Layout:
        if engine not in self.engine_layouts:
            raise NotFoundError(f"{self.title} has no files for the engine {engine!r}; it has files for "
                                f"{', '.join(self.engines())}.")
        return self.layouts[self.engine_layouts[engine]]

    def variants(self, engine: str) -> list[str]:
        return list(self.layout(engine).variants)

    def placements(self, engine: str, variant: str | None = None) -> list[Placement]:
        """The files ``engine`` reads; ``variant`` (default: the layout's first) picks among variant placements."""
        layout = self.layout(engine)
        if variant is not None and variant not in layout.variants:
            known = ", ".join(layout.variants) or "none"
            raise NotFoundError(f"{self.title} for {engine} has no variant {variant!r} (variants: {known}).")
        chosen = variant or (layout.variants[0] if layout.variants else None)
        return [p for p in layout.placements if p.variant is None or p.variant == chosen]

    def all_placements(self) -> list[Placement]:
        """Every placement of every layout and variant, once per destination."""
        seen: dict[str, Placement] = {}
        for layout in self.layouts.values():
            for placement in layout.placements:
                seen.setdefault(placement.dest, placement)
        return list(seen.values())

    def engines_reading(self, dest: str) -> list[str]:
        return [engine for engine, name in self.engine_layouts.items()
                if any(p.dest == dest for p in self.layouts[name].placements)]


def catalogue_path() -> Path:
    override = os.environ.get(ENV_CATALOGUE)
    return Path(override) if override else resource_path("models", "catalogue.json")


_cache: dict[tuple[str, int], list[CatalogueModel]] = {}


def load() -> list[CatalogueModel]:
    """Every model of the catalogue (read once per file version)."""
    path = catalogue_path()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise CatalogueError(f"The model catalogue {path} cannot be read ({exc.strerror}); reinstall the app "
                             f"or unset {ENV_CATALOGUE}.") from exc
    key = (str(path), stamp)
    if key not in _cache:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CatalogueError(f"The model catalogue {path} is not valid JSON ({exc}); reinstall the app.") from exc
        _cache.clear()
        _cache[key] = parse(data, str(path))
    return _cache[key]


def get(model_id: str) -> CatalogueModel:
    models = load()
    for model in models:
        if model.id == model_id or model.title.lower() == model_id.lower():
            return model
    known = ", ".join(m.id for m in models) or "none"
    raise NotFoundError(f"There is no base model {model_id!r} in the catalogue; known models: {known}.")


def parse(data: dict[str, Any], where: str = "the catalogue") -> list[CatalogueModel]:
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise CatalogueError(f"{where} has schema version {version!r}; this app reads version {SCHEMA_VERSION}. "
                             "Update the app.")
    return [_model(entry, where) for entry in data.get("models", [])]


def _model(entry: dict[str, Any], where: str) -> CatalogueModel:
    model_id = entry["id"]
    gated = bool(entry.get("gated", False))
    files = {fid: HubFile(id=fid, repo=raw["repo"], path=raw["path"], revision=raw.get("revision", "main"),
                          size=raw.get("size"), sha256=(raw.get("sha256") or None),
                          gated=bool(raw.get("gated", gated and raw["repo"] == entry["repo"])),
                          source=raw.get("source", ""))
             for fid, raw in entry.get("files", {}).items()}

    def file(fid: str) -> HubFile:
        if fid not in files:
            raise CatalogueError(f"{where}: {model_id} places the file {fid!r}, which it does not list.")
        return files[fid]

    layouts: dict[str, Layout] = {}
    for name, raw in entry.get("layouts", {}).items():
        aliases: dict[str, list[str]] = raw.get("folder_aliases", {})
        placements = []
        for item in raw.get("placements", []):
            hub_file = file(item["file"])
            dest = item.get("dest") or f"{raw['folder']}/{hub_file.path}"
            _check_dest(dest, model_id, where)
            top = dest.split("/", 1)[0]
            in_place = tuple(aliases.get(top, [top])) if raw.get("reads_extra_dirs") and "/" in dest else ()
            placements.append(Placement(hub_file, dest, tuple(file(a) for a in item.get("alternatives", [])),
                                        item.get("variant"), in_place))
        layouts[name] = Layout(name, tuple(placements), tuple(raw.get("variants", [])),
                               bool(raw.get("reads_extra_dirs", False)))
    engine_layouts = dict(entry.get("engines", {}))
    for engine, layout in engine_layouts.items():
        if layout not in layouts:
            raise CatalogueError(f"{where}: {model_id} maps {engine} to the unknown layout {layout!r}.")
    return CatalogueModel(id=model_id, title=entry.get("title", model_id), family=entry.get("family", ""),
                          repo=entry["repo"], gated=gated, licence_url=entry.get("licence_url", ""),
                          description=entry.get("description", ""), files=files, layouts=layouts,
                          engine_layouts=engine_layouts, role=entry.get("role", "base"))


def _check_dest(dest: str, model_id: str, where: str) -> None:
    # A destination is data from a file: it must stay inside models/.
    pure = PurePosixPath(dest)
    if pure.is_absolute() or ".." in pure.parts or "\\" in dest or not pure.parts:
        raise CatalogueError(f"{where}: {model_id} places a file at {dest!r}, outside the models folder.")
