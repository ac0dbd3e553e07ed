"""Toggle and base-model readiness: each toggle ready, or a sentence naming exactly what is missing and what to do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engines.comfyui.readiness import base_model_readiness, default_toggle_options, toggle_readiness

HERE = Path(__file__).parent
CORE = json.loads((HERE / "fixtures" / "object_info_core.json").read_text())
CUSTOM = {k: v for k, v in json.loads((HERE / "fixtures" / "object_info_custom.json").read_text()).items()
          if k != "_source"}
ALL_NODES = CORE | CUSTOM
ALL_MODELS = {"upscale_models": ["4x-UltraSharp.pth"], "controlnet": ["flux-union.safetensors"],
              "ipadapter-flux": ["ip-adapter.bin"],
              "clip_vision": ["siglip-so400m-patch14-384/model.safetensors", "siglip-so400m-patch14-384/config.json"],
              "ultralytics_bbox": ["hand_yolov8s.pt", "face_yolov8m.pt"], "sams": []}


def test_everything_ready() -> None:
    ready = toggle_readiness(ALL_NODES, ALL_MODELS)
    assert {name: state.available for name, state in ready.items()} == \
        {"upscale": True, "controlnet": True, "ipadapter": True, "facedetailer": True}
    assert ready["facedetailer"].reason == "Uses face_yolov8m.pt."
    assert default_toggle_options("facedetailer", ALL_MODELS) == {"model": "face_yolov8m.pt"}
    assert default_toggle_options("upscale", {}) == {}


@pytest.mark.parametrize(("toggle", "folder", "sentence"), [
    ("upscale", "upscale_models", "Upscale needs an upscale model (e.g. 4x-UltraSharp.pth) in the volume's "
                                  "models/upscale_models folder: copy it into that folder"),
    ("controlnet", "controlnet", "ControlNet needs a FLUX.1-dev ControlNet model"),
    ("ipadapter", "ipadapter-flux", "IP-Adapter needs the InstantX FLUX.1-dev IP-Adapter (ip-adapter.bin from "
                                    "InstantX/FLUX.1-dev-IP-Adapter) in the volume's models/ipadapter-flux folder"),
    ("ipadapter", "clip_vision", "IP-Adapter needs the SigLIP image encoder (the google/siglip-so400m-patch14-384 "
                                 "folder from Hugging Face, as siglip-so400m-patch14-384/) in the volume's "
                                 "models/clip_vision folder"),
    ("facedetailer", "ultralytics_bbox", "FaceDetailer needs a face detection model (e.g. face_yolov8m.pt) in the "
                                         "volume's models/ultralytics/bbox folder"),
])
def test_a_missing_model_is_named(toggle: str, folder: str, sentence: str) -> None:
    state = toggle_readiness(ALL_NODES, {**ALL_MODELS, folder: []})[toggle]
    assert not state.available
    assert state.reason.startswith(sentence), state.reason
    assert state.reason.endswith("then press Check again.")


@pytest.mark.parametrize(("toggle", "absent", "sentence"), [
    ("ipadapter", ["IPAdapterFluxLoader"], "IP-Adapter needs the ComfyUI-IPAdapter-Flux node pack (ComfyUI lacks "
                                           "IPAdapterFluxLoader): install the ComfyUI engine again with "
                                           "`isengard engines install comfyui`"),
    ("facedetailer", ["FaceDetailer", "SAMLoader"], "FaceDetailer needs the ComfyUI-Impact-Pack node pack"),
    ("facedetailer", ["UltralyticsDetectorProvider"], "FaceDetailer needs the ComfyUI-Impact-Subpack node pack"),
    ("upscale", ["ImageUpscaleWithModel"], "Upscale needs ComfyUI's ImageUpscaleWithModel node: this ComfyUI is "
                                           "incomplete"),
    ("controlnet", ["ControlNetApplyAdvanced"], "ControlNet needs ComfyUI's ControlNetApplyAdvanced node"),
])
def test_a_missing_node_pack_is_named(toggle: str, absent: list[str], sentence: str) -> None:
    nodes = {name: value for name, value in ALL_NODES.items() if name not in absent}
    state = toggle_readiness(nodes, ALL_MODELS)[toggle]
    assert not state.available
    assert state.reason.startswith(sentence), state.reason


def test_a_core_only_comfyui_has_upscale_and_controlnet_only() -> None:
    ready = toggle_readiness(CORE, ALL_MODELS)
    assert ready["upscale"].available and ready["controlnet"].available
    assert not ready["ipadapter"].available and not ready["facedetailer"].available
    assert "isengard engines install comfyui" in ready["facedetailer"].reason


def test_base_model_readiness() -> None:
    flux = {"diffusion_models": ["flux1-dev.safetensors"], "text_encoders": ["clip_l.safetensors",
                                                                            "t5xxl_fp16.safetensors"],
            "vae": ["ae.safetensors"]}
    state = base_model_readiness(flux)
    assert state.available and "flux1-dev.safetensors" in state.reason
    missing = base_model_readiness({**flux, "text_encoders": ["clip_l.safetensors"]})
    assert not missing.available
    assert "add t5xxl_fp16.safetensors in models/text_encoders" in missing.reason
    assert base_model_readiness({"checkpoints": ["tiny-sd15.safetensors"]}).available
    assert not base_model_readiness({}).available
