"""The FLUX-shaped model of ``flux_shaped.py`` as a diffusers folder, for AI-Toolkit to train a LoRA on.

Its transformer holds the very weights of ComfyUI's ``flux1-dev-shaped.safetensors`` (full FLUX widths, one
double and one single block), converted to diffusers' layout with diffusers' own converter, so a LoRA that
AI-Toolkit trains here fits the model ComfyUI loads. The text encoders only need FLUX's output widths (CLIP
pooled 768, T5 4096): they are the tiny model's, widened and one layer deep, with its tokenizers. The VAE is
the tiny model's (16 latent channels, 8x down, as FLUX's). Stored in bf16 (1.1 GB); AI-Toolkit trains in fp32.

Run with the app's python: ``python flux_shaped_diffusers.py COMFYUI_FLUX_FILE OUT_FOLDER``.
Tests call ``ensure_flux_shaped_diffusers``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

VERSION = 2  # part of the cache folder's name: bump when the build changes


def ensure_flux_shaped_diffusers(cache: Path, comfyui_flux: Path) -> Path:
    """The diffusers folder under ``cache`` (built once from ``comfyui_flux``, about a minute)."""
    folder = cache / f"flux-shaped-diffusers-v{VERSION}"
    if not (folder / "model_index.json").is_file():
        staging = cache / f"{folder.name}.partial"
        subprocess.run([sys.executable, __file__, str(comfyui_flux), str(staging)], check=True,
                       cwd=Path(__file__).resolve().parents[3])
        staging.rename(folder)
    return folder


def build(comfyui_flux: Path, dest: Path) -> None:
    import torch
    from diffusers import FluxPipeline, FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers
    from safetensors.torch import load_file
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from engines.diffusers import tiny_model

    components = tiny_model._components()  # scheduler, VAE and tokenizers as the tiny model's
    with torch.device("meta"):
        transformer = FluxTransformer2DModel(
            patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=128,
            num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
            axes_dims_rope=(16, 56, 56))
    state = convert_flux_transformer_checkpoint_to_diffusers(load_file(str(comfyui_flux)))
    transformer.load_state_dict(state, strict=True, assign=True)
    clip = components["text_encoder"].config.to_dict()
    t5 = components["text_encoder_2"].config.to_dict()
    torch.manual_seed(4)
    components["text_encoder"] = CLIPTextModel(CLIPTextConfig(**{
        **clip, "hidden_size": 768, "projection_dim": 768, "num_hidden_layers": 1, "num_attention_heads": 2}))
    components["text_encoder_2"] = T5EncoderModel(T5Config(**{**t5, "d_model": 4096, "num_layers": 1}))
    components["transformer"] = transformer
    pipe = FluxPipeline(**components)
    pipe.to(torch.bfloat16)
    pipe.save_pretrained(dest, safe_serialization=True)
    tiny_model._portable_tokenizer_configs(dest)
    tiny_model.portable_clip_keys(dest)  # AI-Toolkit's transformers 4 reads CLIP's keys only with their prefix


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the app's root, for its engines package
    build(Path(sys.argv[1]), Path(sys.argv[2]))
