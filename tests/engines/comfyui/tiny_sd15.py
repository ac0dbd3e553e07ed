"""A tiny SD1.5-architecture single-file checkpoint for tests against a real ComfyUI (built, never committed).

ComfyUI decides a checkpoint's family from its key names and widths, so the UNet keeps SD1.5's
model_channels 320 and context 768 but has one level with one res block and one transformer; CLIP-L
and the SD VAE stay at full size (ComfyUI reads their configs, not the file's). Random weights from
a fixed seed: ComfyUI detects it as SD15 and samples 64 px in about a second on a CPU. About 930 MB.

Run with ComfyUI's own python (it uses ComfyUI's model classes for the key names):
``python tiny_sd15.py COMFYUI_CHECKOUT OUT.safetensors``. Tests call ``ensure_tiny_sd15``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

NAME = "tiny-sd15.safetensors"


def ensure_tiny_sd15(folder: Path, checkout: Path, python: Path) -> Path:
    """The checkpoint in ``folder``, built once (a minute) and reused by later runs."""
    target = folder / NAME
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        subprocess.run([str(python), __file__, str(checkout), str(partial)], check=True, cwd=checkout)
        partial.replace(target)
    return target


def build(checkout: Path, out: Path) -> None:
    sys.path.insert(0, str(checkout))
    sys.argv = [sys.argv[0], "--cpu"]  # comfy.model_management reads its options at import
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.ops
    import torch
    from comfy.ldm.models.autoencoder import AutoencoderKL
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    from random_weights import random_state  # beside this file: the script's folder is on sys.path
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNetModel(image_size=32, in_channels=4, model_channels=320, out_channels=4, num_res_blocks=[1],
                     channel_mult=(1,), num_heads=8, use_spatial_transformer=True, transformer_depth=[1],
                     transformer_depth_middle=1, transformer_depth_output=[1, 1], context_dim=768,
                     use_linear_in_transformer=False, operations=comfy.ops.manual_cast)
    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    vae = AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
    clip = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                        num_hidden_layers=12, max_position_embeddings=77, vocab_size=49408,
                                        projection_dim=768, hidden_act="quick_gelu"))
    tensors = {}
    for number, (prefix, module) in enumerate((("model.diffusion_model.", unet), ("first_stage_model.", vae))):
        tensors |= {prefix + k: v for k, v in random_state(module, torch.float16, 0.02, seed=number).items()}
    for key, value in clip.state_dict().items():  # transformers initialises its own weights
        tensors["cond_stage_model.transformer." + key] = value.to(torch.float16).contiguous()
    save_file(tensors, str(out))


if __name__ == "__main__":
    build(Path(sys.argv[1]), Path(sys.argv[2]))
