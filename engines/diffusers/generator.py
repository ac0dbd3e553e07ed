"""The built-in generator: FLUX text-to-image with LoRAs, in the worker process, pipeline kept loaded.

Loading FLUX.1-dev takes tens of seconds (33 GB of weights), so the pipeline lives in this module's
cache for as long as the worker does: the job manager keeps one generation worker running between
requests (``worker --serve``), and only the first image after a start or a change of base model pays
the load. How the pipeline sits on a GPU comes from the memory plan (base/memory_plan_generate.py), made
when it loads: everything in bf16 on the card when it fits (a 40 GB card), else each part on the card
only while it runs, else a 4-bit transformer (NF4, with bitsandbytes), else layer by layer. LoRAs are
loaded once per file (keyed by path, size and modification time) as named peft adapters and set to each
request's strengths; adapters a request does not use are deleted (each would otherwise stay in memory
for the life of the worker), so strength 0 and "no LoRA" give the same image.
"""

from __future__ import annotations

import gc
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import torch

from engines import pngmeta
from engines.diffusers import models
from engines.diffusers.errors import GenerationError
from engines.diffusers.sampling import generate_image
from engines.interface import Emit, GenerationRequest, ShouldStop
from isengard_desktop.base import atomic
from isengard_desktop.base.memory_plan import ModelSizes

log = structlog.get_logger(__name__)

ENGINE = "diffusers"
PLAN_SIZE = (1024, 1024)  # the aspect presets are all about one megapixel: plan for the largest


@dataclass
class LoadedPipeline:
    key: tuple[str, str, str]
    pipe: Any
    adapters: dict[str, str] = field(default_factory=dict)  # LoRA file identity -> adapter name


_loaded: LoadedPipeline | None = None


def _load_pipeline(base_model: Path, runtime: models.Runtime, emit: Emit) -> LoadedPipeline:
    """The pipeline for ``base_model``, from the cache when it is the one already loaded."""
    global _loaded
    key = (str(base_model.resolve()), str(runtime.device), str(runtime.dtype))
    if _loaded is not None and _loaded.key == key:
        log.info("pipeline_reused", base_model=key[0])
        return _loaded
    if _loaded is not None:
        log.info("pipeline_released", base_model=_loaded.key[0])
        _loaded = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    from diffusers import FluxPipeline

    models.settle_imports()  # a later release's gc.collect walks the pipeline, not every module
    emit({"event": "log", "level": "info", "message": f"Loading the base model {base_model.name}…"})
    started = time.perf_counter()
    if not (base_model / "model_index.json").is_file():
        raise GenerationError(f"The base model folder {base_model} is not a diffusers FLUX model (it has no "
                              "model_index.json); choose another base model in Settings.")
    strategy = _strategy(runtime, emit)
    if strategy.startswith("nf4"):
        from diffusers import BitsAndBytesConfig, FluxTransformer2DModel

        quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                          bnb_4bit_compute_dtype=runtime.dtype)
        transformer = FluxTransformer2DModel.from_pretrained(base_model, subfolder="transformer",
                                                             quantization_config=quantization,
                                                             torch_dtype=runtime.dtype)
        pipe = FluxPipeline.from_pretrained(base_model, transformer=transformer, torch_dtype=runtime.dtype)
    else:
        pipe = FluxPipeline.from_pretrained(base_model, torch_dtype=runtime.dtype)
    pipe.set_progress_bar_config(disable=True)
    if strategy.endswith("model_cpu_offload"):
        pipe.enable_model_cpu_offload(device=runtime.device)
    elif strategy == "sequential_cpu_offload":
        pipe.enable_sequential_cpu_offload(device=runtime.device)
    else:
        pipe.to(runtime.device)
    _loaded = LoadedPipeline(key, pipe)
    log.info("pipeline_loaded", base_model=key[0], seconds=round(time.perf_counter() - started, 3))
    return _loaded


