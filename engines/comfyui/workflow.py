"""Building the ComfyUI API-format workflow of one image from our templates in resources/workflows/.

Templates mark each node's job with a role in ``_meta.title`` ("isengard:sampler", ...); the builder
finds nodes by role, never by id, so a template can be redrawn freely. LoRAs are chained after the
model loader by rewiring every consumer of the model and CLIP links to the last LoraLoader, and the
Advanced toggles splice their nodes in the same way:

- ipadapter:    IPAdapterFluxLoader + LoadImage + ApplyIPAdapterFlux (Shakker-Labs/ComfyUI-IPAdapter-Flux, the
                InstantX FLUX.1-dev IP-Adapter) between the LoRAs and everything that samples;
- controlnet:   ControlNetLoader + LoadImage + ControlNetApplyAdvanced between the conditioning and KSampler;
- facedetailer: UltralyticsDetectorProvider (Impact-Subpack) + FaceDetailer (Impact-Pack) right after VAEDecode,
                so faces are detailed at the generated size and then upscaled with the rest of the picture; its model
                passes through ComfyUI's DifferentialDiffusion first (see _facedetailer);
- upscale:      UpscaleModelLoader + ImageUpscaleWithModel just before SaveImage.

Three templates, one builder: FLUX.1-dev from its four files (flux_txt2img.json), a single-file FLUX
checkpoint (checkpoint_txt2img.json) and a classic SD checkpoint such as the tiny SD1.5 test model
(sd_checkpoint_txt2img.json, classifier-free guidance instead of FLUX's distilled guidance).
Pure functions: no network, no files other than the template.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.interface import GenerationRequest, Toggle

FLUX_TEMPLATE = "flux_txt2img.json"
CHECKPOINT_TEMPLATE = "checkpoint_txt2img.json"
SD_CHECKPOINT_TEMPLATE = "sd_checkpoint_txt2img.json"

# Roles every template must have; "clip" and "vae" are needed when the model loader is a bare diffusion model,
# and "guidance" marks a FLUX template (distilled guidance, cfg 1).
ROLES = ("model", "positive", "negative", "latent", "sampler", "decode", "save")
OPTIONAL_ROLES = ("clip", "vae", "guidance")
# The Advanced toggles of the ComfyUI engine: the one list (the engine's traits, the readiness checks, the
# builder and the Generate form all read it). The order is the form's; the builder splices in its own order.
ADVANCED_TOGGLES = (
    Toggle("controlnet", "ControlNet", "control image"),
    Toggle("ipadapter", "IP-Adapter", "reference face"),
    Toggle("facedetailer", "FaceDetailer"),
    Toggle("upscale", "Upscale"),
)
TOGGLES = tuple(toggle.name for toggle in ADVANCED_TOGGLES)

# The one image encoder the InstantX FLUX IP-Adapter works with (the node offers only this choice); put the Hugging
# Face folder into models/clip_vision/siglip-so400m-patch14-384 or let it come from the Hugging Face cache.
IPADAPTER_CLIP_VISION = "google/siglip-so400m-patch14-384"

Link = list  # ["node id", output index], ComfyUI's API format


@dataclass(frozen=True)
class ModelChoice:
    """The base model files in ComfyUI's folders: one single-file checkpoint, or FLUX's four parts.

    ``family`` is "flux" or "sd"; empty means: FLUX for the four parts, and for a checkpoint FLUX when its
    name says so (flux1-dev-fp8.safetensors), otherwise a classic SD checkpoint.
    """

    checkpoint: str = ""
    diffusion_model: str = ""
    clip_l: str = ""
    t5xxl: str = ""
    vae: str = ""
    family: str = ""

    @property
    def resolved_family(self) -> str:
        if self.family:
            return self.family
        if not self.checkpoint:
            return "flux"
        return "flux" if "flux" in self.checkpoint.lower() else "sd"

    @property
    def template(self) -> str:
        if not self.checkpoint:
            return FLUX_TEMPLATE
        return CHECKPOINT_TEMPLATE if self.resolved_family == "flux" else SD_CHECKPOINT_TEMPLATE

    @property
    def name(self) -> str:
        return Path(self.checkpoint or self.diffusion_model).stem


def load_template(name: str) -> dict[str, Any]:
    from isengard_desktop.base.resources import resource_path

    path = resource_path("workflows", name)
    if not path.is_file():
        raise ValueError(f"There is no workflow template {name} in {path.parent}; reinstall Isengard Desktop.")
    return json.loads(path.read_text(encoding="utf-8"))


def is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


class Graph:
    """A workflow being edited: nodes by role, fresh ids, and link rewiring."""

    def __init__(self, nodes: dict[str, Any], template: str) -> None:
        self.nodes = nodes
        self.template = template
        self._next = max((int(key) for key in nodes if key.isdigit()), default=0) + 1

    def find(self, role: str) -> str | None:
        for node_id, node in self.nodes.items():
            if node.get("_meta", {}).get("title") == f"isengard:{role}":
                return node_id
        return None

    def role(self, role: str) -> tuple[str, dict[str, Any]]:
        node_id = self.find(role)
        if node_id is None:
            raise ValueError(f"The workflow template {self.template} has no node with the role isengard:{role}.")
        return node_id, self.nodes[node_id]

    def has(self, role: str) -> bool:
        return self.find(role) is not None

    def add(self, class_type: str, inputs: dict[str, Any], role: str) -> str:
        node_id = str(self._next)
        while node_id in self.nodes:
            self._next += 1
            node_id = str(self._next)
        self._next += 1
        self.nodes[node_id] = {"class_type": class_type, "inputs": inputs, "_meta": {"title": f"isengard:{role}"}}
        return node_id

    def rewire(self, old: Link, new: Link, skip: str) -> None:
        """Every input linked to ``old`` now takes ``new`` (except in node ``skip``, the new node itself)."""
        for node_id, node in self.nodes.items():
            if node_id == skip:
                continue
            for name, value in node["inputs"].items():
                if is_link(value) and value == old:
                    node["inputs"][name] = list(new)


def build_workflow(request: GenerationRequest, models: ModelChoice, *, template: str | None = None, index: int = 0,
                   uploads: dict[str, str] | None = None, model_only_loras: frozenset[str] = frozenset()
                   ) -> dict[str, Any]:
    """The API workflow for image ``index`` of ``request`` (seed ``request.seed + index``).

    ``request.loras`` paths are used by file name: the volume's models/loras folder is ComfyUI's loras
    folder. ``uploads`` maps a toggle ("controlnet", "ipadapter") to the name ComfyUI gave its uploaded
    image; without it the toggle's own "image" option is taken as that name. LoRA files named in
    ``model_only_loras`` change only the diffusion model (LoraLoaderModelOnly): the text encoders stay
    untouched, so ComfyUI keeps the prompt's encoding cached when only a LoRA's strength changes.
    """
    unknown = sorted(set(request.advanced) - set(TOGGLES))
    if unknown:
        raise ValueError(f"The ComfyUI workflows do not know the Advanced option {', '.join(unknown)}; "
                         f"known: {', '.join(TOGGLES)}.")
    name = template or models.template
    graph = Graph(copy.deepcopy(load_template(name)), name)
    for role in ROLES:
        graph.role(role)
    uploads = uploads or {}
    _set_models(graph, models)
    _set_parameters(graph, request, index)
    _chain_loras(graph, request, model_only_loras)
    advanced = request.advanced
    if "ipadapter" in advanced:
        if not graph.has("guidance"):
            raise ValueError("IP-Adapter works with FLUX.1-dev only; choose a FLUX base model or switch it off.")
        _ipadapter(graph, advanced["ipadapter"], _image(advanced["ipadapter"], uploads, "ipadapter"), request.device)
    positive, negative = _conditioning(graph)  # before ControlNet: FaceDetailer works on crops, without the hint
    if "controlnet" in advanced:
        _controlnet(graph, advanced["controlnet"], _image(advanced["controlnet"], uploads, "controlnet"))
    if "facedetailer" in advanced:
        _facedetailer(graph, advanced["facedetailer"], positive, negative)
    if "upscale" in advanced:
        _upscale(graph, advanced["upscale"])
    return graph.nodes


def _image(options: dict[str, Any], uploads: dict[str, str], toggle: str) -> str:
    name = uploads.get(toggle) or str(options.get("image") or "")
    if not name:
        what = {"controlnet": "ControlNet needs a control image", "ipadapter": "IP-Adapter needs a reference face"}
        raise ValueError(f"{what[toggle]}; choose one next to the toggle.")
    return name


def _model_option(options: dict[str, Any], toggle: str) -> str:
    model = str(options.get("model") or "")
    if not model:
        raise ValueError(f"The {toggle} option has no model; pick one in the Advanced section.")
    return model


def _set_models(graph: Graph, models: ModelChoice) -> None:
    _id, model = graph.role("model")
    if model["class_type"] == "CheckpointLoaderSimple":
        if not models.checkpoint:
            raise ValueError(f"The workflow template {graph.template} loads a single-file checkpoint, but none was "
                             "chosen.")
        model["inputs"]["ckpt_name"] = models.checkpoint
        return
    if not (models.diffusion_model and models.clip_l and models.t5xxl and models.vae):
        raise ValueError(f"The workflow template {graph.template} needs FLUX's four files (diffusion model, clip_l, "
                         "t5xxl and ae); some were not chosen.")
    model["inputs"]["unet_name"] = models.diffusion_model
    graph.role("clip")[1]["inputs"].update({"clip_name1": models.clip_l, "clip_name2": models.t5xxl})
    graph.role("vae")[1]["inputs"]["vae_name"] = models.vae


def _set_parameters(graph: Graph, request: GenerationRequest, index: int) -> None:
    graph.role("positive")[1]["inputs"]["text"] = request.prompt
    sampler = graph.role("sampler")[1]["inputs"]
    sampler.update({"seed": request.seed + index, "steps": request.steps, "sampler_name": request.sampler,
                    "scheduler": request.scheduler, "denoise": 1.0})
    if graph.has("guidance"):  # FLUX: distilled guidance, no classifier-free guidance
        graph.role("guidance")[1]["inputs"]["guidance"] = float(request.guidance)
        sampler["cfg"] = 1.0
    else:  # a classic checkpoint: the guidance scale is the CFG scale
        sampler["cfg"] = float(request.guidance)
    graph.role("latent")[1]["inputs"].update({"width": request.width, "height": request.height, "batch_size": 1})


def _chain_loras(graph: Graph, request: GenerationRequest, model_only: frozenset[str]) -> None:
    _sampler_id, sampler = graph.role("sampler")
    _positive_id, positive = graph.role("positive")
    model_link, clip_link = list(sampler["inputs"]["model"]), list(positive["inputs"]["clip"])
    for number, lora in enumerate(request.loras):
        if Path(lora.path).name in model_only:
            node_id = graph.add("LoraLoaderModelOnly", {
                "model": model_link, "lora_name": Path(lora.path).name, "strength_model": float(lora.strength),
            }, f"lora_{number}")
            graph.rewire(model_link, [node_id, 0], skip=node_id)
            model_link = [node_id, 0]
            continue
        node_id = graph.add("LoraLoader", {
            "model": model_link, "clip": clip_link, "lora_name": Path(lora.path).name,
            "strength_model": float(lora.strength), "strength_clip": float(lora.strength),
        }, f"lora_{number}")
        graph.rewire(model_link, [node_id, 0], skip=node_id)
        graph.rewire(clip_link, [node_id, 1], skip=node_id)
        model_link, clip_link = [node_id, 0], [node_id, 1]


def _conditioning(graph: Graph) -> tuple[Link, Link]:
    """The prompt's conditioning as the sampler gets it before any ControlNet: (positive, negative) links."""
    positive_role = "guidance" if graph.has("guidance") else "positive"
    return [graph.role(positive_role)[0], 0], [graph.role("negative")[0], 0]


