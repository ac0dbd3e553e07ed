"""What a training engine and an image engine are: the one contract between the app and its engines.

The job manager (``isengard_desktop.jobs``) and the UI only ever see the types in this module.
An engine is one class, registered in ``engines.registry`` as ``"module:Class"`` and loaded
lazily; it runs *inside a worker subprocess* and talks back through an ``emit`` callback that
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

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

API_VERSION = 1

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


class FileCopier(Protocol):
    """Copies files to the machine behind a URL (the app does it over SSH to a machine of Settings → Remotes)."""

    name: str

    def copy_changed(self, paths: list[Path], folder: str, say: Callable[[str], None]) -> None:
        """Copy into ``folder`` there each file whose content it does not hold yet; IsengardError when it cannot."""


@dataclass(frozen=True)
class Lent:
    """What only the app can do, lent to an engine made in the app's process (never written to a job file): the
    engines know no keyring, no SSH and no list of remotes. Without it (a worker, a test) they do without."""

    auth_header: Callable[[str], tuple[str, str] | None] = lambda url: None  # the header to send to a server's URL
    file_copier: Callable[[str], FileCopier | None] = lambda url: None  # who copies files to the URL's machine


@dataclass(frozen=True)
class EngineContext:
    """What the app hands an engine when it makes one: the only way an engine learns where things are.

    Built by the app from the Volume (``Volume.engine_dir`` computes ``engines/<name>`` once) and, in a
    worker, read back from the job file; an engine made without one (``EngineContext(name)``) knows no
    volume and finds only what the development variables point at.
    """

    name: str
    volume_root: Path | None = None
    engine_dir: Path | None = None  # <volume>/engines/<name>: its install and its run state
    models_dir: Path | None = None  # <volume>/models: base models, LoRAs, the tiny fast-test models
    extra_model_dirs: tuple[Path, ...] = ()  # model folders added in Settings (e.g. an existing ComfyUI's)
    lent: Lent = field(default_factory=Lent, compare=False)  # the app's own abilities (not in to_dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "volume_root": _str(self.volume_root), "engine_dir": _str(self.engine_dir),
                "models_dir": _str(self.models_dir), "extra_model_dirs": [str(p) for p in self.extra_model_dirs]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineContext:
        def path(key: str) -> Path | None:
            return Path(data[key]) if data.get(key) else None

        return cls(data["name"], path("volume_root"), path("engine_dir"), path("models_dir"),
                   tuple(Path(p) for p in data.get("extra_model_dirs", ())))


def _str(path: Path | None) -> str | None:
    return str(path) if path is not None else None


@dataclass(frozen=True)
class Upstream:
    """An engine that runs an upstream checkout in its own Python environment (AI-Toolkit, ComfyUI): how it is
    found, and what its environment must import — one declaration for ``isengard engines install`` (the check
    before the new install is swapped in) and ``isengard engines status`` (the health report)."""

    env_prefix: str  # development variables <prefix>_DIR (a checkout) and <prefix>_PYTHON (its python)
    entry_file: str  # the file that proves the checkout is this engine ("run.py", "main.py")
    imports: tuple[str, ...]  # what its environment must import for the engine to start
    title: str  # how sentences name it ("AI-Toolkit")
    fallback: str = ""  # what to do instead while it is not installed ("or use the built-in diffusers engine")
    # How ``isengard engines install`` builds its environment (VENDOR_PINS.json's requirements policy as data):
    skip_requirements: tuple[str, ...] = ()  # requirement lines starting with these are left out
    extra_packages: tuple[str, ...] = ()  # installed with the requirements
    no_deps_packages: tuple[str, ...] = ()  # installed afterwards with --no-deps
    remove_packages: tuple[str, ...] = ()  # uninstalled at the end
    bitsandbytes: bool = False  # its low-VRAM presets need bitsandbytes (8-bit AdamW and weights; ERROR_LIST E1)

    def locate(self, engine_dir: Path | None, name: str) -> tuple[Path, Path] | str:
        """(checkout, python) to run, or a sentence saying why there is none and what to do.

        The development variables win; otherwise the install in the volume (``engine_dir``/src and venv)."""
        install = f"`isengard engines install {name}`"
        folder = os.environ.get(f"{self.env_prefix}_DIR")
        if folder:
            checkout = Path(folder)
            python = Path(os.environ.get(f"{self.env_prefix}_PYTHON") or checkout / "venv" / "bin" / "python")
        elif engine_dir is not None:
            checkout, python = engine_dir / "src", engine_dir / "venv" / "bin" / "python"
            if not checkout.is_dir():
                return (f"{self.title} is not installed: run {install} (needs internet, or --source with a local "
                        f"clone){self.fallback}.")
        else:
            return (f"{self.title} is not installed: run {install}{self.fallback}; for development set "
                    f"{self.env_prefix}_DIR to a checkout and {self.env_prefix}_PYTHON to its environment's python.")
        if not (checkout / self.entry_file).is_file():
            return f"{checkout} has no {self.entry_file}; reinstall {self.title} with {install}."
        if not python.is_file():
            return f"{self.title}'s python ({python}) does not exist; reinstall it with {install}."
        return checkout, python


@dataclass(frozen=True)
class Toggle:
    """An Advanced toggle of the Generate screen: its key in ``GenerationRequest.advanced``, its title, and the
    file it asks the person for ("control image"), or "" when it asks for none."""

    name: str
    title: str
    asks_for: str = ""


@dataclass(frozen=True)
class EngineTraits:
    """What an engine declares about itself, read without running it (frozen: it is a class attribute)."""

    title: str  # what the window and the CLI call it: "Built-in (diffusers)"
    kinds: tuple[str, ...]  # what it does: "training", "image", "video"
    rank: int = 50  # lower is chosen first when the person names no engine (the settings' default goes first)
    auto_in_fast_test: bool = True  # whether it is chosen unasked in fast-test mode (tiny models, CPU)
    toggles: tuple[Toggle, ...] = ()  # the Advanced toggles it offers; advanced_readiness reports exactly these
    needs_worker_process: bool = True  # False: its jobs can run in the app's process (an HTTP client of a server)
    upstream: Upstream | None = None  # an upstream checkout in its own environment: install and health policy

    @property
    def toggle_names(self) -> tuple[str, ...]:
        return tuple(toggle.name for toggle in self.toggles)


@dataclass(frozen=True)
class BaseModel:
    """The base model a job uses: what the engine receives (a folder, "tiny-flux", a name in its folders), the
    human name recorded in metadata, and whether it is there (if not, a sentence saying what to do)."""

    id: str
    name: str
    ready: bool
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
