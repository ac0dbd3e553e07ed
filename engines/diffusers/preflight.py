"""Checks before training starts, cheap enough to run before any model is loaded.

Each problem is one sentence naming the thing, the reason and what to do. Sizes are estimated from
the model's config and the safetensors headers (a few kilobytes read), never from loading weights.
GPU memory is judged by the memory plan (isengard_desktop/base/memory_plan.py), phase by phase: text
encoders, VAE, transformer with LoRA, gradients, optimizer state, activations at the run's largest
resolution, the CUDA context and what other programs hold on the card; its settings (a 4-bit transformer,
smaller resolutions) are what the trainer then uses, and a plan that cannot fit stops the run before
minutes of text encoding and latent caching.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from engines.interface import TrainingSpec

if TYPE_CHECKING:
    from isengard_desktop.base.memory_plan import Card, Plan

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


def disk_needed(spec: TrainingSpec) -> int:
    """Bytes the run writes at its peak: KEEP checkpoints plus one being written, the final LoRA, caches."""
    from engines.diffusers.checkpoint import KEEP

    params = lora_parameters(Path(spec.base_model), spec.rank)
    checkpoint = params * (4 + 8)  # fp32 LoRA + AdamW's two fp32 moments
    return checkpoint * (KEEP + 1) + params * 4 + MARGIN


def preflight(spec: TrainingSpec) -> list[str]:
    """Every problem that would stop this run before the GPU is asked, as sentences; an empty list means go."""
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
    return problems


PLAN_FILE = "memory_plan.json"


def memory_plan(spec: TrainingSpec, card: Card, bitsandbytes: bool) -> Plan:
    """The plan of this run on ``card`` (the trainer's GPU, measured from inside the worker).

    A resumed run keeps the resolutions its first start chose (the data order of its checkpoints
    depends on them), so the saved plan's resolutions are planned again rather than the spec's.
    """
    from isengard_desktop.base.memory_plan import ModelSizes
    from isengard_desktop.base.spec_plan import plan_for_spec

    saved = Path(spec.output_dir) / PLAN_FILE
    if spec.resume and saved.is_file():
        earlier = json.loads(saved.read_text(encoding="utf-8"))
        spec = replace(spec, resolutions=list(earlier["settings"]["resolutions"]))
    return plan_for_spec(spec, "diffusers", card, ModelSizes.from_folder(Path(spec.base_model)), bitsandbytes)


def save_plan(spec: TrainingSpec, plan: Plan) -> None:
    from isengard_desktop.base import atomic

    atomic.write_text(Path(spec.output_dir) / PLAN_FILE, json.dumps(plan.to_json(), indent=2))
