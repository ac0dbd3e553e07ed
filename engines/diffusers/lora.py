"""The LoRA itself: which FLUX layers it adapts, and the portable file it is saved as.

The adapter sits on every attention and MLP projection of both the double-stream and the
single-stream blocks. The final file uses diffusers/peft key names (``transformer.<module>.lora_A.weight``
and ``lora_B.weight``), which diffusers' ``load_lora_weights`` and ComfyUI's LoRA loader both read.
Neither reads a trainer's alpha reliably, so the ``alpha / rank`` scale is multiplied into ``lora_B``
before saving: the file then means the same thing in every loader, with no alpha key at all.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import structlog
import torch
from safetensors.torch import save

from engines.diffusers.errors import TrainingError
from isengard_desktop.base import atomic

log = structlog.get_logger(__name__)

ADAPTER = "default"
# Module name suffixes inside FluxTransformerBlock (double) and FluxSingleTransformerBlock (single).
DOUBLE_TARGETS = (
    "attn.to_q",
    "attn.to_k",
    "attn.to_v",
    "attn.to_out.0",
    "attn.add_q_proj",
    "attn.add_k_proj",
    "attn.add_v_proj",
    "attn.to_add_out",
    "ff.net.0.proj",
    "ff.net.2",
    "ff_context.net.0.proj",
    "ff_context.net.2",
)
SINGLE_TARGETS = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp", "proj_out")


def target_modules(transformer: torch.nn.Module) -> list[str]:
    """Full names of the Linear layers to adapt.

    Full names rather than suffixes: a bare ``proj_out`` would also catch the transformer's final
    output projection, which is not part of any block and which other loaders do not expect.
    """
    wanted = {"transformer_blocks": DOUBLE_TARGETS, "single_transformer_blocks": SINGLE_TARGETS}
    names: list[str] = []
    for name, module in transformer.named_modules():
        parts = name.split(".", 2)
        if len(parts) == 3 and parts[0] in wanted and parts[2] in wanted[parts[0]]:
            if isinstance(module, torch.nn.Linear):
                names.append(name)
    if not names:
        raise TrainingError("The transformer has no FLUX blocks to put a LoRA on; is the base model a FLUX model?")
    return names


def add_lora(transformer: torch.nn.Module, rank: int, alpha: int) -> list[torch.nn.Parameter]:
    """Attach a fresh LoRA adapter (weights drawn from the global torch RNG) and return its parameters."""
    from peft import LoraConfig

    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        init_lora_weights="gaussian",  # as diffusers' FLUX DreamBooth script: lora_B starts at zero
        target_modules=target_modules(transformer),
    )
    transformer.add_adapter(config, adapter_name=ADAPTER)
    params = [p for p in transformer.parameters() if p.requires_grad]
    for param in params:
        # Trainable weights stay fp32 even when the frozen base runs in bf16: AdamW's small updates
        # would vanish in bf16's 8-bit mantissa.
        param.data = param.data.float()
    log.info(
        "lora_added",
        rank=rank,
        alpha=alpha,
        modules=len(config.target_modules),
        parameters=sum(p.numel() for p in params),
    )
    return params


def lora_state(transformer: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's tensors under peft's names, without the adapter name (``...to_q.lora_A.weight``)."""
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(transformer, adapter_name=ADAPTER)
    return {key: value.detach().float().cpu().contiguous() for key, value in state.items()}


def load_lora_state(transformer: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put saved adapter tensors back (resume); every key must match."""
    from peft.utils import set_peft_model_state_dict

    result = set_peft_model_state_dict(transformer, state, adapter_name=ADAPTER)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise TrainingError(f"The checkpoint's LoRA does not fit this model: unexpected keys {unexpected[:5]}.")


def portable_state(state: dict[str, torch.Tensor], rank: int, alpha: int) -> dict[str, torch.Tensor]:
    """Diffusers-format keys (``transformer.`` prefix) with ``alpha / rank`` baked into ``lora_B``."""
    from diffusers import FluxPipeline

    scale = alpha / rank
    baked = {
        key: (value * scale if scale != 1.0 and ".lora_B." in key else value).contiguous()
        for key, value in state.items()
    }
    return FluxPipeline.pack_weights(baked, "transformer")


def save_final_lora(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write the final LoRA file atomically, with ``format: pt`` as diffusers writes it, plus ``metadata``."""
    if any(not isinstance(v, str) for v in metadata.values()):
        raise TypeError("safetensors metadata values must all be strings")
    atomic.write_bytes(path, save(state, metadata={"format": "pt", **metadata}))
    log.info("lora_saved", path=str(path), tensors=len(state))


def engine_version() -> str:
    """The library versions that define what the engine trains, recorded in every LoRA it writes."""
    return "diffusers {} peft {} torch {}".format(
        *(importlib.metadata.version(name) for name in ("diffusers", "peft", "torch"))
    )
