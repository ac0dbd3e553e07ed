"""Where and how the run computes: device, precision, threads, and loading the frozen FLUX parts.

On a CUDA GPU the frozen weights run in bf16 with gradient checkpointing (FLUX.1-dev's transformer
is 24 GB in bf16; activations for 1024 px would not fit beside it otherwise). On the CPU everything
is fp32, because this kind of CPU computes bf16 and fp16 a hundred times slower than fp32, and runs
on one thread unless told otherwise, which measured 10-20x faster than two on a busy 2-core machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import torch

from engines.diffusers.errors import TrainingError

log = structlog.get_logger(__name__)

ADAM_BETAS = (0.9, 0.999)  # diffusers' script defaults
ADAM_WEIGHT_DECAY = 1e-4
ADAM_EPS = 1e-8


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype  # the frozen weights' and activations' dtype


def resolve_runtime(device: str, num_threads: int) -> Runtime:
    """The device the spec asks for ("auto" = CUDA when present), its dtype, and the CPU thread count."""
    if device not in ("auto", "cpu", "cuda"):
        raise TrainingError(f"The device {device!r} is not known; use auto, cpu or cuda.")
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("The spec asks for a CUDA GPU but torch sees none; use device auto or cpu.")
    chosen = torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")
    if chosen.type == "cpu":
        torch.set_num_threads(num_threads or 1)
    elif num_threads:
        torch.set_num_threads(num_threads)
    dtype = torch.bfloat16 if chosen.type == "cuda" else torch.float32
    log.info("runtime_resolved", device=str(chosen), dtype=str(dtype), threads=torch.get_num_threads())
    return Runtime(chosen, dtype)


def cuda_free_bytes(runtime: Runtime) -> int | None:
    if runtime.device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(runtime.device)
    return int(free)


def quiet_progress_bars() -> None:
    """The worker's stderr becomes the job log: tqdm's carriage-return bars would only clutter it."""
    import diffusers.utils.logging
    import transformers.utils.logging

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def load_vae(base_model: Path, runtime: Runtime) -> torch.nn.Module:
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(base_model, subfolder="vae", torch_dtype=runtime.dtype)
    vae.requires_grad_(False)
    return vae.to(runtime.device).eval()


def load_scheduler(base_model: Path) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler.from_pretrained(base_model, subfolder="scheduler")


def load_transformer(base_model: Path, runtime: Runtime, low_vram: bool = False,
                     warn: Callable[[str], None] | None = None) -> torch.nn.Module:
    """The frozen FLUX transformer; on a GPU in low-VRAM mode quantized to 8 bit by bitsandbytes.

    FLUX.1-dev's transformer is 24 GB in bf16, so a 24 GB card only has room for activations and
    the LoRA's optimizer state when the frozen base is stored in 8 bit (12 GB); the LoRA itself
    stays in full precision on top of it (peft supports bitsandbytes layers).
    """
    from diffusers import FluxTransformer2DModel

    options: dict[str, Any] = {"subfolder": "transformer", "torch_dtype": runtime.dtype}
    quantized = False
    if runtime.device.type == "cuda" and low_vram:
        try:
            import bitsandbytes  # noqa: F401
            from diffusers import BitsAndBytesConfig
        except ImportError:
            if warn:
                warn("Low-VRAM mode wants bitsandbytes to store FLUX in 8 bit, but it is not installed; the base "
                     "model loads in bf16 and may not fit in 24 GB. Install bitsandbytes in the app's environment.")
        else:
            options["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
            quantized = True
    transformer = FluxTransformer2DModel.from_pretrained(base_model, **options)
    transformer.requires_grad_(False)
    if not quantized:  # a bitsandbytes model is placed on the GPU while it loads and cannot be moved
        transformer.to(runtime.device)
    if runtime.device.type == "cuda":
        # Recompute activations in the backward pass instead of keeping them: memory over speed.
        transformer.enable_gradient_checkpointing()
    transformer.train()
    log.info("transformer_loaded", quantized_8bit=quantized, device=str(runtime.device))
    return transformer


def make_optimizer(
    params: list[torch.nn.Parameter],
    learning_rate: float,
    runtime: Runtime,
    low_vram: bool,
    warn: Callable[[str], None],
) -> torch.optim.Optimizer:
    """AdamW; on a GPU in low-VRAM mode bitsandbytes' 8-bit AdamW, whose moments take a quarter of the memory."""
    options = {"lr": learning_rate, "betas": ADAM_BETAS, "weight_decay": ADAM_WEIGHT_DECAY, "eps": ADAM_EPS}
    if runtime.device.type == "cuda" and low_vram:
        try:
            import bitsandbytes
        except ImportError:
            warn(
                "Low-VRAM mode wants bitsandbytes for 8-bit AdamW, but it is not installed in the engine's "
                "environment; training goes on with the normal AdamW, which needs more GPU memory. "
                "Install bitsandbytes to use 8-bit AdamW."
            )
        else:
            log.info("optimizer_chosen", optimizer="AdamW8bit")
            return bitsandbytes.optim.AdamW8bit(params, **options)
    log.info("optimizer_chosen", optimizer="AdamW")
    return torch.optim.AdamW(params, **options)
