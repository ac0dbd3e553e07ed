"""What can run in this ComfyUI: the base model files its folders hold and the Advanced toggles.

Pure functions over what the running server reports (GET /object_info lists the loaded node classes,
GET /models/<folder> the files of a model folder), so every verdict is decided before a run starts
and each "not ready" names exactly what is missing, where to put it, and what to do.
"""

from __future__ import annotations

from typing import Any

from engines.comfyui.workflow import TOGGLES, ModelChoice
from engines.interface import Availability

# ComfyUI's names of the model folders the app asks about. "ipadapter-flux" is registered by the
# ComfyUI-IPAdapter-Flux pack, "ultralytics_bbox" and "sams" by the Impact packs; a ComfyUI without
# the pack answers with an empty list.
IPADAPTER_FOLDER = "ipadapter-flux"
CLIP_VISION_FOLDER = "clip_vision"
DETECTOR_FOLDER = "ultralytics_bbox"
SAM_FOLDER = "sams"
MODEL_FOLDERS = ("checkpoints", "diffusion_models", "text_encoders", "vae", "loras", "upscale_models", "controlnet",
                 IPADAPTER_FOLDER, CLIP_VISION_FOLDER, DETECTOR_FOLDER, SAM_FOLDER)
TOGGLE_FOLDERS = {"upscale": "upscale_models", "controlnet": "controlnet", "ipadapter": IPADAPTER_FOLDER,
                  "facedetailer": DETECTOR_FOLDER}
# Where each ComfyUI folder is inside the volume (the supervisor points ComfyUI there).
VOLUME_FOLDERS = {"upscale_models": "models/upscale_models", "controlnet": "models/controlnet",
                  IPADAPTER_FOLDER: "models/ipadapter-flux", CLIP_VISION_FOLDER: "models/clip_vision",
                  DETECTOR_FOLDER: "models/ultralytics/bbox", SAM_FOLDER: "models/sams"}
SIGLIP = "siglip-so400m-patch14-384"  # the image encoder the InstantX FLUX IP-Adapter needs, as a folder
REINSTALL = ("install the ComfyUI engine again with `isengard engines install comfyui` (it installs the pinned "
             "node packs into ComfyUI's custom_nodes), then restart ComfyUI from Settings → Engines")
CORE_REINSTALL = "this ComfyUI is incomplete; install it again with `isengard engines install comfyui`"
WHERE = "the volume's models/{folder} folder (or the ComfyUI models folder added in Settings)"

# Toggle -> (its name in sentences, the node classes it needs, which pack brings them).
NODES: dict[str, list[tuple[str, tuple[str, ...], str]]] = {
    "upscale": [("Upscale", ("UpscaleModelLoader", "ImageUpscaleWithModel"), "")],
    "controlnet": [("ControlNet", ("ControlNetLoader", "ControlNetApplyAdvanced", "LoadImage"), "")],
    "ipadapter": [("IP-Adapter", ("IPAdapterFluxLoader", "ApplyIPAdapterFlux"), "ComfyUI-IPAdapter-Flux"),
                  ("IP-Adapter", ("LoadImage",), "")],
    "facedetailer": [("FaceDetailer", ("FaceDetailer", "SAMLoader"), "ComfyUI-Impact-Pack"),
                     ("FaceDetailer", ("UltralyticsDetectorProvider",), "ComfyUI-Impact-Subpack"),
                     ("FaceDetailer", ("DifferentialDiffusion",), "")],
}
# Kept for callers that describe the node-pack toggles before ComfyUI is up.
NODE_PACKS = {
    "ipadapter": ("IP-Adapter", "the ComfyUI-IPAdapter-Flux node pack (InstantX FLUX.1-dev IP-Adapter)"),
    "facedetailer": ("FaceDetailer", "the ComfyUI-Impact-Pack and ComfyUI-Impact-Subpack node packs"),
}
MODEL_HINTS = {
    "upscale": ("Upscale", "an upscale model (e.g. 4x-UltraSharp.pth)"),
    "controlnet": ("ControlNet", "a FLUX.1-dev ControlNet model (e.g. the Union ControlNet for FLUX.1-dev)"),
    "ipadapter": ("IP-Adapter", "the InstantX FLUX.1-dev IP-Adapter (ip-adapter.bin from "
                                "InstantX/FLUX.1-dev-IP-Adapter)"),
    "facedetailer": ("FaceDetailer", "a face detection model (e.g. face_yolov8m.pt)"),
}


def _where(folder: str) -> str:
    return f"the volume's {VOLUME_FOLDERS.get(folder, 'models/' + folder)} folder"


