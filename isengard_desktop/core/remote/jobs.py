"""Building a training or generation job that runs on a remote GPU machine (``--remote NAME``, the "Run on" picker).

The spec is built here as for a local run, with what belongs to the remote instead of this computer: the mode
(a remote is added for its GPU, so production unless ``ISENGARD_MODE`` says otherwise, whatever this laptop has),
the base model (in the remote volume's ``models`` folder, checked there by the worker, not here) and the engine
(the remote's engines: only the built-in one generates there, ComfyUI runs as the app's server on this computer).
The job's ``meta["remote"]`` names the remote; jobs/remote_job.py does the rest.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from engines.interface import GenerationRequest, TrainingSpec
from isengard_desktop.base.errors import ValidationError
from isengard_desktop.base.mode import FAST_TEST, PRODUCTION, resolve_mode
from isengard_desktop.core.remote.registry import LOCAL, get_remote, list_remotes
from isengard_desktop.core.training import FLUX_DEV, TINY_MODEL, BaseModel, Preflight, build_spec
from isengard_desktop.storage.volume import Volume

if TYPE_CHECKING:
    from isengard_desktop.context import AppContext
    from isengard_desktop.core.characters import Character

TRAINING_ENGINES = ("diffusers", "aitoolkit")
REMOTE_IMAGE_ENGINE = "diffusers"


def is_remote(name: str | None) -> bool:
    """Whether a "Run on" choice names a remote (None, "" and "local" are this computer)."""
    return bool(name) and name != LOCAL


def run_on_choices(volume: Volume) -> list[tuple[str, str]]:
    """The "Run on" picker's entries: (label, value); this computer first, then each registered remote."""
    return [("This computer", LOCAL)] + [(f"{r.name} ({r.address})", r.name) for r in list_remotes(volume)]


def remote_mode() -> str:
    """The mode of a remote run: production (the remote has the GPU) unless ISENGARD_MODE is set."""
    return resolve_mode() if os.environ.get("ISENGARD_MODE") else PRODUCTION


def remote_base_model(volume: Volume, mode: str) -> BaseModel:
    """The base model a remote trains on: the tiny one in fast-test, else FLUX.1-dev in the *remote* volume's models
    folder (the local path is rewritten there when the job is sent; the remote worker says if it is missing)."""
    if mode == FAST_TEST:
        return BaseModel(TINY_MODEL, "tiny-flux (fast-test)", True)
    return BaseModel(str(volume.models_dir / FLUX_DEV), FLUX_DEV, True)


def remote_training_spec(ctx: AppContext, character: Character, name: str, engine: str | None, preset: str,
                         overrides: dict[str, Any]) -> tuple[str, TrainingSpec, Preflight, dict[str, Any]]:
    """(engine, spec, pre-flight verdict, the job's ``remote`` meta) for training ``character`` on remote ``name``."""
    get_remote(ctx.volume, name)  # an unknown name is refused now, not in the background
    mode = remote_mode()
    engine = engine or ("diffusers" if mode == FAST_TEST else "aitoolkit")
    if engine not in TRAINING_ENGINES:
        raise ValidationError(f"There is no training engine called {engine!r}; known: {', '.join(TRAINING_ENGINES)}.")
    spec, check = build_spec(ctx.volume, ctx.dataset, character, mode, preset, overrides,
                             base_model=remote_base_model(ctx.volume, mode))
    return engine, spec, check, {"name": name}


def remote_generation_request(ctx: AppContext, name: str, engine: str | None, build: Any) -> tuple[
        str, GenerationRequest, dict[str, Any]]:
    """(engine, request, the job's ``remote`` meta) for generating on remote ``name``; ``build(mode, engine)`` makes
    the request as for a local run (core.generation.build_request with the person's values)."""
    get_remote(ctx.volume, name)
    if engine not in (None, REMOTE_IMAGE_ENGINE):
        raise ValidationError(f"On a remote, images are made with the built-in engine; the {engine} engine runs on "
                              "this computer only (choose This computer, or leave the engine out).")
    mode = remote_mode()
    request = build(FAST_TEST, REMOTE_IMAGE_ENGINE) if mode == FAST_TEST else _production_request(ctx, build)
    return REMOTE_IMAGE_ENGINE, request, {"name": name}


def _production_request(ctx: AppContext, build: Any) -> GenerationRequest:
    # build_request checks that FLUX.1-dev is in *this* volume; on a remote it must be in the remote's. The request
    # is built with the check of an engine that names its model (ComfyUI's), then pointed at the remote's folder.
    request: GenerationRequest = build(PRODUCTION, "comfyui")
    return dataclasses.replace(request, base_model=str(ctx.volume.models_dir / FLUX_DEV), base_model_name=FLUX_DEV)
