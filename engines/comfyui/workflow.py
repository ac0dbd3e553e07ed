"""Building the ComfyUI API-format workflow of one image from our templates in resources/workflows/.

Templates mark each node's job with a role in ``_meta.title`` ("isengard:sampler", ...); the builder
finds nodes by role, never by id, so a template can be redrawn freely. LoRAs are chained after the
model loader by rewiring every consumer of the model and CLIP links to the last LoraLoader, and the
Advanced toggles splice their nodes in the same way:

- upscale:    UpscaleModelLoader + ImageUpscaleWithModel between VAEDecode and SaveImage;
- controlnet: ControlNetLoader + LoadImage + ControlNetApplyAdvanced between the conditioning and KSampler.

Pure functions: no network, no files other than the template.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.interface import GenerationRequest

FLUX_TEMPLATE = "flux_txt2img.json"
CHECKPOINT_TEMPLATE = "checkpoint_txt2img.json"
ROLES = ("model", "positive", "negative", "latent", "sampler", "decode", "save")
SUPPORTED_TOGGLES = ("upscale", "controlnet")

Link = list  # ["node id", output index], ComfyUI's API format


@dataclass(frozen=True)
class ModelChoice:
    """The base model files in ComfyUI's folders: one single-file checkpoint, or FLUX's four parts."""

    checkpoint: str = ""
    diffusion_model: str = ""
    clip_l: str = ""
    t5xxl: str = ""
    vae: str = ""

    @property
    def template(self) -> str:
        return CHECKPOINT_TEMPLATE if self.checkpoint else FLUX_TEMPLATE

    @property
    def name(self) -> str:
        return Path(self.checkpoint or self.diffusion_model).stem


def load_template(name: str) -> dict[str, Any]:
    from isengard_desktop.resources import resource_path

    return json.loads(resource_path("workflows", name).read_text(encoding="utf-8"))


class Graph:
    """A workflow being edited: nodes by role, fresh ids, and link rewiring."""

    def __init__(self, nodes: dict[str, Any], template: str) -> None:
        self.nodes = nodes
        self.template = template
        self._next = max(int(key) for key in nodes) + 1

    def role(self, role: str) -> tuple[str, dict[str, Any]]:
        for node_id, node in self.nodes.items():
            if node.get("_meta", {}).get("title") == f"isengard:{role}":
                return node_id, node
        raise ValueError(f"The workflow template {self.template} has no node with the role isengard:{role}.")

    def has(self, role: str) -> bool:
        return any(node.get("_meta", {}).get("title") == f"isengard:{role}" for node in self.nodes.values())

    def add(self, class_type: str, inputs: dict[str, Any], role: str) -> str:
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
                if isinstance(value, list) and value == old:
                    node["inputs"][name] = list(new)


def build_workflow(request: GenerationRequest, models: ModelChoice, *, index: int = 0,
                   uploads: dict[str, str] | None = None) -> dict[str, Any]:
    """The API workflow for image ``index`` of ``request`` (seed ``request.seed + index``).

    ``request.loras`` paths are used by file name: the volume's models/loras folder is ComfyUI's loras
    folder. ``uploads`` maps a toggle to the name ComfyUI gave its uploaded image (ControlNet).
    """
    unknown = sorted(set(request.advanced) - set(SUPPORTED_TOGGLES))
    if unknown:
        raise ValueError(f"The ComfyUI workflows do not include {', '.join(unknown)} yet.")
    graph = Graph(copy.deepcopy(load_template(models.template)), models.template)
    for role in ROLES:
        graph.role(role)
    _set_models(graph, models)
    _set_parameters(graph, request, index)
    _chain_loras(graph, request)
    if "controlnet" in request.advanced:
        _controlnet(graph, request.advanced["controlnet"], (uploads or {}).get("controlnet", ""))
    if "upscale" in request.advanced:
        _upscale(graph, request.advanced["upscale"])
    return graph.nodes


def _set_models(graph: Graph, models: ModelChoice) -> None:
    _id, model = graph.role("model")
    if models.checkpoint:
        model["inputs"]["ckpt_name"] = models.checkpoint
        return
    model["inputs"]["unet_name"] = models.diffusion_model
    graph.role("clip")[1]["inputs"].update({"clip_name1": models.clip_l, "clip_name2": models.t5xxl})
    graph.role("vae")[1]["inputs"]["vae_name"] = models.vae


def _set_parameters(graph: Graph, request: GenerationRequest, index: int) -> None:
    graph.role("positive")[1]["inputs"]["text"] = request.prompt
    sampler = graph.role("sampler")[1]["inputs"]
    sampler.update({"seed": request.seed + index, "steps": request.steps, "sampler_name": request.sampler,
                    "scheduler": request.scheduler})
    if graph.has("guidance"):  # FLUX: distilled guidance, no classifier-free guidance
        graph.role("guidance")[1]["inputs"]["guidance"] = request.guidance
        sampler["cfg"] = 1.0
    else:  # a classic checkpoint: the guidance scale is the CFG scale
        sampler["cfg"] = request.guidance
    graph.role("latent")[1]["inputs"].update({"width": request.width, "height": request.height, "batch_size": 1})


def _chain_loras(graph: Graph, request: GenerationRequest) -> None:
    sampler_id, sampler = graph.role("sampler")
    positive_id, positive = graph.role("positive")
    model_link, clip_link = list(sampler["inputs"]["model"]), list(positive["inputs"]["clip"])
    for number, lora in enumerate(request.loras):
        node_id = graph.add("LoraLoader", {
            "model": model_link, "clip": clip_link, "lora_name": Path(lora.path).name,
            "strength_model": float(lora.strength), "strength_clip": float(lora.strength),
        }, f"lora_{number}")
        graph.rewire(model_link, [node_id, 0], skip=node_id)
        graph.rewire(clip_link, [node_id, 1], skip=node_id)
        model_link, clip_link = [node_id, 0], [node_id, 1]


def _controlnet(graph: Graph, options: dict[str, Any], image_name: str) -> None:
    if not image_name:
        raise ValueError("ControlNet needs a control image; choose one next to the toggle.")
    _sampler_id, sampler = graph.role("sampler")
    vae_link = graph.role("decode")[1]["inputs"]["vae"]
    loader = graph.add("ControlNetLoader", {"control_net_name": options["model"]}, "controlnet_model")
    image = graph.add("LoadImage", {"image": image_name}, "controlnet_image")
    apply = graph.add("ControlNetApplyAdvanced", {
        "positive": sampler["inputs"]["positive"], "negative": sampler["inputs"]["negative"],
        "control_net": [loader, 0], "image": [image, 0], "strength": float(options.get("strength", 0.7)),
        "start_percent": float(options.get("start", 0.0)), "end_percent": float(options.get("end", 1.0)),
        "vae": vae_link,
    }, "controlnet_apply")
    sampler["inputs"]["positive"], sampler["inputs"]["negative"] = [apply, 0], [apply, 1]


def _upscale(graph: Graph, options: dict[str, Any]) -> None:
    decode_id, _decode = graph.role("decode")
    loader = graph.add("UpscaleModelLoader", {"model_name": options["model"]}, "upscale_model")
    upscale = graph.add("ImageUpscaleWithModel", {"upscale_model": [loader, 0], "image": [decode_id, 0]}, "upscale")
    graph.role("save")[1]["inputs"]["images"] = [upscale, 0]