def _ipadapter(graph: Graph, options: dict[str, Any], image_name: str, device: str) -> None:
    _sampler_id, sampler = graph.role("sampler")
    model_link = list(sampler["inputs"]["model"])
    provider = str(options.get("provider") or ("cpu" if device == "cpu" else "cuda"))
    loader = graph.add("IPAdapterFluxLoader", {"ipadapter": _model_option(options, "IP-Adapter"),
                                               "clip_vision": IPADAPTER_CLIP_VISION, "provider": provider},
                       "ipadapter_model")
    image = graph.add("LoadImage", {"image": image_name}, "ipadapter_image")
    apply = graph.add("ApplyIPAdapterFlux", {
        "model": model_link, "ipadapter_flux": [loader, 0], "image": [image, 0],
        "weight": float(options.get("strength", 0.7)), "start_percent": float(options.get("start", 0.0)),
        "end_percent": float(options.get("end", 1.0)),
    }, "ipadapter_apply")
    graph.rewire(model_link, [apply, 0], skip=apply)


def _controlnet(graph: Graph, options: dict[str, Any], image_name: str) -> None:
    _sampler_id, sampler = graph.role("sampler")
    vae_link = graph.role("decode")[1]["inputs"]["vae"]
    loader = graph.add("ControlNetLoader", {"control_net_name": _model_option(options, "ControlNet")},
                       "controlnet_model")
    image = graph.add("LoadImage", {"image": image_name}, "controlnet_image")
    apply = graph.add("ControlNetApplyAdvanced", {
        "positive": sampler["inputs"]["positive"], "negative": sampler["inputs"]["negative"],
        "control_net": [loader, 0], "image": [image, 0], "strength": float(options.get("strength", 0.7)),
        "start_percent": float(options.get("start", 0.0)), "end_percent": float(options.get("end", 1.0)),
        "vae": vae_link,
    }, "controlnet_apply")
    sampler["inputs"]["positive"], sampler["inputs"]["negative"] = [apply, 0], [apply, 1]


