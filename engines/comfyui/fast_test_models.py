"""Tiny random-weight models for the embedded ComfyUI: fast-test mode's base model, and the tests' toggle models.

ComfyUI decides a model's family from its key names and widths, and fixes FLUX's widths when it detects it
(hidden 3072, 24 heads, T5-XXL's 4.76B parameters: ~7 GB and minutes per prompt on a CPU), so the built-in
engine's tiny FLUX (engines/diffusers/tiny_model.py) cannot be handed to ComfyUI. Fast-test gives ComfyUI a
tiny SD1.5-architecture checkpoint instead: the UNet keeps SD1.5's model_channels 320 and context 768 but has
one level with one res block and one transformer; CLIP-L and the SD VAE stay full size (ComfyUI reads their
configs, not the file's). About 930 MB, built once in about a minute; ComfyUI detects it as SD15 and samples
64 px in about a second. LoRAs trained in fast-test are for the tiny FLUX and are refused on it with the reason.

The Advanced toggles' models are built the same way, each in the shape its loader accepts (random weights):
an ESRGAN (RRDBNet) upscaler for spandrel, a ControlNet for the tiny checkpoint's UNet, and a YOLOv8 detector
built from ultralytics' architecture file, saved as the .pt the Impact-Subpack's loader opens.

The builders run in ComfyUI's own python (they use ComfyUI's model classes for the key names, and its venv's
spandrel and ultralytics): ``python fast_test_models.py COMFYUI_CHECKOUT MODELS_DIR KIND...``. The app calls
``ensure`` from a worker process (never from the GUI process), which runs that script once per missing file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Where each built file goes, relative to the volume's models folder (ComfyUI's model folders point there).
FILES = {
    "checkpoint": "checkpoints/isengard-fast-test-sd15.safetensors",
    "upscale": "upscale_models/isengard-fast-test-esrgan-2x.safetensors",
    "controlnet": "controlnet/isengard-fast-test-sd15-controlnet.safetensors",
    "detector": "ultralytics/bbox/isengard-fast-test-face_yolov8n.pt",
}
CHECKPOINT_NAME = Path(FILES["checkpoint"]).name
# The base model a fast-test request names (ComfyUIEngine.base_model declares it): the worker builds and uses the
# tiny checkpoint.
MARKER = "comfyui-fast-test"
BUILD_TIMEOUT_S = 900


class BuildFailed(Exception):
    """The builder script failed; the message has the end of its output."""


def ensure(models_dir: Path, checkout: Path, python: Path, kinds: tuple[str, ...] = ("checkpoint",)) -> dict[str, Path]:
    """The files of ``kinds`` in ``models_dir``, built first (once) with ComfyUI's python when missing.

    Each file is written under a temporary name and renamed into place by the builder, so a crash or a
    concurrent build never leaves a half-written model under the name ComfyUI lists.
    """
    paths = {kind: Path(models_dir) / FILES[kind] for kind in kinds}
    missing = [kind for kind, path in paths.items() if not path.is_file()]
    if missing:
        try:
            done = subprocess.run([str(python), str(Path(__file__).resolve()), str(checkout), str(models_dir),
                                   *missing], cwd=checkout, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BuildFailed(f"ComfyUI's python could not build the fast-test models: {exc}") from exc
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise BuildFailed("ComfyUI's python could not build the fast-test models: " + " / ".join(tail))
    return paths


def random_state(module, dtype, scale: float = 0.02, seed: int = 0) -> dict:
    """Random values for every tensor of a module built with ComfyUI's classes.

    ComfyUI builds its layers without initialising them (``comfy.ops.disable_weight_init``): their tensors hold
    whatever memory held, NaN included. A seeded normal draw for matrices and convolutions, ones for norm
    scales (found by the layer's class, not its name: a ResBlock's GroupNorm is ``in_layers.0``; at zero it
    silenced the whole UNet, whose every answer was then 0), zeros for other vectors.
    """
    import torch

    out = {}
    generator = torch.Generator().manual_seed(seed)
    norms = {f"{name}.weight" for name, layer in module.named_modules() if "norm" in type(layer).__name__.lower()}
    for key, value in module.state_dict().items():
        if value.dim() <= 1:
            is_scale = key.endswith(".scale") or key in norms or ("norm" in key and key.endswith(".weight"))
            tensor = torch.ones(value.shape) if is_scale else torch.zeros(value.shape)
        else:
            tensor = torch.randn(value.shape, generator=generator) * scale
        out[key] = tensor.to(dtype).contiguous()
    return out


# --- the builders: run in ComfyUI's python --------------------------------------------------------------------

UNET = {"image_size": 32, "in_channels": 4, "model_channels": 320, "num_res_blocks": [1], "channel_mult": (1,),
        "num_heads": 8, "use_spatial_transformer": True, "transformer_depth": [1], "transformer_depth_middle": 1,
        "context_dim": 768, "use_linear_in_transformer": False}


def _save(tensors: dict, out: Path, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    partial = out.with_name(out.name + ".partial")
    save_file(tensors, str(partial), metadata=metadata)
    partial.replace(out)


def build_checkpoint(out: Path) -> None:
    import comfy.ops
    import torch
    from comfy.ldm.models.autoencoder import AutoencoderKL
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNetModel(out_channels=4, transformer_depth_output=[1, 1], operations=comfy.ops.manual_cast, **UNET)
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
    _save(tensors, out)


def build_controlnet(out: Path) -> None:
    """A ControlNet with the tiny checkpoint's UNet layout (ComfyUI reads its config from the shapes). Its zero
    convolutions get random values too, so the control image visibly changes the picture."""
    import comfy.cldm.cldm
    import comfy.ops
    import torch

    net = comfy.cldm.cldm.ControlNet(hint_channels=3, operations=comfy.ops.disable_weight_init, device="meta",
                                     **UNET)
    tensors = random_state(net, torch.float16, 0.02, seed=7)
    # The outputs the UNet adds get unit-scale weights: at 0.02 the random UNet's answer moved by less than one
    # 8-bit level, and a test could not tell whether the control image reached it.
    loud = random_state(net, torch.float16, 1.0, seed=8)
    tensors |= {key: value for key, value in loud.items() if key.startswith(("zero_convs.", "middle_block_out."))}
    _save(tensors, out)


def build_upscaler(out: Path) -> None:
    """An ESRGAN (old-arch RRDBNet) 2x upscaler: 16 filters, one block; spandrel detects it from the keys.

    Random weights gave a flat picture; so three of the 16 feature channels carry the colours straight through
    (a centre tap of 1 in every convolution on the way, none from the random trunk): the result is the picture
    enlarged, as a person expects from Upscale, while the other channels and the RRDB block stay random."""
    import torch
    from spandrel import ModelLoader
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(3)
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=16, num_blocks=1, scale=2)
    first, trunk, up, hr, last = net.model[0], net.model[1].sub[-1], net.model[3], net.model[5], net.model[7]
    with torch.no_grad():
        last.weight.zero_()
        for conv in (first, trunk, up, hr, last):
            conv.weight[:3].zero_()
            conv.bias[:3].zero_()
        for conv in (first, up, hr, last):
            for channel in range(3):
                conv.weight[channel, channel, 1, 1] = 1.0
    tensors = {key: value.contiguous() for key, value in net.state_dict().items()}
    ModelLoader().load_from_state_dict(tensors)  # fails here, not in ComfyUI, if spandrel would not take it
    _save(tensors, out)


def build_detector(out: Path) -> None:
    """A one-class ("face") YOLOv8n built from ultralytics' architecture file, saved as the checkpoint
    ``YOLO(path)`` loads (the Impact-Subpack's loader).

    Random weights alone find nothing (the head starts near zero confidence), which would leave the detailing
    pass unrun; so the head is set to find exactly one face, the whole picture: the coarsest level answers
    "face" everywhere with its largest box, the finer ones never.
    """
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel, yaml_model_load

    torch.manual_seed(5)
    yolo = YOLO("yolov8n.yaml", task="detect")  # the architecture file ships with ultralytics: no download
    model = DetectionModel(yaml_model_load("yolov8n.yaml"), nc=1, verbose=False)
    model.names = {0: "face"}
    head = model.model[-1]
    with torch.no_grad():
        for level, (box, cls) in enumerate(zip(head.cv2, head.cv3, strict=True)):
            coarsest = level == len(head.cv2) - 1
            cls[-1].weight.zero_()
            cls[-1].bias.fill_(6.0 if coarsest else -20.0)
            box[-1].weight.zero_()
            box[-1].bias.zero_()
            if coarsest:  # every side at the last distance bin: a box larger than the picture, clipped to it
                box[-1].bias.view(4, head.reg_max)[:, -1] = 12.0
    yolo.model = model
    # Looked at 64 px, the coarsest level has 2x2 cells whose largest boxes all clip to the whole picture: one box
    # after suppression, whatever the picture's size (ultralytics letterboxes it to this size first).
    yolo.ckpt = {"train_args": {"task": "detect", "imgsz": 64}}
    partial = out.with_name(out.name + ".partial.pt")
    yolo.save(str(partial))
    partial.replace(out)


BUILDERS = {"checkpoint": build_checkpoint, "controlnet": build_controlnet, "upscale": build_upscaler,
            "detector": build_detector}


def _main(checkout: Path, models_dir: Path, kinds: list[str]) -> None:
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]  # our client.py etc. are not ComfyUI's
    sys.path.insert(0, str(checkout))
    sys.argv = [sys.argv[0], "--cpu"]  # comfy.model_management reads its options at import
    import comfy.options

    comfy.options.enable_args_parsing()
    for kind in kinds:
        out = models_dir / FILES[kind]
        out.parent.mkdir(parents=True, exist_ok=True)
        BUILDERS[kind](out)


if __name__ == "__main__":
    _main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
