"""Every registered engine (the built-ins and any ``isengard.engines`` entry point installed) against the contract
of engines/interface.py: what it declares must be what it does. ``assert_conforms`` is also run on the test plugin
engine (tests/engines/test_plugin_engine.py), so an engine from a package of its own is held to the same rules."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from engines import registry
from engines.interface import (
    SERVICE_STATES,
    Availability,
    BaseModel,
    Engine,
    EngineContext,
    EngineService,
    EngineTraits,
    ImageEngine,
    ProvidesService,
    TrainingEngine,
)
from isengard_desktop.core.engines import engine_context
from isengard_desktop.storage.volume import Volume

KINDS = {"training", "image", "video"}
NAMES = list(registry.engine_specs())


def assert_conforms(engine: Engine, context: EngineContext) -> None:
    """The contract's rules that hold for any engine, in any state of this machine."""
    traits = engine.traits
    assert isinstance(traits, EngineTraits) and dataclasses.is_dataclass(traits)
    with pytest.raises(dataclasses.FrozenInstanceError):
        traits.rank = 0  # type: ignore[misc]  (a class attribute shared by every instance: it must not change)
    assert traits.title.strip() and traits.kinds and set(traits.kinds) <= KINDS, traits
    assert isinstance(traits.rank, int) and isinstance(traits.needs_worker_process, bool)
    assert engine.context is context, "the engine keeps the context it was made with"
    assert engine.kinds == traits.kinds

    availability = engine.availability()
    assert isinstance(availability, Availability)
    if not availability.available:
        assert availability.reason.strip().endswith((".", ")")), f"{engine.name}: {availability.reason!r}"

    # A declared kind is an implemented protocol, and the other way round.
    assert ("training" in traits.kinds) == isinstance(engine, TrainingEngine), engine.name
    assert ("image" in traits.kinds) == isinstance(engine, ImageEngine), engine.name

    if isinstance(engine, TrainingEngine | ImageEngine):
        tiny = engine.base_model(fast_test=True)
        assert isinstance(tiny, BaseModel) and tiny.ready, f"fast-test must need no download: {tiny}"
        real = engine.base_model(fast_test=False)
        assert isinstance(real, BaseModel) and real.id and real.name
        assert real.ready or real.reason.strip(), real

    names = traits.toggle_names
    assert len(set(names)) == len(names), f"{engine.name} declares a toggle twice: {names}"
    if isinstance(engine, ImageEngine):
        readiness = engine.advanced_readiness()
        assert set(readiness) == set(names), f"{engine.name} reports {sorted(readiness)}, declares {sorted(names)}"
        for toggle, state in readiness.items():
            assert isinstance(state, Availability) and (state.available or state.reason.strip()), (toggle, state)
    else:
        assert not names, "only an image engine offers Advanced toggles"

    if isinstance(engine, ProvidesService):
        service = engine.service()  # made, not started
        assert isinstance(service, EngineService), f"{engine.name}'s service lacks part of EngineService"
        assert service.status().state in SERVICE_STATES


@pytest.fixture
def volume(tmp_path: Path) -> Volume:
    return Volume.open(tmp_path / "volume")


@pytest.mark.parametrize("name", NAMES)
def test_every_engine_keeps_the_contract(name: str, volume: Volume) -> None:
    context = engine_context(volume, name)
    engine = registry.load(name, context)
    assert engine.name == name and isinstance(engine, Engine)
    assert_conforms(engine, context)


@pytest.mark.parametrize("name", NAMES)
def test_the_registry_lists_what_the_engine_declares(name: str, volume: Volume) -> None:
    info = registry.describe(name, engine_context(volume, name))
    cls = registry.engine_class(name)
    assert info.traits is cls.traits and info.title == cls.traits.title
    for kind in cls.traits.kinds:
        assert name in registry.names(kind)
        assert name in [listed.name for listed in registry.list_engines(kind)]
    if "image" in cls.traits.kinds:
        offered = {toggle.name: toggle for toggle in registry.toggles()}
        assert all(offered[toggle.name] == toggle for toggle in cls.traits.toggles)


@pytest.mark.parametrize("name", [n for n in NAMES if registry.engine_class(n).traits.upstream])
def test_an_upstream_engine_finds_its_install_through_its_context_alone(
        name: str, volume: Volume, monkeypatch: pytest.MonkeyPatch) -> None:
    upstream = registry.engine_class(name).traits.upstream
    assert upstream is not None and upstream.imports and upstream.entry_file
    monkeypatch.delenv(f"{upstream.env_prefix}_DIR", raising=False)
    monkeypatch.delenv(f"{upstream.env_prefix}_PYTHON", raising=False)
    context = engine_context(volume, name)
    assert context.engine_dir == volume.engine_dir(name)

    missing = registry.load(name, context)
    assert not missing.availability().available
    assert f"isengard engines install {name}" in missing.availability().reason

    # What `isengard engines install` lays out (src/ with the entry file, venv/bin/python) in the engine's folder.
    (volume.engine_dir(name) / "src").mkdir(parents=True)
    (volume.engine_dir(name) / "src" / upstream.entry_file).write_text("")
    python = volume.engine_dir(name) / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    assert registry.load(name, context).locate() == (volume.engine_dir(name) / "src", python)
    assert registry.load(name, context).availability().available
    # Without a context there is no volume: the same engine is not installed.
    assert not registry.load(name).availability().available


def test_the_comfyui_server_files_live_in_the_volumes_engine_folder(volume: Volume) -> None:
    from engines.comfyui import paths

    assert paths.engine_dir(volume.root) == volume.engine_dir("comfyui")


def test_the_context_round_trips_through_the_job_file(volume: Volume) -> None:
    context = engine_context(volume, "comfyui", [Path("/elsewhere/models")])
    assert EngineContext.from_dict(context.to_dict()) == context
    assert EngineContext.from_dict(EngineContext("x").to_dict()) == EngineContext("x")


def test_a_broken_engine_is_listed_unavailable_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.BUILTIN, "broken", "engines.interface:Availability")  # not an Engine
    registry.refresh()
    try:
        info = registry.describe("broken")
        assert not info.availability.available and "could not be loaded" in info.availability.reason
        assert "broken" not in registry.names()
        assert "broken" not in [info.name for info in registry.list_engines("image")]
    finally:
        monkeypatch.delitem(registry.BUILTIN, "broken")
        registry.refresh()


def test_asking_for_a_kind_an_engine_does_not_declare_is_refused() -> None:
    with pytest.raises(TypeError, match="does not generate images"):
        registry.load_image("aitoolkit")
    with pytest.raises(TypeError, match="does not train"):
        registry.load_training("comfyui")
    with pytest.raises(LookupError, match="known engines"):
        registry.load("nope")
