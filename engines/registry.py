"""Which engines exist, loaded lazily by ``"module:Class"``: the built-ins plus the entry-point group
``isengard.engines``. A broken engine is logged and listed as unavailable with its reason, never fatal.

Adding an engine takes one package whose ``pyproject.toml`` declares
``[project.entry-points."isengard.engines"] myengine = "my_package.engine:MyEngine"``, the class being an
``engines.interface.Engine``; nothing else in the app changes (tests/engines/plugin_engine shows one).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

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

# How callers say where an engine's things are: the app builds each engine's context from its Volume
# (isengard_desktop/core/engines.py); without one an engine knows no volume.
Contexts = Callable[[str], EngineContext]


@dataclass(frozen=True)
class EngineInfo:
    """An engine as lists show it: its declared traits and whether it can run here (with the reason if not)."""

    name: str
    traits: EngineTraits
    availability: Availability

    @property
    def kinds(self) -> tuple[str, ...]:
        return self.traits.kinds

    @property
    def title(self) -> str:
        return self.traits.title


def engine_specs() -> dict[str, str]:
    return dict(_specs())


@lru_cache(maxsize=1)
def _specs() -> tuple[tuple[str, str], ...]:
    """Built-ins plus plugins, read once per process: scanning every installed distribution's entry points
    takes ~12 ms, and the window asks for the engine list several times while it opens."""
    from importlib.metadata import entry_points  # ~10 ms to import: only where plugins are looked for

    specs = dict(BUILTIN)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        specs.setdefault(entry.name, entry.value)
    return tuple(specs.items())


def refresh() -> None:
    """Read the entry points again (a package was installed while the app runs; tests)."""
    _specs.cache_clear()


def engine_class(name: str) -> type[Engine]:
    """The class registered as ``name``. Raises LookupError for an unknown name, TypeError for a non-engine."""
    # A built-in name wins over a plugin's anyway: only another name needs the entry points read (E7).
    spec = BUILTIN.get(name) or engine_specs().get(name)
    if spec is None:
        raise LookupError(f"There is no engine called {name!r}; known engines: {', '.join(sorted(engine_specs()))}.")
    module_name, _, class_name = spec.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Engine) and isinstance(getattr(cls, "traits", None),
                                                                             EngineTraits)):
        raise TypeError(f"{spec} is not an engines.interface.Engine with EngineTraits.")
    if cls.name != name:
        raise TypeError(f"{spec} calls itself {cls.name!r} but is registered as {name!r}.")
    return cls


def load(name: str, context: EngineContext | None = None) -> Engine:
    """An instance of the engine called ``name``, made with ``context``. Raises LookupError for an unknown name."""
    return engine_class(name)(context or EngineContext(name))


def as_training(engine: Engine) -> TrainingEngine:
    """``engine`` as a trainer; TypeError when it does not declare and implement training."""
    if "training" not in engine.traits.kinds or not isinstance(engine, TrainingEngine):
        raise TypeError(f"The {engine.name} engine does not train LoRAs.")
    return engine


def as_image(engine: Engine) -> ImageEngine:
    """``engine`` as an image generator; TypeError when it does not declare and implement it."""
    if "image" not in engine.traits.kinds or not isinstance(engine, ImageEngine):
        raise TypeError(f"The {engine.name} engine does not generate images.")
    return engine


def load_training(name: str, context: EngineContext | None = None) -> TrainingEngine:
    return as_training(load(name, context))


def load_image(name: str, context: EngineContext | None = None) -> ImageEngine:
    return as_image(load(name, context))


def describe(name: str, context: EngineContext | None = None) -> EngineInfo:
    try:
        engine = load(name, context)
        return EngineInfo(name, engine.traits, engine.availability())
    except LookupError as exc:  # a name nobody registered: not a broken engine, the caller says what is known
        return EngineInfo(name, EngineTraits(title=name, kinds=()), Availability(False, str(exc)))
    except Exception as exc:  # a broken plugin must never take the app down
        log.warning("engine_load_failed", engine=name, error=repr(exc))
        return EngineInfo(name, EngineTraits(title=name, kinds=()),
                          Availability(False, f"The {name} engine could not be loaded: {exc}"))


def service(name: str, context: EngineContext | None = None) -> EngineService | None:
    """The server of engine ``name`` the app keeps running (``ProvidesService``), or None when it declares none."""
    try:
        engine = load(name, context)
        return engine.service() if isinstance(engine, ProvidesService) else None
    except Exception as exc:
        log.warning("engine_service_failed", engine=name, error=repr(exc))
        return None


def list_engines(kind: str | None = None, contexts: Contexts | None = None) -> list[EngineInfo]:
    """Every registered engine (of ``kind``), each checked with its context, in preference order."""
    infos = [describe(name, contexts(name) if contexts else None) for name in engine_specs()]
    infos = [info for info in infos if kind is None or kind in info.kinds]
    return sorted(infos, key=lambda info: info.traits.rank)


def names(kind: str | None = None) -> list[str]:
    """Registered engines (that declare ``kind``), read from their traits without making or checking them."""
    out = []
    for name in engine_specs():
        try:
            traits = engine_class(name).traits
        except Exception as exc:
            log.warning("engine_load_failed", engine=name, error=repr(exc))
            continue
        if kind is None or kind in traits.kinds:
            out.append(name)
    return out


def toggles() -> list[Toggle]:
    """The Advanced toggles any image engine declares, each once (read from the traits: nothing is run)."""
    seen: dict[str, Toggle] = {}
    for name in engine_specs():
        try:
            traits = engine_class(name).traits
        except Exception as exc:  # listed as unavailable by describe(); its toggles are simply not offered
            log.warning("engine_load_failed", engine=name, error=repr(exc))
            continue
        if "image" in traits.kinds:
            for toggle in traits.toggles:
                seen.setdefault(toggle.name, toggle)
    return list(seen.values())