def _strategy(runtime: models.Runtime, emit: Emit) -> str:
    """How to hold the pipeline: "cpu" without a GPU, else the memory plan's strategy for this card now."""
    if runtime.device.type != "cuda":
        return "cpu"
    from isengard_desktop.base.memory_plan_generate import plan_generation

    card = models.cuda_card(runtime)
    plan = plan_generation(card, *PLAN_SIZE, bitsandbytes=models.has_bitsandbytes())
    log.info("generation_planned", verdict=plan.verdict, strategy=plan.settings["strategy"],
             peak_gb=round(plan.peak_gb, 2), card=card.to_json())
    if not plan.ok:
        raise GenerationError(plan.reason)
    if plan.verdict == "adjusted":
        emit({"event": "log", "level": "info", "message": plan.reason})
    return str(plan.settings["strategy"])


def _identity(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def _apply_loras(loaded: LoadedPipeline, request: GenerationRequest) -> None:
    """Load each requested LoRA once, set its strength, and switch every other loaded LoRA off."""
    pipe = loaded.pipe
    names, weights = [], []
    for lora in request.loras:
        path = Path(lora.path)
        if not path.is_file():
            raise GenerationError(f"The LoRA file {path} is missing; train the character again or pick another LoRA.")
        if path.suffix.lower() != ".safetensors":
            raise GenerationError(f"{path.name} is not a .safetensors file; only safetensors LoRAs are loaded.")
        identity = _identity(path)
        name = loaded.adapters.get(identity)
        if name is None:
            name = "lora_" + hashlib.sha1(identity.encode()).hexdigest()[:12]
            started = time.perf_counter()
            try:
                pipe.load_lora_weights(str(path), adapter_name=name)
            except (ValueError, RuntimeError, KeyError) as exc:
                raise GenerationError(f"The LoRA {path.name} does not fit the base model "
                                      f"{request.base_model_name}: {str(exc)[:200]}") from exc
            loaded.adapters[identity] = name
            log.info("lora_loaded", path=str(path), adapter=name, seconds=round(time.perf_counter() - started, 3))
        names.append(name)
        weights.append(float(lora.strength))
    stale = [identity for identity, name in loaded.adapters.items() if name not in names]
    if stale:  # a LoRA no longer asked for is deleted, not only switched off: it would hold memory forever
        pipe.delete_adapters([loaded.adapters.pop(identity) for identity in stale])
        log.info("lora_unloaded", count=len(stale))
    if names:
        pipe.enable_lora()
        pipe.set_adapters(names, adapter_weights=weights)


def generate(request: GenerationRequest, emit: Emit, should_stop: ShouldStop, app_version: str) -> str:
    """Make ``request.batch_count`` images into ``request.output_dir``; returns "succeeded" or "cancelled"."""
    if request.advanced:
        raise GenerationError("The built-in engine does not do " + ", ".join(sorted(request.advanced)) +
                              "; switch those off or generate with ComfyUI.")
    # A FLUX-sized model never falls back to the CPU silently (models.resolve_runtime).
    params = ModelSizes.from_folder(Path(request.base_model)).transformer
    runtime = models.resolve_runtime(request.device, request.num_threads, params)
    models.quiet_progress_bars()
    loaded = _load_pipeline(Path(request.base_model), runtime, emit)
    _apply_loras(loaded, request)
    out = Path(request.output_dir)
    total = request.steps * request.batch_count
    for index in range(request.batch_count):
        seed = request.seed + index
        started = time.perf_counter()

        def on_step(done: int, index: int = index) -> bool:
            emit({"event": "progress", "step": index * request.steps + done, "total": total,
                  "index": index, "count": request.batch_count})
            return should_stop()

        image = generate_image(loaded.pipe, request.prompt, seed=seed, steps=request.steps, width=request.width,
                               height=request.height, guidance=request.guidance, on_step=on_step)
        if image is None or should_stop():
            log.info("generation_cancelled", index=index)
            return "cancelled"
        parameters = pngmeta.a1111_parameters(request, seed, ENGINE, app_version)
        path = out / f"image_{index:02d}_{seed}.png"
        atomic.write_bytes(path, pngmeta.png_bytes(image, {"parameters": parameters}))
        log.info("image_saved", path=str(path), seed=seed, seconds=round(time.perf_counter() - started, 3))
        emit({"event": "image", "index": index, "path": str(path), "seed": seed, "parameters": parameters,
              "width": image.width, "height": image.height})
    return "succeeded"
