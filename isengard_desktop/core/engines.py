"""The app's side of the engine registry: each engine made with its context from the Volume, engines listed in
preference order, and the one choice of engine when the person names none.

The registry (engines/registry.py) knows no volume; this module builds every ``EngineContext`` the app hands an
engine (the window, the CLI, and the job file a worker reads), so the ``engines/<name>`` folder comes from
``Volume.engine_dir`` alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engines import registry
from engines.interface import Engine, EngineContext, Upstream
from engines.registry import Contexts, EngineInfo
from isengard_desktop.base.errors import ValidationError
from isengard_desktop.base.mode import FAST_TEST
from isengard_desktop.storage.volume import Volume


def engine_context(volume: Volume, name: str, extra_model_dirs: Sequence[Path] = ()) -> EngineContext:
    """What engine ``name`` needs to know about ``volume``, and what the app lends it (core/remote/file_copy.py)."""
    from isengard_desktop.core.remote.file_copy import lent

    return EngineContext(name=name, volume_root=volume.root, engine_dir=volume.engine_dir(name),
                         models_dir=volume.models_dir, extra_model_dirs=tuple(Path(p) for p in extra_model_dirs),
                         lent=lent(volume))


def contexts(volume: Volume, extra_model_dirs: Sequence[Path] = ()) -> Contexts:
    return lambda name: engine_context(volume, name, extra_model_dirs)


def upstream(name: str) -> Upstream:
    """How engine ``name``'s upstream checkout is found and what its environment must import (its declaration)."""
    declared = registry.engine_class(name).traits.upstream
    if declared is None:
        raise LookupError(f"The {name} engine runs no upstream checkout of its own.")
    return declared


def installable_engines() -> list[str]:
    """The engines ``isengard engines install`` can install: those that declare an upstream checkout."""
    return [name for name in registry.names() if registry.engine_class(name).traits.upstream is not None]


def preferred(kind: str) -> str:
    """The registered engine of ``kind`` that declares the first preference (its rank)."""
    return min(registry.names(kind), key=lambda name: registry.engine_class(name).traits.rank)


def load(volume: Volume, name: str) -> Engine:
    """Engine ``name``, made with its context in ``volume``."""
    return registry.load(name, engine_context(volume, name))


def describe(volume: Volume, name: str) -> EngineInfo:
    return registry.describe(name, engine_context(volume, name))


def list_engines(volume: Volume, kind: str | None = None) -> list[EngineInfo]:
    """Every engine (of ``kind``), checked against ``volume``, in preference order."""
    return registry.list_engines(kind, contexts(volume))


def choose_engine(kind: str, requested: str | None, infos: Sequence[EngineInfo], mode: str,
                  default: str | None = None) -> str:
    """The engine to run a ``kind`` job with: the one asked for (refused with the reason when it cannot run), else
    ``default`` (the settings' choice) when it is ready, else the first ready engine by the engines' declared
    preference (in fast-test mode only those that declare they run there unasked)."""
    known = {info.name: info for info in infos if kind in info.kinds}
    if requested:
        if requested not in known:
            raise ValidationError(f"There is no {kind} engine called {requested!r}; {kind} engines: "
                                  f"{', '.join(registry.names(kind))}.")
        info = known[requested]
        if not info.availability.available:
            raise ValidationError(f"The {requested} engine is not available here: {info.availability.reason}")
        return requested
    ordered = sorted(known.values(), key=lambda info: info.traits.rank)
    candidates = [known[default]] if default in known else []
    candidates += [info for info in ordered if mode != FAST_TEST or info.traits.auto_in_fast_test]
    for info in candidates:
        if info.availability.available:
            return info.name
    reasons = "; ".join(f"{info.name}: {info.availability.reason}" for info in ordered
                        if not info.availability.available)
    raise ValidationError(f"No {kind} engine is available here ({reasons}).")
