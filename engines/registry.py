"""Which engines exist, loaded lazily by ``"module:Class"``: the built-ins plus the entry-point group
``isengard.engines``. A broken engine is logged and listed as unavailable with its reason, never fatal."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from collections.abc import Callable

import structlog

from engines.interface import (
    Availability,
    Engine,
    EngineContext,
    EngineService,
    EngineTraits,
    ImageEngine,
    ProvidesService,
    Toggle,
    TrainingEngine,
)

log = structlog.get_logger(__name__)

ENTRY_POINT_GROUP = "isengard.engines"

BUILTIN: dict[str, str] = {
    "aitoolkit": "engines.aitoolkit.engine:AIToolkitEngine",
    "comfyui": "engines.comfyui.engine:ComfyUIEngine",
    "diffusers": "engines.diffusers.engine:DiffusersEngine",
    "video": "engines.video:VideoEngine",
}


@dataclass(frozen=True)
class EngineInfo:
    name: str
    kinds: tuple[str, ...]
    availability: Availability


def engine_specs() -> dict[str, str]:
    return dict(_specs())


@lru_cache(maxsize=1)
def _specs() -> tuple[tuple[str, str], ...]:
    """Built-ins plus plugins, read once per process: scanning every installed distribution's entry points
    takes ~12 ms, and the window asks for the engine list several times while it opens."""
    specs = dict(BUILTIN)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        specs.setdefault(entry.name, entry.value)
    return tuple(specs.items())


def load(name: str) -> Any:
    """An instance of the engine called ``name``. Raises LookupError for an unknown name."""
    specs = engine_specs()
    if name not in specs:
        raise LookupError(f"There is no engine called {name!r}; known engines: {', '.join(sorted(specs))}.")
    spec = specs[name]
    module_name, _, class_name = spec.partition(":")
    return getattr(importlib.import_module(module_name), class_name)()


def describe(name: str) -> EngineInfo:
    try:
        engine = load(name)
        return EngineInfo(name, tuple(engine.kinds), engine.availability())
    except Exception as exc:  # a broken plugin must never take the app down
        log.warning("engine_load_failed", engine=name, error=repr(exc))
        return EngineInfo(name, (), Availability(False, f"The {name} engine could not be loaded: {exc}"))


def service(name: str, volume_root: Path, extra_model_dirs: list[Path]) -> Any:
    """The EngineService (a server the app keeps running, e.g. ComfyUI) of engine ``name``, or None."""
    try:
        factory = getattr(load(name), "service", None)
        return factory(volume_root, extra_model_dirs) if factory else None
    except Exception as exc:
        log.warning("engine_service_failed", engine=name, error=repr(exc))
        return None


def list_engines(kind: str | None = None) -> list[EngineInfo]:
    infos = [describe(name) for name in engine_specs()]
    return [info for info in infos if kind is None or kind in info.kinds]
