"""The workflow builder: golden API JSON for each combination of Advanced toggles and LoRAs, and every built
workflow checked link by link against real node definitions.

The core definitions (fixtures/object_info_core.json) are GET /object_info of ComfyUI a125cd84 started with
--disable-all-custom-nodes, trimmed to the classes we use; the node-pack ones (fixtures/object_info_custom.json)
are GET /object_info of the same ComfyUI with the three pinned packs loaded, recorded by
``tools/record_object_info.py`` (CI installs that ComfyUI). Both were taken with empty model folders: the test adds
the file names it uses. Regenerate the golden files after an intended change with
``ISENGARD_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/engines/comfyui/test_workflow.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engines.comfyui.workflow import (
    CHECKPOINT_TEMPLATE,
    FLUX_TEMPLATE,
    ROLES,
    SD_CHECKPOINT_TEMPLATE,
    ModelChoice,
    build_workflow,
    is_link,
    validate,
)
from engines.interface import GenerationRequest, LoraRef

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"
UPDATE = os.environ.get("ISENGARD_UPDATE_GOLDEN") == "1"

FLUX = ModelChoice(diffusion_model="flux1-dev.safetensors", clip_l="clip_l.safetensors",
                   t5xxl="t5xxl_fp16.safetensors", vae="ae.safetensors")
FLUX_CKPT = ModelChoice(checkpoint="flux1-dev-fp8.safetensors")
TINY_SD = ModelChoice(checkpoint="tiny-sd15.safetensors")
TOGGLES = {
    "upscale": {"model": "4x-UltraSharp.pth"},
    "controlnet": {"model": "flux-union-controlnet.safetensors", "image": "pose.png", "strength": 0.6, "start": 0.0,
                   "end": 0.8},
    "ipadapter": {"model": "ip-adapter.bin", "image": "face.png", "strength": 0.7, "provider": "cpu"},
    "facedetailer": {"model": "face_yolov8m.pt", "denoise": 0.35, "sam": "sam_vit_b_01ec64.pth"},
}
LORAS = [LoraRef(path="/volume/models/loras/ada_lovelace.safetensors", strength=0.8, name="Ada"),
         LoraRef(path="/volume/models/loras/grace_hopper.safetensors", strength=1.0, name="Grace")]

# name -> (models, toggles, number of LoRAs)
CASES: dict[str, tuple[ModelChoice, tuple[str, ...], int]] = {
    "flux_none_0lora": (FLUX, (), 0),
    "flux_none_1lora": (FLUX, (), 1),
    "flux_none_2lora": (FLUX, (), 2),
    "flux_upscale_0lora": (FLUX, ("upscale",), 0),
    "flux_controlnet_1lora": (FLUX, ("controlnet",), 1),
    "flux_ipadapter_1lora": (FLUX, ("ipadapter",), 1),
    "flux_facedetailer_2lora": (FLUX, ("facedetailer",), 2),
    "flux_all_0lora": (FLUX, ("upscale", "controlnet", "ipadapter", "facedetailer"), 0),
    "flux_all_2lora": (FLUX, ("upscale", "controlnet", "ipadapter", "facedetailer"), 2),
    "fluxckpt_all_1lora": (FLUX_CKPT, ("upscale", "controlnet", "ipadapter", "facedetailer"), 1),
    "sd_none_0lora": (TINY_SD, (), 0),
    "sd_upscale_facedetailer_1lora": (TINY_SD, ("upscale", "facedetailer"), 1),
    "flux_none_2lora_modelonly": (FLUX, (), 2),
}
# Cases whose LoRAs (by file name) have no text-encoder weights: LoraLoaderModelOnly, the prompt stays cached.
MODEL_ONLY = {"flux_none_2lora_modelonly": frozenset({"ada_lovelace.safetensors"})}


def request_for(toggles: tuple[str, ...], loras: int, **overrides) -> GenerationRequest:
    fields = {"prompt": "ada_lovelace, portrait in a library", "base_model": "auto", "base_model_name": "FLUX.1-dev",
              "output_dir": "/tmp/job", "width": 1152, "height": 864, "aspect": "4:3", "steps": 20, "guidance": 3.5,
              "seed": 1234, "loras": LORAS[:loras], "advanced": {name: dict(TOGGLES[name]) for name in toggles}}
    return GenerationRequest(**(fields | overrides))


def build(name: str, index: int = 0) -> dict:
    models, toggles, loras = CASES[name]
    return build_workflow(request_for(toggles, loras), models, index=index,
                          model_only_loras=MODEL_ONLY.get(name, frozenset()))


@pytest.fixture(scope="module")
def object_info() -> dict:
    core = json.loads((HERE / "fixtures" / "object_info_core.json").read_text())
    custom = json.loads((HERE / "fixtures" / "object_info_custom.json").read_text())
    custom.pop("_source")
    info = core | custom
    # The snapshot was taken with empty model folders: list the files these tests use, as a server with them would.
    files = {("UNETLoader", "unet_name"): [FLUX.diffusion_model],
             ("DualCLIPLoader", "clip_name1"): [FLUX.clip_l, FLUX.t5xxl],
             ("DualCLIPLoader", "clip_name2"): [FLUX.clip_l, FLUX.t5xxl], ("VAELoader", "vae_name"): [FLUX.vae],
             ("CheckpointLoaderSimple", "ckpt_name"): [FLUX_CKPT.checkpoint, TINY_SD.checkpoint],
             ("LoraLoader", "lora_name"): [Path(lora.path).name for lora in LORAS],
             ("UpscaleModelLoader", "model_name"): [TOGGLES["upscale"]["model"]],
             ("ControlNetLoader", "control_net_name"): [TOGGLES["controlnet"]["model"]],
             ("LoadImage", "image"): [TOGGLES["controlnet"]["image"], TOGGLES["ipadapter"]["image"]],
             ("IPAdapterFluxLoader", "ipadapter"): [TOGGLES["ipadapter"]["model"]],
             ("UltralyticsDetectorProvider", "model_name"): ["bbox/" + TOGGLES["facedetailer"]["model"]],
             ("SAMLoader", "model_name"): [TOGGLES["facedetailer"]["sam"]]}
    for (node, name), names in files.items():
        spec = info[node]["input"]["required"][name]
        if isinstance(spec[0], list):
            spec[0] = spec[0] + names
        else:
            spec[1]["options"] = spec[1]["options"] + names
    return info


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    built = build(name)
    path = GOLDEN / f"{name}.json"
    text = json.dumps(built, indent=1, sort_keys=True) + "\n"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"no golden file {path.name}; run with ISENGARD_UPDATE_GOLDEN=1 and review it"
    assert json.loads(path.read_text()) == built, f"{name} differs from {path.name}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_link_is_valid_against_the_node_definitions(name: str, object_info: dict) -> None:
    workflow = build(name)
    assert validate(workflow, object_info) == []
    assert all(isinstance(node_id, str) for node_id in workflow)
    assert len({node["_meta"]["title"] for node in workflow.values()}) == len(workflow)  # one node per role


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_save_node_is_reached_from_the_sampler(name: str) -> None:
    workflow = build(name)
    save = next(node for node in workflow.values() if node["class_type"] == "SaveImage")
    seen, frontier = set(), [save["inputs"]["images"][0]]
    while frontier:
        node_id = frontier.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        frontier += [value[0] for value in workflow[node_id]["inputs"].values() if is_link(value)]
    assert {workflow[node_id]["class_type"] for node_id in seen} >= {"KSampler", "VAEDecode"}
    assert sum(node["class_type"] == "SaveImage" for node in workflow.values()) == 1


def test_validate_reports_broken_links_and_bad_choices(object_info: dict) -> None:
    workflow = build("flux_none_0lora")
    workflow["8"]["inputs"]["model"] = ["99", 0]
    workflow["9"]["inputs"]["vae"] = ["1", 0]  # a MODEL where a VAE belongs
    workflow["8"]["inputs"]["sampler_name"] = "no_such_sampler"
    del workflow["10"]["inputs"]["images"]
    problems = "\n".join(validate(workflow, object_info))
    assert "links to missing node 99" in problems
    assert "wants VAE, gets MODEL" in problems
    assert "'no_such_sampler' is not one of" in problems
    assert "required input images is missing" in problems


def test_parameters_are_filled_by_role() -> None:
    request = request_for((), 2, steps=12, guidance=4.0, sampler="dpmpp_2m", scheduler="beta")
    workflow = build_workflow(request, FLUX, index=3)
    by_class = {node["class_type"]: node["inputs"] for node in workflow.values()}
    sampler = by_class["KSampler"]
    assert (sampler["seed"], sampler["steps"], sampler["cfg"], sampler["sampler_name"], sampler["scheduler"]) == \
        (1237, 12, 1.0, "dpmpp_2m", "beta")
    assert by_class["FluxGuidance"]["guidance"] == 4.0
    assert (by_class["EmptySD3LatentImage"]["width"], by_class["EmptySD3LatentImage"]["height"]) == (1152, 864)
    assert by_class["CLIPTextEncode"]["text"] == "ada_lovelace, portrait in a library"
    loras = [node["inputs"] for node in workflow.values() if node["class_type"] == "LoraLoader"]
    assert [(lora["lora_name"], lora["strength_model"], lora["strength_clip"]) for lora in loras] == \
        [("ada_lovelace.safetensors", 0.8, 0.8), ("grace_hopper.safetensors", 1.0, 1.0)]


def test_sd_checkpoint_uses_cfg_and_plain_latent() -> None:
    workflow = build_workflow(request_for((), 0, guidance=6.5, width=64, height=64), TINY_SD)
    classes = {node["class_type"] for node in workflow.values()}
    assert "FluxGuidance" not in classes and "EmptyLatentImage" in classes
    assert next(n for n in workflow.values() if n["class_type"] == "KSampler")["inputs"]["cfg"] == 6.5


def test_template_choice_follows_the_models() -> None:
    assert FLUX.template == FLUX_TEMPLATE
    assert FLUX_CKPT.template == CHECKPOINT_TEMPLATE
    assert TINY_SD.template == SD_CHECKPOINT_TEMPLATE
    assert ModelChoice(checkpoint="my_model.safetensors", family="flux").template == CHECKPOINT_TEMPLATE
    assert FLUX.name == "flux1-dev"


def test_a_template_without_a_role_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import engines.comfyui.workflow as workflow

    broken = json.loads((HERE.parents[2] / "resources" / "workflows" / FLUX_TEMPLATE).read_text())
    del broken["7"]
    monkeypatch.setattr(workflow, "load_template", lambda name: broken)
    with pytest.raises(ValueError, match=r"flux_txt2img.json has no node with the role isengard:latent"):
        build_workflow(request_for((), 0), FLUX)
    assert "latent" in ROLES


def test_refusals_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="do not know the Advanced option inpaint"):
        build_workflow(request_for((), 0, advanced={"inpaint": {}}), FLUX)
    with pytest.raises(ValueError, match="ControlNet needs a control image"):
        build_workflow(request_for((), 0, advanced={"controlnet": {"model": "cn.safetensors"}}), FLUX)
    with pytest.raises(ValueError, match="IP-Adapter works with FLUX.1-dev only"):
        build_workflow(request_for(("ipadapter",), 0), TINY_SD)
    with pytest.raises(ValueError, match="Upscale option has no model"):
        build_workflow(request_for((), 0, advanced={"upscale": {}}), FLUX)


def test_uploaded_names_win_over_the_option() -> None:
    request = request_for(("controlnet", "ipadapter"), 0)
    workflow = build_workflow(request, FLUX, uploads={"controlnet": "uploaded_pose.png", "ipadapter": "ref (1).png"})
    images = {node["_meta"]["title"]: node["inputs"]["image"] for node in workflow.values()
              if node["class_type"] == "LoadImage"}
    assert images == {"isengard:controlnet_image": "uploaded_pose.png", "isengard:ipadapter_image": "ref (1).png"}


def test_templates_parse_and_carry_roles() -> None:
    for template in (FLUX_TEMPLATE, CHECKPOINT_TEMPLATE, SD_CHECKPOINT_TEMPLATE):
        nodes = json.loads((HERE.parents[2] / "resources" / "workflows" / template).read_text())
        titles = {node["_meta"]["title"] for node in nodes.values()}
        assert {f"isengard:{role}" for role in ROLES} <= titles, template


def test_node_pack_definitions_were_recorded_at_the_pinned_commits() -> None:
    """A moved pack pin needs the definitions recorded again (tools/record_object_info.py)."""
    from isengard_desktop.core.engines_status import pins

    source = json.loads((HERE / "fixtures" / "object_info_custom.json").read_text())["_source"]
    for pack, entry in pins()["custom_nodes"].items():
        assert f"{pack} {entry['commit'][:8]}" in source, f"record the definitions again: {pack} moved"
