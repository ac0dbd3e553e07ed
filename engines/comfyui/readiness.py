"""What can run in this ComfyUI: the base model files its folders hold and the Advanced toggles.

Pure functions over what the running server reports (GET /object_info lists the loaded node classes,
GET /models/<folder> the files of a model folder), so every verdict is decided before a run starts
and each "not ready" names exactly what is missing and where to put it.
"""

from __future__ import annotations

from engines.comfyui.workflow import ModelChoice
from engines.interface import Availability

MODEL_FOLDERS = ("checkpoints", "diffusion_models", "text_encoders", "vae", "loras", "upscale_models", "controlnet")
WHERE = "the volume's models/{folder} folder (or the ComfyUI models folder added in Settings)"
NODE_PACKS = {
    "ipadapter": ("IP-Adapter for FLUX", "the XLabs-AI/x-flux-comfyui node pack with its FLUX IP-Adapter and "
                                         "CLIP-vision models"),
    "facedetailer": ("FaceDetailer", "the ltdrdata/ComfyUI-Impact-Pack and ComfyUI-Impact-Subpack node packs "
                                     "with a face detection model"),
}


def _first(files: list[str], *needles: str) -> str:
    """The first file whose lower-cased name contains every needle, preferring the later needles' order."""
    for name in sorted(files):
        lower = name.lower()
        if all(needle in lower for needle in needles):
            return name
    return ""


def choose_models(models: dict[str, list[str]], wanted: str = "auto") -> ModelChoice | str:
    """FLUX.1-dev's four files, or a single-file checkpoint; a sentence saying what to add when neither is there."""
    if wanted != "auto":
        if wanted in models.get("checkpoints", []):
            return ModelChoice(checkpoint=wanted)
        if wanted not in models.get("diffusion_models", []):
            return f"ComfyUI does not list the base model {wanted}; put it into {WHERE.format(folder='diffusion_models')}."
    unet = wanted if wanted != "auto" else (_first(models.get("diffusion_models", []), "flux", "dev")
                                            or _first(models.get("diffusion_models", []), "flux"))
    encoders = models.get("text_encoders", [])
    clip_l, t5 = _first(encoders, "clip_l"), _first(encoders, "t5xxl")
    vae = _first(models.get("vae", []), "ae.") or _first(models.get("vae", []), "flux")
    if unet and clip_l and t5 and vae:
        return ModelChoice(diffusion_model=unet, clip_l=clip_l, t5xxl=t5, vae=vae)
    checkpoints = models.get("checkpoints", [])
    if checkpoints and not unet:
        return ModelChoice(checkpoint=_first(checkpoints, "flux") or sorted(checkpoints)[0])
    missing = [what for what, found in (("flux1-dev.safetensors in models/diffusion_models", unet),
                                        ("clip_l.safetensors in models/text_encoders", clip_l),
                                        ("t5xxl_fp16.safetensors in models/text_encoders", t5),
                                        ("ae.safetensors in models/vae", vae)) if not found]
    return ("ComfyUI has no complete FLUX.1-dev in its model folders: add " + ", ".join(missing) +
            " (inside the volume, or point Settings at an existing ComfyUI models folder), or a single-file "
            "checkpoint in models/checkpoints.")


def toggle_readiness(object_info: dict, models: dict[str, list[str]]) -> dict[str, Availability]:
    """Each Advanced toggle: ready, or what to install or add first."""

    def nodes_missing(*names: str) -> list[str]:
        return [name for name in names if name not in object_info]

    out: dict[str, Availability] = {}
    missing = nodes_missing("UpscaleModelLoader", "ImageUpscaleWithModel")
    if missing:
        out["upscale"] = Availability(False, f"This ComfyUI lacks the nodes {', '.join(missing)}; reinstall it.")
    elif not models.get("upscale_models"):
        out["upscale"] = Availability(False, "Upscale needs an upscale model (e.g. 4x-UltraSharp.pth) in "
                                             + WHERE.format(folder="upscale_models") + ".")
    else:
        out["upscale"] = Availability(True, f"Uses {sorted(models['upscale_models'])[0]}.")
    missing = nodes_missing("ControlNetLoader", "ControlNetApplyAdvanced", "LoadImage")
    if missing:
        out["controlnet"] = Availability(False, f"This ComfyUI lacks the nodes {', '.join(missing)}; reinstall it.")
    elif not models.get("controlnet"):
        out["controlnet"] = Availability(False, "ControlNet needs a FLUX ControlNet model (e.g. a Union ControlNet "
                                                "for FLUX.1-dev) in " + WHERE.format(folder="controlnet") + ".")
    else:
        out["controlnet"] = Availability(True, f"Uses {sorted(models['controlnet'])[0]}.")
    for toggle, (title, needs) in NODE_PACKS.items():
        out[toggle] = Availability(False, f"{title} needs {needs}; this version of Isengard Desktop does not install "
                                          "custom node packs yet, so it is off.")
    return out


def default_toggle_options(toggle: str, models: dict[str, list[str]]) -> dict[str, str]:
    """The model a ready toggle uses when the person did not pick one."""
    folder = {"upscale": "upscale_models", "controlnet": "controlnet"}[toggle]
    return {"model": sorted(models[folder])[0]}
