"""The shipped catalogue: complete and unique placements per engine, one download per file, sources recorded."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from isengard_desktop.base import catalogue
from isengard_desktop.base.catalogue import CatalogueError
from isengard_desktop.base.errors import NotFoundError
from tests.models import tiny_catalogue

DIFFUSERS_FILES = {
    "model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json", "text_encoder/model.safetensors",
    "text_encoder_2/config.json", "text_encoder_2/model-00001-of-00002.safetensors",
    "text_encoder_2/model-00002-of-00002.safetensors", "text_encoder_2/model.safetensors.index.json",
    "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json", "tokenizer_2/special_tokens_map.json", "tokenizer_2/spiece.model",
    "tokenizer_2/tokenizer.json", "tokenizer_2/tokenizer_config.json", "transformer/config.json",
    "transformer/diffusion_pytorch_model-00001-of-00003.safetensors",
    "transformer/diffusion_pytorch_model-00002-of-00003.safetensors",
    "transformer/diffusion_pytorch_model-00003-of-00003.safetensors",
    "transformer/diffusion_pytorch_model.safetensors.index.json", "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
}


@pytest.fixture(autouse=True)
def _shipped_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(catalogue.ENV_CATALOGUE, raising=False)


def test_flux_dev_diffusers_layout_is_the_whole_repository_folder() -> None:
    flux = catalogue.get("flux1-dev")
    assert flux.gated and flux.repo == "black-forest-labs/FLUX.1-dev"
    assert set(flux.engines()) == {"diffusers", "aitoolkit", "comfyui"}
    diffusers = flux.placements("diffusers")
    assert {p.file.path for p in diffusers} == DIFFUSERS_FILES
    assert all(p.dest == f"FLUX.1-dev/{p.file.path}" for p in diffusers)
    # AI-Toolkit reads the very same folder: the same placements, nothing to download twice.
    assert [p.dest for p in flux.placements("aitoolkit")] == [p.dest for p in diffusers]
    assert all(p.file.gated for p in diffusers)


def test_comfyui_reads_single_files_with_a_t5_variant_and_shared_alternatives() -> None:
    flux = catalogue.get("flux1-dev")
    assert flux.variants("comfyui") == ["fp16", "fp8"]
    fp16 = {p.dest: p for p in flux.placements("comfyui")}
    fp8 = {p.dest: p for p in flux.placements("comfyui", "fp8")}
    assert set(fp16) == {"diffusion_models/flux1-dev.safetensors", "vae/ae.safetensors",
                         "text_encoders/clip_l.safetensors", "text_encoders/t5xxl_fp16.safetensors"}
    assert set(fp8) - set(fp16) == {"text_encoders/t5xxl_fp8_e4m3fn.safetensors"}
    assert fp16["text_encoders/t5xxl_fp16.safetensors"].file.repo == "comfyanonymous/flux_text_encoders"
    assert not fp16["text_encoders/clip_l.safetensors"].file.gated
    # The VAE and CLIP-L ComfyUI can take from FLUX.1-dev's diffusers folder instead of downloading them.
    assert [a.path for a in fp16["vae/ae.safetensors"].alternatives] == ["vae/diffusion_pytorch_model.safetensors"]
    assert [a.path for a in fp16["text_encoders/clip_l.safetensors"].alternatives] == ["text_encoder/model.safetensors"]
    assert fp16["diffusion_models/flux1-dev.safetensors"].in_place_folders == ("diffusion_models", "unet")
    with pytest.raises(NotFoundError, match="no variant 'int4'"):
        flux.placements("comfyui", "int4")


def test_every_placement_is_unique_and_every_hash_has_its_source() -> None:
    for model in catalogue.load():
        for engine in model.engines():
            for variant in model.variants(engine) or [None]:
                dests = [p.dest for p in model.placements(engine, variant)]
                assert len(dests) == len(set(dests)), (model.id, engine, variant)
        shas = [f.sha256 for f in model.files.values() if f.sha256]
        assert len(shas) == len(set(shas)), "two file ids with one sha256 would be one file listed twice"
        keys = [f.key for f in model.files.values()]
        assert len(keys) == len(set(keys))
        for file in model.files.values():
            assert file.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", file.sha256)
            assert file.source, f"{file.id} says nowhere where its size and sha256 come from"
            if file.path.endswith(".safetensors"):
                assert file.size and file.size > 100_000_000, file.id
    flux = catalogue.get("flux1-dev")
    assert flux.files["flux1_dev"].size == 23_802_932_552
    assert flux.files["flux1_dev"].sha256 == "4610115bb0c89560703c892c59ac2742fa821e60ef5871b33493ba544683abd7"
    assert flux.files["ae"].sha256 == "afc8e28272cd15db3919bacdb6918ce9c1ed22e96cb12c4d5ed0fba823529e38"


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(NotFoundError, match="known models: flux1-dev"):
        catalogue.get("sdxl")
    assert catalogue.get("FLUX.1-dev").id == "flux1-dev"


def test_a_test_catalogue_replaces_the_shipped_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(catalogue.ENV_CATALOGUE, str(tiny_catalogue.write_catalogue(tmp_path)))
    assert [m.id for m in catalogue.load()] == ["tiny-flux"]


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(schema_version=2), "schema version 2"),
    (lambda d: d["models"][0]["layouts"]["comfyui"]["placements"].append({"file": "ae", "dest": "../../etc/x"}),
     "outside the models folder"),
    (lambda d: d["models"][0]["layouts"]["comfyui"]["placements"].append({"file": "nope", "dest": "vae/x"}),
     "does not list"),
])
def test_a_broken_catalogue_is_refused_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      change, message: str) -> None:  # noqa: ANN001
    data = tiny_catalogue.catalogue_data()
    change(data)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data))
    monkeypatch.setenv(catalogue.ENV_CATALOGUE, str(path))
    with pytest.raises(CatalogueError, match=re.escape(message)):
        catalogue.load()
