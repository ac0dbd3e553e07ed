"""FLUX.1-dev-shaped model files for ComfyUI (random weights, built locally, never committed) and a LoRA for them.

ComfyUI fixes FLUX's widths when it detects the model (hidden 3072, 24 heads, context 4096, vec 768), so
only the block counts can shrink: one double and one single block make a 545M-parameter diffusion
model (1.1 GB in bf16). T5-XXL's configuration is fixed too: 4.76B random parameters stored as fp8
(4.8 GB). CLIP-L and the 16-channel FLUX VAE are full size. The LoRA has diffusers/peft keys
(``transformer.transformer_blocks.0.attn.to_q.lora_A.weight``), as the app's trainers write them.

Run with ComfyUI's python (ComfyUI's own classes give the key names):
``python flux_shaped.py COMFYUI_CHECKOUT OUT_FOLDER``. Tests call ``ensure_flux_shaped``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FILES = {
    "diffusion_models": "flux1-dev-shaped.safetensors",
    "text_encoders_clip": "clip_l.safetensors",
    "text_encoders_t5": "t5xxl_fp8_e4m3fn.safetensors",
    "vae": "ae.safetensors",
    "loras": "flux-shaped-lora.safetensors",
}


def ensure_flux_shaped(folder: Path, checkout: Path, python: Path) -> dict[str, Path]:
    """The five files in ``folder`` (built once, several minutes and ~7 GB), by role."""
    paths = {role: folder / name for role, name in FILES.items()}
    if not all(path.is_file() for path in paths.values()):
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(python), __file__, str(checkout), str(folder)], check=True, cwd=checkout)
    return paths


# ComfyUI's folder for each file's role.
FOLDERS = {"diffusion_models": "diffusion_models", "text_encoders_clip": "text_encoders",
           "text_encoders_t5": "text_encoders", "vae": "vae", "loras": "loras"}


def copy_node_packs(checkout: Path, volume_root: Path) -> Path | None:
    """The pinned node packs `isengard engines install comfyui` put beside the checkout, copied into this volume's
    ComfyUI base folder (copied, not linked: a pack may write its settings into its own folder).

    Returns None when done, else the folder where the packs were looked for in vain."""
    import shutil

    from engines.comfyui.paths import base_dir

    installed = Path(checkout).parent / "base" / "custom_nodes"
    packs = [p for p in installed.iterdir() if p.is_dir()] if installed.is_dir() else []
    if not any(p.name == "ComfyUI-Impact-Pack" for p in packs):
        return installed
    for pack in packs:
        shutil.copytree(pack, base_dir(volume_root) / "custom_nodes" / pack.name, symlinks=True)
    return None


def start_comfyui_with(ctx: Any, files: dict[str, Path]) -> None:
    """Hard-link the FLUX-shaped files into the volume's model folders and start its ComfyUI (ready or fail)."""
    for role, path in files.items():
        folder = ctx.volume.models_dir / FOLDERS[role]
        folder.mkdir(parents=True, exist_ok=True)
        os.link(path, folder / path.name)
    start_comfyui(ctx)


def start_comfyui(ctx: Any, timeout: float = 180.0) -> None:
    """Start the context's ComfyUI and wait until it is ready (the test fails with its reason when it is not)."""
    ctx.start_service("comfyui")
    service = ctx.service("comfyui")
    deadline = time.monotonic() + timeout
    while service.status().state == "starting" and time.monotonic() < deadline:
        time.sleep(0.3)
    assert service.status().state == "ready", service.status().detail