def _facedetailer(graph: Graph, options: dict[str, Any], positive: Link, negative: Link) -> None:
    _sampler_id, sampler = graph.role("sampler")
    s = sampler["inputs"]
    save = graph.role("save")[1]["inputs"]
    detector_name = _model_option(options, "FaceDetailer")
    if not detector_name.startswith(("bbox/", "segm/")):  # the node lists the ultralytics_bbox folder as bbox/<file>
        detector_name = f"bbox/{detector_name}"
    detector = graph.add("UltralyticsDetectorProvider", {"model_name": detector_name}, "facedetailer_detector")
    # The pinned Impact-Pack feathers its mask by calling DifferentialDiffusion().apply(), which ComfyUI's V3 node
    # no longer has ("'DifferentialDiffusion' object has no attribute 'apply'"); it skips that call when the model
    # already has a denoise-mask function, which ComfyUI's own node sets: the same feathered detailing, no crash.
    feathered = graph.add("DifferentialDiffusion", {"model": list(s["model"])}, "facedetailer_feather")
    flux = graph.has("guidance")
    inputs: dict[str, Any] = {
        "image": list(save["images"]), "model": [feathered, 0],
        "clip": list(graph.role("positive")[1]["inputs"]["clip"]),
        "vae": list(graph.role("decode")[1]["inputs"]["vae"]),
        "guide_size": float(options.get("guide_size", 1024 if flux else 512)), "guide_size_for": True,
        "max_size": float(options.get("max_size", 1024)), "seed": s["seed"],
        "steps": int(options.get("steps", s["steps"])), "cfg": s["cfg"], "sampler_name": s["sampler_name"],
        "scheduler": s["scheduler"], "positive": positive, "negative": negative,
        "denoise": float(options.get("denoise", 0.4)), "feather": 5, "noise_mask": True, "force_inpaint": True,
        "bbox_threshold": float(options.get("threshold", 0.5)), "bbox_dilation": 10, "bbox_crop_factor": 3.0,
        "sam_detection_hint": "center-1", "sam_dilation": 0, "sam_threshold": 0.93, "sam_bbox_expansion": 0,
        "sam_mask_hint_threshold": 0.7, "sam_mask_hint_use_negative": "False", "drop_size": 10,
        "bbox_detector": [detector, 0], "wildcard": "", "cycle": 1,
        "inpaint_model": False, "noise_mask_feather": 20,
    }
    if options.get("sam"):  # a SAM model sharpens the face mask; without it the detector's box is used
        sam = graph.add("SAMLoader", {"model_name": str(options["sam"]), "device_mode": "AUTO"}, "facedetailer_sam")
        inputs["sam_model_opt"] = [sam, 0]
    detailer = graph.add("FaceDetailer", inputs, "facedetailer")
    save["images"] = [detailer, 0]