def _first(files: list[str], *needles: str) -> str:
    """The first file (sorted) whose lower-cased name contains every needle."""
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
            return (f"ComfyUI does not list the base model {wanted}; put it into "
                    f"{WHERE.format(folder='diffusion_models')}.")
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


def base_model_readiness(models: dict[str, list[str]]) -> Availability:
    """Whether ComfyUI can generate at all: FLUX.1-dev's four files (diffusion model, clip_l, t5xxl, ae) or a
    single-file checkpoint."""
    choice = choose_models(models)
    if isinstance(choice, str):
        return Availability(False, choice)
    if choice.checkpoint:
        return Availability(True, f"Uses the checkpoint {choice.checkpoint}.")
    return Availability(True, f"Uses {choice.diffusion_model} with {choice.clip_l}, {choice.t5xxl} and {choice.vae}.")


def _missing_nodes(toggle: str, object_info: dict) -> str:
    """A sentence about the first node class the toggle needs that this ComfyUI lacks, or ""."""
    for title, classes, pack in NODES[toggle]:
        missing = [name for name in classes if name not in object_info]
        if not missing:
            continue
        if pack:
            return (f"{title} needs the {pack} node pack (ComfyUI lacks {', '.join(missing)}): {REINSTALL}.")
        return f"{title} needs ComfyUI's {', '.join(missing)} node{'s' if len(missing) > 1 else ''}: {CORE_REINSTALL}."
    return ""


def _missing_model(toggle: str, folder: str, what: str) -> Availability:
    title = MODEL_HINTS[toggle][0]
    return Availability(False, f"{title} needs {what} in {_where(folder)}: copy it into that folder (or add your "
                               "ComfyUI models folder in Settings), then press Check again.")


# Fast-test mode: the toggles whose tiny random-weight model the worker builds (engines/comfyui/fast_test_models.py),
# by the builder's name for it. IP-Adapter is FLUX-only, and fast-test's ComfyUI checkpoint is SD1.5-shaped.
FAST_TEST_KINDS = {"upscale": "upscale", "controlnet": "controlnet", "facedetailer": "detector"}
FAST_TEST_IPADAPTER = ("IP-Adapter works with FLUX.1-dev only, and fast-test's tiny ComfyUI model is SD1.5-shaped; it "
                       "runs in production mode with the InstantX IP-Adapter and SigLIP.")


def toggle_readiness(object_info: dict, models: dict[str, list[str]], fast_test: bool = False
                     ) -> dict[str, Availability]:
    """Each Advanced toggle: ready (saying which model it uses), or exactly what to install or add first.

    In fast-test mode a toggle with its node pack is ready with a tiny model built at its first use."""
    out: dict[str, Availability] = {}
    for toggle in TOGGLES:
        nodes = _missing_nodes(toggle, object_info)
        folder = TOGGLE_FOLDERS[toggle]
        if nodes:
            out[toggle] = Availability(False, nodes)
        elif fast_test and toggle == "ipadapter":
            out[toggle] = Availability(False, FAST_TEST_IPADAPTER)
        elif fast_test:
            out[toggle] = Availability(True, "Uses a tiny random-weight model (fast-test), built at its first use.")
        elif not models.get(folder):
            out[toggle] = _missing_model(toggle, folder, MODEL_HINTS[toggle][1])
        elif toggle == "ipadapter" and not any(name.replace("\\", "/").startswith(SIGLIP + "/")
                                               for name in models.get(CLIP_VISION_FOLDER, [])):
            out[toggle] = _missing_model(toggle, CLIP_VISION_FOLDER,
                                         f"the SigLIP image encoder (the google/{SIGLIP} folder from Hugging Face, "
                                         f"as {SIGLIP}/)")
        else:
            out[toggle] = Availability(True, f"Uses {default_toggle_options(toggle, models)['model']}.")
    return out


def default_toggle_options(toggle: str, models: dict[str, list[str]], fast_test: bool = False) -> dict[str, Any]:
    """The model a ready toggle uses when the person did not pick one ({} when its folder is empty)."""
    if fast_test and toggle in FAST_TEST_KINDS:
        from engines.comfyui.fast_test_models import FILES

        options = {"model": FILES[FAST_TEST_KINDS[toggle]].rsplit("/", 1)[1]}
        if toggle == "facedetailer":  # the picture is 64 px: detail the face at that size, not enlarged to 512
            options |= {"guide_size": 64, "max_size": 128}
        return options
    files = models.get(TOGGLE_FOLDERS[toggle], [])
    if not files:
        return {}
    if toggle == "facedetailer":
        return {"model": _first(files, "face") or sorted(files)[0]}
    return {"model": sorted(files)[0]}
