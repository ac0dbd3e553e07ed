"""Where and how the run computes: device, precision, threads, and loading the frozen FLUX parts.

On a CUDA GPU the frozen weights run in bf16 with gradient checkpointing (FLUX.1-dev's transformer
is 22.2 GiB in bf16; activations for 1024 px would not fit beside it otherwise), stored in 4 bit when
the memory plan says so. On the CPU everything
is fp32, because this kind of CPU computes bf16 and fp16 a hundred times slower than fp32, and runs
on one thread unless told otherwise, which measured 10-20x faster than two on a busy 2-core machine.
"""

from __future__ import annotations

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


def resolve_runtime(device: str, num_threads: int, transformer_params: int | None = None) -> Runtime:
    """The device the spec asks for ("auto" = CUDA when present), its dtype, and the CPU thread count.

    "auto" never falls back to the CPU silently for a real model: with an NVIDIA driver present and a
    torch build without CUDA, or with a transformer of billions of weights (FLUX.1-dev in fp32 is about
    67 GB with its text encoders), the run is refused with the fix. On a GPU, bf16 must be native
    (Ampere or newer): fp16 overflows FLUX's activations, and fp32 weights do not fit.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise TrainingError(f"The device {device!r} is not known; use auto, cpu or cuda.")
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise TrainingError("The spec asks for a CUDA GPU but torch sees none; use device auto or cpu.")
    if device == "auto" and not cuda:
        _refuse_cpu_fallback(transformer_params)
    chosen = torch.device("cuda" if device == "cuda" or (device == "auto" and cuda) else "cpu")
    if chosen.type == "cpu":
        torch.set_num_threads(num_threads or 1)
    elif num_threads:
        torch.set_num_threads(num_threads)
    if chosen.type == "cuda" and not _native_bf16():
        name = torch.cuda.get_device_name(chosen)
        cc = "{}.{}".format(*torch.cuda.get_device_capability(chosen))
        raise TrainingError(f"The {name} (compute capability {cc}) cannot compute in bf16, which FLUX.1-dev needs "
                            "(fp16 overflows its activations); use an Ampere (RTX 30xx, A100) or newer GPU.")
    dtype = torch.bfloat16 if chosen.type == "cuda" else torch.float32
    log.info("runtime_resolved", device=str(chosen), dtype=str(dtype), threads=torch.get_num_threads())
    return Runtime(chosen, dtype)


CPU_LIMIT_PARAMS = 1_000_000_000  # the tiny fast-test model has 81,664; FLUX.1-dev 11.9 billion


def _refuse_cpu_fallback(transformer_params: int | None) -> None:
    from isengard_desktop.base.mode import detect_gpu

    gpu = detect_gpu()
    if gpu.present:
        raise TrainingError(
            f"This machine has an NVIDIA GPU ({gpu.summary}) but the app's torch {torch.__version__} cannot use it "
            "(a CPU-only build, or one this driver does not run); run `isengard doctor` and apply its torch fix "
            "instead of training on the CPU.")
    if transformer_params is not None and transformer_params > CPU_LIMIT_PARAMS:
        gb = transformer_params * 4 / 1024**3
        raise TrainingError(
            f"No CUDA GPU here, and this base model's transformer alone would need {gb:.0f} GB of RAM in fp32 on the "
            "CPU (and days per run); train on a machine with an NVIDIA GPU, or use fast-test mode with the tiny model.")


def _native_bf16() -> bool:
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # older torch: no emulation argument, and no emulation
        return bool(torch.cuda.is_bf16_supported())


def cuda_free_bytes(runtime: Runtime) -> int | None:
    if runtime.device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(runtime.device)
    return int(free)


def cuda_card(runtime: Runtime) -> Any:
    """The training GPU for the memory plan, measured from inside this process (whose CUDA context is then
    counted in what is used), with whether it drives a display."""
    from isengard_desktop.base.gpu_cards import query_displays
    from isengard_desktop.base.memory_plan import Card

    free, total = torch.cuda.mem_get_info(runtime.device)
    index = runtime.device.index if runtime.device.index is not None else torch.cuda.current_device()
    gib = 1024**3
    return Card(total / gib, (total - free) / gib, query_displays().get(index, False),
                torch.cuda.get_device_name(runtime.device), tuple(torch.cuda.get_device_capability(runtime.device)),
                context_in_used=True)


def has_bitsandbytes() -> bool:
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None


def settle_imports() -> None:
    """Take what is loaded so far (torch, diffusers and transformers: their modules, classes and functions, all
    kept until the worker ends) out of the garbage collector's full passes. A full pass walks that whole heap
    again, 0.2 s on this machine, each time the models' memory is given back (E5); what the run creates from here
    on is collected as before."""
    import gc

    gc.freeze()


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


def load_transformer(base_model: Path, runtime: Runtime, quantization: str = "bf16") -> torch.nn.Module:
    """The frozen FLUX transformer; ``quantization`` "nf4" (the memory plan's choice) stores it in 4 bit.

    NF4 through bitsandbytes with bf16 compute is the QLoRA recipe diffusers publishes for FLUX.1-dev
    (about 9 GB peak at 512x768): the weights are dequantized to bf16 per layer, so activations keep
    bf16's range. (LLM.int8, used before, computes its matmuls in fp16, whose range FLUX's activations
    exceed.) The LoRA stays in full precision on top (peft supports bitsandbytes 4-bit layers).
    """
    from diffusers import FluxTransformer2DModel

    options: dict[str, Any] = {"subfolder": "transformer", "torch_dtype": runtime.dtype}
    quantized = runtime.device.type == "cuda" and quantization == "nf4"
    if quantized:
        if not has_bitsandbytes():  # the plan only chooses nf4 with bitsandbytes present: never silently bf16
            raise TrainingError("The 4-bit transformer needs bitsandbytes, which is not installed in the app's "
                                "environment; install it with `pip install bitsandbytes` and start again.")
        from diffusers import BitsAndBytesConfig

        options["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=runtime.dtype)
    transformer = FluxTransformer2DModel.from_pretrained(base_model, **options)
    transformer.requires_grad_(False)
    if not quantized:  # a bitsandbytes model is placed on the GPU while it loads and cannot be moved
        transformer.to(runtime.device)
    if runtime.device.type == "cuda":
        # Recompute activations in the backward pass instead of keeping them: memory over speed.
        transformer.enable_gradient_checkpointing()
    transformer.train()
    log.info("transformer_loaded", quantization=quantization if quantized else str(runtime.dtype),
             device=str(runtime.device))
    return transformer


def make_optimizer(
    params: list[torch.nn.Parameter], learning_rate: float, runtime: Runtime, optimizer: str = "adamw"
) -> torch.optim.Optimizer:
    """AdamW; "adamw8bit" (the plan's choice on a GPU) is bitsandbytes' AdamW8bit, a quarter of the state."""
    options = {"lr": learning_rate, "betas": ADAM_BETAS, "weight_decay": ADAM_WEIGHT_DECAY, "eps": ADAM_EPS}
    if runtime.device.type == "cuda" and optimizer == "adamw8bit":
        if not has_bitsandbytes():
            raise TrainingError("8-bit AdamW needs bitsandbytes, which is not installed in the app's environment; "
                                "install it with `pip install bitsandbytes` and start again.")
        import bitsandbytes

        log.info("optimizer_chosen", optimizer="AdamW8bit")
        return bitsandbytes.optim.AdamW8bit(params, **options)
    log.info("optimizer_chosen", optimizer="AdamW")
    return torch.optim.AdamW(params, **options)
