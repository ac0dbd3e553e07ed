"""Which LoRAs touch the text encoders, read from the safetensors header: FLUX LoRAs from the app's trainers
(transformer only) get LoraLoaderModelOnly, so ComfyUI does not re-encode the prompt with T5 when only a
strength changes; kohya files with text-encoder weights keep the full LoraLoader."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from engines.comfyui.engine import touches_text_encoders


def test_transformer_only_and_text_encoder_loras_are_told_apart(tmp_path: Path) -> None:
    flux = tmp_path / "ada.safetensors"
    save_file({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(2, 4)}, str(flux))
    kohya = tmp_path / "kohya.safetensors"
    save_file({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": torch.zeros(2, 4),
               "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(2, 4)}, str(kohya))
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x01")
    assert not touches_text_encoders(flux)
    assert touches_text_encoders(kohya)
    assert touches_text_encoders(broken)  # unknown: ComfyUI's own loader decides, as without the app


def test_a_flux_lora_is_recognised_by_its_metadata_or_keys(tmp_path: Path) -> None:
    from engines.comfyui.engine import trained_for_flux

    ours = tmp_path / "ours.safetensors"
    save_file({"x.lora_A.weight": torch.zeros(1, 1)}, str(ours), metadata={"isengard.base_model": "FLUX.1-dev"})
    sdxl = tmp_path / "sdxl.safetensors"
    save_file({"x.lora_A.weight": torch.zeros(1, 1)}, str(sdxl), metadata={"isengard.base_model": "SDXL"})
    kohya_flux = tmp_path / "kohya.safetensors"
    save_file({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": torch.zeros(1, 1)}, str(kohya_flux))
    unknown = tmp_path / "unknown.safetensors"
    save_file({"lora_unet_down_blocks_0.lora_down.weight": torch.zeros(1, 1)}, str(unknown))
    assert trained_for_flux(ours) is True and trained_for_flux(kohya_flux) is True
    assert trained_for_flux(sdxl) is False and trained_for_flux(unknown) is None
