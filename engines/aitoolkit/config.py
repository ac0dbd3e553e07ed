"""The app's TrainingSpec as an AI-Toolkit job config (the ``sd_trainer`` process, FLUX LoRA).

Pure data in, pure data out, so the mapping is tested with golden files. Alpha is always the rank:
AI-Toolkit saves no alpha keys, so a loader would read any other alpha as equal to the rank anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engines.interface import TrainingSpec

MAX_CHECKPOINTS = 3


def build_config(spec: TrainingSpec, dataset_dir: Path, training_folder: Path, device: str) -> dict[str, Any]:
    """The job config for ``run.py``; ``device`` is "cuda:0" or "cpu"."""
    gpu = device.startswith("cuda")
    low_vram = spec.low_vram and gpu
    size = max(spec.resolutions) if gpu else min(spec.resolutions)
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
            "resolution": list(spec.resolutions),
        }],
        "train": {
            "batch_size": spec.batch_size,
            "steps": spec.steps,
            "gradient_accumulation_steps": 1,
            "train_unet": True,
            "train_text_encoder": False,
            "gradient_checkpointing": gpu,
            "noise_scheduler": "flowmatch",
            "optimizer": "adamw8bit" if low_vram else "adamw",
            "lr": spec.learning_rate,
            "dtype": "bf16" if gpu else "fp32",
            "seed": spec.seed,
        },
        "model": {"name_or_path": spec.base_model, "is_flux": True, "quantize": low_vram},
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
