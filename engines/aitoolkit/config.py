"""The app's TrainingSpec as an AI-Toolkit job config (the ``sd_trainer`` process, FLUX LoRA).

Pure data in, pure data out, so the mapping is tested with golden files. Alpha is always the rank:
AI-Toolkit saves no alpha keys, so a loader would read any other alpha as equal to the rank anyway.

On a GPU the memory plan (isengard_desktop/base/memory_plan.py) decides the memory settings written
here: ``model.quantize`` (8-bit qfloat8 transformer), ``model.quantize_te`` (T5 too; AI-Toolkit's default
follows ``quantize``, written out so that a preset without quantization does not keep T5 in bf16 by
accident), ``model.low_vram`` (quantize on the CPU: when the card drives a display, as AI-Toolkit's README
asks, or when its free memory is below the bf16 transformer's 22 GiB) and the resolutions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engines.interface import TrainingSpec

MAX_CHECKPOINTS = 3


def build_config(spec: TrainingSpec, dataset_dir: Path, training_folder: Path, device: str,
                 settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The job config for ``run.py``; ``device`` is "cuda:0" or "cpu"; ``settings`` are a memory plan's
    (quantize, quantize_te, low_vram, optimizer, resolutions), else the spec's as configured."""
    gpu = device.startswith("cuda")
    quantized = spec.low_vram and gpu
    memory = {"quantize": quantized, "quantize_te": quantized, "low_vram": False,
              "optimizer": "adamw8bit" if quantized else "adamw", "resolutions": list(spec.resolutions)}
    if gpu and settings:
        memory.update({key: settings[key] for key in memory if key in settings})
    resolutions = [int(r) for r in memory["resolutions"]]
    size = max(resolutions) if gpu else min(resolutions)
    process = {
        "type": "sd_trainer",
        "training_folder": str(training_folder),
        "device": device,
        "network": {"type": "lora", "linear": spec.rank, "linear_alpha": spec.rank},
        "save": {"dtype": "float16" if gpu else "float32", "save_every": spec.save_every,
                 "max_step_saves_to_keep": MAX_CHECKPOINTS},
        "datasets": [{
            "folder_path": str(dataset_dir),
            "caption_ext": "txt",
            # Dropping the caption now and then teaches the LoRA the face, not only the words; on the CPU
            # (fast-test) runs are too short for it to matter and must be repeatable.
            "caption_dropout_rate": 0.05 if gpu else 0.0,
            "cache_latents_to_disk": True,
            "resolution": resolutions,
        }],
        "train": {
            "batch_size": spec.batch_size,
            "steps": spec.steps,
            "gradient_accumulation_steps": 1,
            "train_unet": True,
            "train_text_encoder": False,
            "gradient_checkpointing": gpu,
            "noise_scheduler": "flowmatch",
            "optimizer": memory["optimizer"],
            "lr": spec.learning_rate,
            "dtype": "bf16" if gpu else "fp32",
            "seed": spec.seed,
        },
        "model": {"name_or_path": spec.base_model, "is_flux": True, "quantize": memory["quantize"],
                  "quantize_te": memory["quantize_te"], "low_vram": memory["low_vram"]},
        "sample": {
            "sampler": "flowmatch",
            "sample_every": spec.sample_every,
            "width": size,
            "height": size,
            "prompts": list(spec.sample_prompts),
            "neg": "",
            "seed": spec.sample_seed,
            "walk_seed": True,
            "guidance_scale": 4,
            "sample_steps": spec.sample_steps,
        },
        "logging": {"log_every": 1, "use_ui_logger": True},
    }
    return {"job": "extension", "config": {"name": spec.lora_name, "process": [process]},
            "meta": {"name": spec.lora_name, "version": "1.0"}}


def plan_run(spec: TrainingSpec) -> Any:
    """The memory plan of this run on this machine's training GPU (nvidia-smi, no torch), or None without one."""
    from isengard_desktop.base.gpu_cards import training_card
    from isengard_desktop.base.spec_plan import plan_for_spec

    card = training_card(fresh=True)
    if card is None:
        return None
    return plan_for_spec(spec, "aitoolkit", card)
