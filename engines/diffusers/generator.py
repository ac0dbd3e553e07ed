"""The built-in generator: FLUX text-to-image with LoRAs, in the worker process, pipeline kept loaded.

Loading FLUX.1-dev takes tens of seconds (33 GB of weights), so the pipeline lives in this module's
cache for as long as the worker does: the job manager keeps one generation worker running between
requests (``worker --serve``), and only the first image after a start or a change of base model pays
the load. LoRAs are loaded once per file (keyed by path, size and modification time) as named peft
adapters and set to each request's strengths; adapters a request does not use are switched off,
so strength 0 and "no LoRA" give the same image.
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
from isengard_desktop.storage import atomic

log = structlog.get_logger(__name__)

ENGINE = "diffusers"
# Above this much free GPU memory the whole pipeline sits on the GPU; below it, diffusers moves each
# part to the GPU only while it runs (FLUX.1-dev in bf16 is ~33 GB with both text encoders).
FULL_GPU_BYTES = 36 * 1024**3


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

    emit({"event": "log", "level": "info", "message": f"Loading the base model {base_model.name}…"})
    started = time.perf_counter()
    if not (base_model / "model_index.json").is_file():
        raise GenerationError(f"The base model folder {base_model} is not a diffusers FLUX model (it has no "
                              "model_index.json); choose another base model in Settings.")
    pipe = FluxPipeline.from_pretrained(base_model, torch_dtype=runtime.dtype)
    pipe.set_progress_bar_config(disable=True)
    free = models.cuda_free_bytes(runtime)
    if free is not None and free < FULL_GPU_BYTES:
        pipe.enable_model_cpu_offload(device=runtime.device)
        log.info("pipeline_cpu_offload", free_gb=round(free / 1024**3, 1))
    else:
        pipe.to(runtime.device)
    _loaded = LoadedPipeline(key, pipe)
    log.info("pipeline_loaded", base_model=key[0], seconds=round(time.perf_counter() - started, 3))
    return _loaded


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
    if names:
        pipe.enable_lora()
        pipe.set_adapters(names, adapter_weights=weights)
    elif loaded.adapters:
        pipe.disable_lora()


def generate(request: GenerationRequest, emit: Emit, should_stop: ShouldStop, app_version: str) -> str:
    """Make ``request.batch_count`` images into ``request.output_dir``; returns "succeeded" or "cancelled"."""
    if request.advanced:
        raise GenerationError("The built-in engine does not do " + ", ".join(sorted(request.advanced)) +
                              "; switch those off or generate with ComfyUI.")
    runtime = models.resolve_runtime(request.device, request.num_threads)
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