def _upscale(graph: Graph, options: dict[str, Any]) -> None:
    save = graph.role("save")[1]["inputs"]
    loader = graph.add("UpscaleModelLoader", {"model_name": _model_option(options, "Upscale")}, "upscale_model")
    upscale = graph.add("ImageUpscaleWithModel", {"upscale_model": [loader, 0], "image": list(save["images"])},
                        "upscale")
    save["images"] = [upscale, 0]


def _input_spec(definition: dict[str, Any], name: str) -> Any:
    for section in ("required", "optional"):
        spec = definition.get("input", {}).get(section, {}).get(name)
        if spec is not None:
            return spec
    return None


def _choices(spec: Any) -> list[Any]:
    """The allowed values of a combo input (both object_info spellings), or [] when it is not a combo or empty."""
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        return list(spec[1].get("options") or [])
    return []


def validate(workflow: dict[str, Any], object_info: dict[str, Any]) -> list[str]:
    """Problems of ``workflow`` against node definitions (GET /object_info): unknown classes, missing required
    inputs, unknown inputs, links to missing nodes or outputs, and links whose type does not match. Empty = valid."""
    problems: list[str] = []
    for node_id, node in workflow.items():
        class_type = node.get("class_type")
        definition = object_info.get(class_type)
        if definition is None:
            problems.append(f"node {node_id}: ComfyUI has no node class {class_type}")
            continue
        for name in definition.get("input", {}).get("required", {}):
            if name not in node["inputs"]:
                problems.append(f"node {node_id} ({class_type}): required input {name} is missing")
        for name, value in node["inputs"].items():
            spec = _input_spec(definition, name)
            if spec is None:
                problems.append(f"node {node_id} ({class_type}): {class_type} has no input {name}")
                continue
            if not is_link(value):
                choices = _choices(spec)
                if choices and value not in choices:
                    problems.append(f"node {node_id} ({class_type}).{name}: {value!r} is not one of ComfyUI's choices "
                                    f"({', '.join(map(str, choices[:8]))})")
                continue
            source = workflow.get(value[0])
            if source is None:
                problems.append(f"node {node_id} ({class_type}).{name}: links to missing node {value[0]}")
                continue
            outputs = object_info.get(source["class_type"], {}).get("output", [])
            if not 0 <= value[1] < len(outputs):
                problems.append(f"node {node_id} ({class_type}).{name}: {source['class_type']} has no output "
                                f"{value[1]}")
                continue
            wanted = spec[0] if isinstance(spec[0], str) else "COMBO"
            if wanted != "*" and outputs[value[1]] != wanted:
                problems.append(f"node {node_id} ({class_type}).{name}: wants {wanted}, gets {outputs[value[1]]} "
                                f"from {source['class_type']}")
    return problems
