"""Checks before training starts, cheap enough to run before any model is loaded.

Each problem is one sentence naming the thing, the reason and what to do. Sizes are estimated from
the model's config and the safetensors headers (a few kilobytes read), never from loading weights.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

from engines.interface import TrainingSpec

MB = 1024 * 1024
GB = 1024 * MB
MARGIN = 256 * MB  # samples, latent and text caches, logs
# A rank-r LoRA on Linear(in, out) has r * (in + out) weights. Per block, in units of r * inner_dim:
DOUBLE_BLOCK = 8 * 2 + 4 * 5  # eight D->D projections, four MLP halves D<->4D
SINGLE_BLOCK = 3 * 2 + 5 + 6  # q, k, v; proj_mlp D->4D; proj_out 5D->D


def lora_parameters(base_model: Path, rank: int) -> int:
    """How many weights the LoRA will have, from the transformer's config."""
    config = json.loads((base_model / "transformer" / "config.json").read_text(encoding="utf-8"))
    inner = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    blocks = int(config["num_layers"]) * DOUBLE_BLOCK + int(config["num_single_layers"]) * SINGLE_BLOCK
    return blocks * rank * inner


def transformer_bytes(base_model: Path, bytes_per_param: int = 2) -> int:
    """The transformer's size once loaded with ``bytes_per_param`` per weight (bf16: 2)."""
    count = 0
    for path in sorted((base_model / "transformer").glob("*.safetensors")):
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        for name, info in header.items():
            if name != "__metadata__":
                size = 1
                for dim in info["shape"]:
                    size *= dim
                count += size
    return count * bytes_per_param


def disk_needed(spec: TrainingSpec) -> int:
    """Bytes the run writes at its peak: KEEP checkpoints plus one being written, the final LoRA, caches."""
    from engines.diffusers.checkpoint import KEEP

    params = lora_parameters(Path(spec.base_model), spec.rank)
    checkpoint = params * (4 + 8)  # fp32 LoRA + AdamW's two fp32 moments
    return checkpoint * (KEEP + 1) + params * 4 + MARGIN


def preflight(spec: TrainingSpec, cuda_free_bytes: int | None = None) -> list[str]:
    """Every problem that would stop this run, as sentences; an empty list means go.

    ``cuda_free_bytes`` is the free memory of the GPU the run will use (None on the CPU); the trainer
    passes it because asking CUDA needs torch, which this module does not import.
    """
    problems: list[str] = []
    base = Path(spec.base_model)
    if not (base / "model_index.json").is_file() or not (base / "transformer" / "config.json").is_file():
        problems.append(
            f"The base model folder {base} is not a diffusers FLUX model (no model_index.json or "
            "transformer/config.json); choose the FLUX.1-dev folder in Settings > Models."
        )
        return problems
    if not spec.dataset:
        problems.append("The dataset is empty: add photos to the character before training.")
    missing = [item.path for item in spec.dataset if not Path(item.path).is_file()]
    if missing:
        problems.append(f"{len(missing)} training image(s) are missing, e.g. {missing[0]}.")
    if spec.steps < 1:
        problems.append(f"The number of steps must be at least 1, not {spec.steps}.")
    if spec.rank < 1 or spec.alpha < 1:
        problems.append(f"Rank and alpha must be positive, not rank {spec.rank} and alpha {spec.alpha}.")
        return problems
    output = Path(spec.output_dir)
    existing = next((p for p in [output, *output.parents] if p.exists()), None)
    if existing is not None:
        free = shutil.disk_usage(existing).free
        need = disk_needed(spec)
        if free < need:
            problems.append(
                f"Not enough disk space in {existing}: the run needs about {need / GB:.1f} GB "
                f"and {free / GB:.1f} GB is free; free some space or move the volume."
            )
    if cuda_free_bytes is not None:
        # Low-VRAM mode stores the frozen transformer in 8 bit (models.load_transformer).
        bytes_per_param = 1 if spec.low_vram else 2
        weights = transformer_bytes(base, bytes_per_param)
        if weights > cuda_free_bytes:
            precision = "8 bit" if spec.low_vram else "bf16"
            advice = "" if spec.low_vram else " or choose the Quick or Balanced preset (low-VRAM mode)"
            problems.append(
                f"The GPU has {cuda_free_bytes / GB:.1f} GB free but the base model's transformer "
                f"alone needs {weights / GB:.1f} GB in {precision}; close other GPU programs{advice}, or use a "
                "GPU with more memory."
            )
    return problems
