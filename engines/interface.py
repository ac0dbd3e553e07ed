"""What a training engine and an image engine are: the one contract between the app and its engines.

The job manager (``isengard_desktop.jobs``) and the UI only ever see the types in this module.
An engine is one class, registered in ``engines.registry`` as ``"module:Class"`` and loaded
lazily; it runs *inside a worker subprocess* (one whose traits say ``needs_worker_process=False``, an HTTP
client of its own server, in a thread of the app's process instead) and talks back through an ``emit`` callback that
takes plain JSON-serialisable dicts (one event per line on the worker's stdout), and honours a
``should_stop`` callable that turns true when the user presses Cancel.

This shape fits both an in-process trainer (the built-in diffusers engine calls ``emit`` from its
loop) and a subprocess-driven one (the AI-Toolkit adapter parses its child's output and calls
``emit`` for what it reads).

The contract in one place:

- Every engine class subclasses ``Engine``: a ``name``, frozen ``EngineTraits`` (title, kinds, preference,
  the Advanced toggles it offers, whether it needs a worker process, how its upstream install is found and
  checked), and an ``EngineContext`` given at construction (its folder in the volume, the models folder).
- What it can do is *declared*: ``TrainingEngine`` / ``ImageEngine`` for the kinds in ``traits.kinds``, and
  ``ProvidesService`` when it has a server for the app to supervise. Callers check these protocols with
  ``isinstance``; nothing branches on an engine's name. tests/engines/test_conformance.py holds every
  registered engine to this.
- ``train`` / ``generate`` return the final state; they never emit ``done``: the worker
  (isengard_desktop/jobs/worker.py) alone emits the one final ``done`` event, after the engine returned or
  raised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

# What an engine declares and what it is given live in engines/traits.py; they are part of this contract.
from engines.traits import (  # noqa: F401  (re-exported: the contract's names all come from here)
    BaseModel,
    EngineContext,
    EngineTraits,
    FileCopier,
    Lent,
    Toggle,
    Upstream,
)

API_VERSION = 2  # 2: engines subclass Engine, declare EngineTraits and are made with an EngineContext

Emit = Callable[[dict[str, Any]], None]
ShouldStop = Callable[[], bool]

# Event names a worker may emit (CONVENTIONS 4). Every event is a dict with "event" set to one of these.
EVENTS = (
    "progress",  # step, total, loss, lr, it_per_s, eta_s
    "sample",  # step, path, prompt
    "checkpoint",  # step, path
    "log",  # level, message
    "gpu",  # util, vram_used_mb, vram_total_mb, temp_c  (or cpu_percent, ram_used_mb when no GPU)
    "artifact",  # kind ("lora", ...), path
    "preview",  # index, path: an in-progress picture of the image being made (image engines)
    "image",  # index, path, seed, parameters: one finished image saved in the output folder (image engines)
    "error",  # message, hint
    "done",  # state: succeeded | cancelled | failed  (emitted by the worker alone, never by an engine)
)


@dataclass(frozen=True)
class Availability:
    """Whether an engine can run here, and if not, a sentence saying why and what to do."""

    available: bool
    reason: str = ""


class Engine:
    """What every engine class is. Subclass it, set ``name`` and ``traits``, implement ``availability`` and the
    protocol of each kind it declares (``TrainingEngine``, ``ImageEngine``); register it in
    ``engines.registry.BUILTIN`` or through the ``isengard.engines`` entry-point group as ``"module:Class"``.

    Making one must be cheap (no torch, no network): the window lists engines while it opens."""

    name: ClassVar[str]
    traits: ClassVar[EngineTraits]

    def __init__(self, context: EngineContext | None = None) -> None:
        self.context = context or EngineContext(self.name)

    @property
    def kinds(self) -> tuple[str, ...]:
        return self.traits.kinds

    def availability(self) -> Availability:
        """Whether it can run here; when not, ``reason`` says why and what to do. Fast: no imports of torch."""
        raise NotImplementedError

    def locate(self) -> tuple[Path, Path] | str:
        """Its upstream (checkout, python), or why there is none (engines without ``traits.upstream``: a reason)."""
        upstream = self.traits.upstream
        if upstream is None:
            return f"The {self.name} engine runs no upstream checkout."
        return upstream.locate(self.context.engine_dir, self.name)


@dataclass
class DatasetItem:
    """One training image: its file in the volume and its final caption (trigger word already substituted)."""

    path: str
    caption: str


@dataclass
class TrainingSpec:
    """Everything a training engine needs for one run. JSON round-trips through ``to_dict``/``from_dict``.

    ``output_dir`` is the job folder: the engine writes checkpoints, samples, caches and the final
    LoRA there. Re-running the same spec with ``resume=True`` continues from the newest checkpoint.
    """

    base_model: str  # path to a diffusers folder (FLUX.1-dev, or the fast-test tiny model)
    base_model_name: str  # human name recorded in the LoRA metadata, e.g. "FLUX.1-dev"
    output_dir: str
    dataset: list[DatasetItem]
    trigger_word: str
    lora_name: str  # file stem of the final LoRA, e.g. "ada_lovelace"
    preset: str = "quick"
    steps: int = 500
    learning_rate: float = 1e-4
    rank: int = 16
    alpha: int = 16
    resolutions: list[int] = field(default_factory=lambda: [512])  # bucket side lengths (max side)
    batch_size: int = 1
    save_every: int = 100
    sample_every: int = 100
    sample_prompts: list[str] = field(default_factory=list)
    sample_steps: int = 20
    sample_seed: int = 42
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    low_vram: bool = False
    num_threads: int = 0  # 0 = engine decides
    resume: bool = False
    schema_version: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingSpec:
        data = dict(data)
        data["dataset"] = [DatasetItem(**item) for item in data.get("dataset", [])]
        return cls(**data)


@runtime_checkable
class TrainingEngine(Protocol):
    """A LoRA trainer (``"training"`` in its traits' kinds). ``train`` runs inside the worker subprocess and
    blocks until done; it returns the final state and does not emit ``done`` (the worker does)."""

    name: str
    traits: EngineTraits
    context: EngineContext

    def availability(self) -> Availability: ...

    def base_model(self, fast_test: bool) -> BaseModel:
        """The base model a job uses when the person picks none (fast-test: a tiny one the engine builds)."""
        ...

    def train(self, spec: TrainingSpec, emit: Emit, should_stop: ShouldStop) -> str:
        """Train; return the final state: "succeeded", "cancelled" or "failed" (or raise with a sentence)."""
        ...


# The seven aspect-ratio presets of the Generate screen (SPEC §2), as FLUX.1-dev sizes of about one megapixel.
# Every side is a multiple of 16 (FLUX packs 2x2 latent patches of an 8x-downsampled image).
ASPECT_PRESETS: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "4:3": (1152, 864),
    "3:4": (864, 1152),
    "3:2": (1216, 832),
    "2:3": (832, 1216),
    "16:9": (1344, 768),
    "9:16": (768, 1344),
}


def aspect_size(aspect: str, long_side: int | None = None) -> tuple[int, int]:
    """Width and height of an aspect preset; ``long_side`` scales it down (the fast-test tiny model uses 64)."""
    if aspect not in ASPECT_PRESETS:
        raise ValueError(f"The aspect ratio {aspect!r} is not one of {', '.join(ASPECT_PRESETS)}.")
    width, height = ASPECT_PRESETS[aspect]
    if long_side is None:
        return width, height
    scale = long_side / max(width, height)
    return max(16, round(width * scale / 16) * 16), max(16, round(height * scale / 16) * 16)


@dataclass
class LoraRef:
    """A LoRA applied to a generation: its safetensors file and how strongly (0 = not at all, 1 = as trained)."""

    path: str
    strength: float = 1.0
    name: str = ""  # what the user knows it as (the character), for metadata and the gallery


@dataclass
class GenerationRequest:
    """Everything an image engine needs for one generation job. JSON round-trips like TrainingSpec.

    ``advanced`` holds the Advanced toggles that are switched on, each with its options, e.g.
    ``{"upscale": {"model": "4x-UltraSharp.pth"}, "controlnet": {"model": "...", "image": "/path.png",
    "strength": 0.7}}``; an engine refuses (before it starts) a toggle it cannot honour.
    Image ``i`` of the batch uses seed ``seed + i``.
    """

    prompt: str
    base_model: str  # diffusers folder / "tiny-flux" (diffusers), or the model's name in ComfyUI's folders
    base_model_name: str  # human name written into the PNG metadata, e.g. "FLUX.1-dev"
    output_dir: str  # the job folder: images are written here, then filed into the volume's outputs
    width: int = 1024
    height: int = 1024
    aspect: str = "1:1"
    loras: list[LoraRef] = field(default_factory=list)
    steps: int = 28
    guidance: float = 3.5
    seed: int = 0
    batch_count: int = 1
    sampler: str = "euler"
    scheduler: str = "simple"
    advanced: dict[str, dict[str, Any]] = field(default_factory=dict)
    device: str = "auto"
    num_threads: int = 0
    schema_version: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationRequest:
        data = dict(data)
        data["loras"] = [LoraRef(**item) for item in data.get("loras", [])]
        return cls(**data)


@runtime_checkable
class ImageEngine(Protocol):
    """An image generator. ``generate`` runs inside a worker subprocess and blocks until done.

    It emits ``progress`` (step, total, index, count), ``preview`` and one ``image`` event per saved
    file, checks ``should_stop`` between steps, and returns "succeeded", "cancelled" or "failed".
    ``advanced_readiness`` says, before any run, which Advanced toggles can work here and why not: exactly the
    toggles of ``traits.toggles``. Like ``train``, it returns the final state and leaves ``done`` to the worker.
    """

    name: str
    traits: EngineTraits
    context: EngineContext

    def availability(self) -> Availability: ...

    def base_model(self, fast_test: bool) -> BaseModel: ...

    def advanced_readiness(self) -> dict[str, Availability]: ...

    def generate(self, request: GenerationRequest, emit: Emit, should_stop: ShouldStop) -> str: ...


SERVICE_STATES = ("stopped", "starting", "ready", "failed")


@dataclass(frozen=True)
class ServiceStatus:
    """The state of an engine's long-running server (ComfyUI): stopped / starting / ready / failed."""

    state: str
    detail: str = ""  # why it failed, or where it listens
    url: str = ""


class StatusListeners:
    """Who follows an EngineService's status: every service keeps one. A listener that raises is logged and the
    others still hear the change (a broken status bar must not stop a supervisor)."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[ServiceStatus], None]] = []

    def subscribe(self, listener: Callable[[ServiceStatus], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def notify(self, status: ServiceStatus) -> None:
        for listener in list(self._listeners):
            try:
                listener(status)
            except Exception as exc:
                import structlog

                structlog.get_logger(__name__).error("service_listener_failed", error=repr(exc))


@runtime_checkable
class EngineService(Protocol):
    """A server an engine needs running beside the app (ComfyUI). Qt-free; listeners are called from threads."""

    def status(self) -> ServiceStatus: ...

    def start(self) -> None:
        """Start it in the background (returns at once); a no-op when it is starting or ready."""
        ...

    def stop(self, timeout: float = 10.0) -> None: ...

    def subscribe(self, listener: Callable[[ServiceStatus], None]) -> Callable[[], None]: ...

    def configure(self, extra_model_roots: list[Any]) -> None:
        """Settings that take effect at the next start (the extra model folders)."""
        ...

    def free_memory(self) -> None:
        """Let go of the GPU memory the server holds (a training run is about to start); a no-op when it holds
        none or is not running."""
        ...


@runtime_checkable
class ProvidesService(Protocol):
    """An engine with a server the app keeps running beside it (ComfyUI): the app supervises it."""

    def service(self) -> EngineService:
        """The server of this engine's context (its volume, ``context.extra_model_dirs``); made once per app."""
        ...


def lora_metadata(spec: TrainingSpec, engine: str, engine_version: str, app_version: str) -> dict[str, str]:
    """The safetensors metadata every trained LoRA carries, whichever engine trained it (SPEC §3).

    The saved weights already include the alpha / rank scale (or alpha equals rank), so loaders must
    apply them as they are; ``isengard.alpha_baked`` says so.
    """
    return {
        "isengard.trigger_word": spec.trigger_word,
        "isengard.base_model": spec.base_model_name,
        "isengard.steps": str(spec.steps),
        "isengard.rank": str(spec.rank),
        "isengard.alpha": str(spec.alpha),
        "isengard.alpha_baked": "true",
        "isengard.preset": spec.preset,
        "isengard.engine": engine,
        "isengard.engine_version": engine_version,
        "isengard.app_version": app_version,
    }