def flux_image(ctx: Any, lora: Path | None, strength: float = 1.0,
               advanced: dict[str, dict[str, Any]] | None = None) -> Any:
    """One 2-step FLUX picture from ComfyUI through the job manager, as an int16 RGB array.

    Fast-test sizes, but the FLUX files in the folders ("auto"), not fast-test's tiny SD1.5 checkpoint.
    ``lora`` is a file in the volume's loras folder.
    """
    import numpy as np
    from PIL import Image

    from isengard_desktop.core import generation

    loras = []
    if lora is not None:
        loras = [(generation.LoraOption(1, None, "flux-shaped", ctx.volume.loras_dir / lora.name, "FLUX.1-dev",
                                        "diffusers", 1, ""), strength)]
    request = generation.build_request(ctx.volume, ctx.mode, "comfyui", "a portrait photo", loras, seed=5, steps=2,
                                       advanced=advanced)
    request.base_model, request.base_model_name = "auto", "FLUX.1-dev"  # ComfyUI picks FLUX's files from its folders
    final = ctx.jobs.wait(ctx.jobs.submit("generation", "comfyui", request.to_dict()).id, timeout=900)
    assert final.state == "succeeded", final.error
    with Image.open(final.result["images"][0]) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def build(checkout: Path, folder: Path) -> None:
    sys.path.insert(0, str(checkout))
    sys.argv = [sys.argv[0], "--cpu"]
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.ops
    import torch
    from comfy.ldm.flux.model import Flux
    from comfy.ldm.modules.diffusionmodules.model import Decoder, Encoder
    from comfy.text_encoders.t5 import T5
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the app's root, for its engines package
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from engines.comfyui.fast_test_models import random_state

    ops = comfy.ops.disable_weight_init

    def missing(role: str) -> bool:  # a file already built is kept (T5 alone takes minutes)
        return not (folder / FILES[role]).is_file()

    flux = None
    if missing("diffusion_models"):
        flux = Flux(in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096, hidden_size=3072,
                    mlp_ratio=4.0, num_heads=24, depth=1, depth_single_blocks=1, axes_dim=[16, 56, 56], theta=10000,
                    patch_size=2, qkv_bias=True, guidance_embed=True, device="meta", operations=ops)
    if flux is not None:
        save_file(random_state(flux, torch.bfloat16), str(folder / FILES["diffusion_models"]))
        del flux
    if missing("text_encoders_t5"):
        config = json.loads((checkout / "comfy" / "text_encoders" / "t5_config_xxl.json").read_text())
        t5 = T5(config, dtype=torch.float32, device="meta", operations=ops)
        save_file(random_state(t5, torch.float8_e4m3fn, scale=0.05), str(folder / FILES["text_encoders_t5"]))
        del t5

    clip = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                        num_hidden_layers=12, max_position_embeddings=77, vocab_size=49408,
                                        projection_dim=768, hidden_act="quick_gelu"))
    # ComfyUI routes a text encoder file by its keys: CLIP-L's start with "text_model." (recent transformers
    # releases leave that prefix out of CLIPTextModel's state dict).
    save_file({(k if k.startswith("text_model.") else f"text_model.{k}"): v.to(torch.float16).contiguous()
               for k, v in clip.state_dict().items()}, str(folder / FILES["text_encoders_clip"]))

    ddconfig = {"double_z": True, "z_channels": 16, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    vae = {f"encoder.{k}": v for k, v in random_state(Encoder(**ddconfig), torch.float16, 0.02, seed=2).items()}
    vae |= {f"decoder.{k}": v for k, v in random_state(Decoder(**ddconfig), torch.float16, 0.02, seed=3).items()}
    save_file(vae, str(folder / FILES["vae"]))

    generator = torch.Generator().manual_seed(1)
    lora = {}
    for module in ("to_q", "to_k", "to_v", "to_out.0"):
        base = f"transformer.transformer_blocks.0.attn.{module}"
        lora[f"{base}.lora_A.weight"] = (torch.randn(8, 3072, generator=generator) * 0.05).to(torch.bfloat16)
        lora[f"{base}.lora_B.weight"] = (torch.randn(3072, 8, generator=generator) * 0.05).to(torch.bfloat16)
    save_file(lora, str(folder / FILES["loras"]), metadata={"format": "pt"})


if __name__ == "__main__":
    build(Path(sys.argv[1]), Path(sys.argv[2]))
