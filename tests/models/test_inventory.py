"""What the volume holds per engine, reuse by link (HF cache, extra ComfyUI folder), verify, plan and remove.

Every test runs on the tiny catalogue (tests/models/tiny_catalogue.py) and a temporary HF cache, laid out by hand
exactly as huggingface_hub lays it out (blobs named by sha256, snapshot symlinks).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from isengard_desktop.base import catalogue
from isengard_desktop.core.models import inventory, ledger, planning, removal
from isengard_desktop.core.models.reuse import link_file
from isengard_desktop.storage.volume import Volume
from tests.models import tiny_catalogue as tiny

DIFFUSERS = {fid: f"Tiny-FLUX/{tiny.FILES[fid][1]}" for fid in tiny.DIFFUSERS_IDS}


@pytest.fixture
def volume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Volume:
    monkeypatch.setenv(catalogue.ENV_CATALOGUE, str(tiny.write_catalogue(tmp_path)))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))  # never the real cache of whoever runs this
    return Volume.open(tmp_path / "vol")


def engines(vol: Volume, extra: list[Path] | None = None) -> dict[str, inventory.EngineModelStatus]:
    return inventory.status(vol, extra or [], "tiny-flux")[0].engines


def by_dest(status: inventory.EngineModelStatus) -> dict[str, inventory.FileStatus]:
    return {f.placement.dest: f for f in status.files}


def place_diffusers(vol: Volume) -> None:
    for fid, dest in DIFFUSERS.items():
        tiny.place(vol.models_dir, fid, dest)


def run_links(plan: planning.DownloadPlan) -> None:
    """What the download job does with a plan's links once its files are there."""
    for item in plan.spec["links"]:
        link_file(Path(item["src"]), Path(item["dest"]))


def test_an_empty_volume_misses_everything(volume: Volume) -> None:
    status = engines(volume)
    assert {name: s.state for name, s in status.items()} == {"diffusers": "missing", "aitoolkit": "missing",
                                                            "comfyui": "missing"}
    assert status["comfyui"].missing_bytes == status["comfyui"].total_bytes > 4 * tiny.BIG
    assert not inventory.production_model_ready(volume, [])


def test_partial_present_then_verified(volume: Volume) -> None:
    shard = volume.models_dir / DIFFUSERS["transformer_shard_1"]
    shard.parent.mkdir(parents=True)
    shard.with_name(shard.name + ".partial").write_bytes(tiny.content("transformer_shard_1")[:5000])
    status = engines(volume)["diffusers"]
    assert status.state == "partial"
    item = by_dest(status)[DIFFUSERS["transformer_shard_1"]]
    assert (item.state, item.partial_bytes) == ("partial", 5000)
    assert status.missing_bytes == status.total_bytes - 5000

    shard.with_name(shard.name + ".partial").unlink()
    place_diffusers(volume)
    status = engines(volume)
    assert status["diffusers"].state == status["aitoolkit"].state == "present"
    assert status["diffusers"].ready and inventory.production_model_ready(volume, [])

    verified = inventory.verify(volume, [], "tiny-flux")[0].engines["diffusers"]
    assert verified.state == "verified"
    # Small json files have no published sha256: they do not hold the engine back, and say so.
    index = by_dest(verified)[DIFFUSERS["model_index"]]
    assert (index.state, index.checkable) == ("present", False)
    assert engines(volume)["diffusers"].state == "verified"  # read back from the ledger, no hashing


def test_verify_names_a_changed_file(volume: Volume) -> None:
    place_diffusers(volume)
    inventory.verify(volume, [], "tiny-flux")
    vae = volume.models_dir / DIFFUSERS["vae"]
    data = bytearray(vae.read_bytes())
    data[1000] ^= 0xFF  # same size, one byte different: only the hash can tell
    vae.write_bytes(bytes(data))
    assert by_dest(engines(volume)["diffusers"])[DIFFUSERS["vae"]].state == "present"  # changed since verified

    result = inventory.verify(volume, [], "tiny-flux")[0].engines["diffusers"]
    problem = by_dest(result)[DIFFUSERS["vae"]].problem
    assert str(vae) in problem and "test-org/tiny-flux/vae/diffusion_pytorch_model.safetensors" in problem
    assert not result.ready and result.state == "partial" and result.missing_bytes == tiny.FILES["vae"][2]


def test_hf_cache_file_is_linked_not_copied(volume: Volume, tmp_path: Path) -> None:
    cache = tmp_path / "hf-cache"
    blob = tiny.hf_cache_file(cache, tiny.ENCODERS, "t5xxl_fp16.safetensors", tiny.content("t5_fp16"))
    # ae.safetensors cached under ANOTHER repository (e.g. FLUX.1-schnell): found by its sha256, the blob name.
    ae_blob = tiny.hf_cache_file(cache, "other-org/another-flux", "ae.safetensors", tiny.content("ae"))
    status = by_dest(engines(volume)["comfyui"])
    t5 = status["text_encoders/t5xxl_fp16.safetensors"]
    assert (t5.state, t5.source, t5.where) == ("present", "hf_cache", blob)
    assert status["vae/ae.safetensors"].where == ae_blob

    plan = planning.plan_download(volume, [], "tiny-flux", ["comfyui"])
    fetched = {Path(f["dest"]).name for f in plan.spec["files"]}
    assert fetched == {"tiny-flux.safetensors", "clip_l.safetensors"}
    assert {r["source"] for r in plan.reused} == {"hf_cache"} and all(r["checked"] for r in plan.reused)
    assert plan.download_bytes == tiny.FILES["single"][2] + tiny.FILES["clip_l"][2]
    run_links(plan)
    dest = volume.models_dir / "text_encoders/t5xxl_fp16.safetensors"
    assert dest.is_symlink() or os.stat(dest).st_ino == os.stat(blob).st_ino  # a link: no second copy
    assert dest.read_bytes() == tiny.content("t5_fp16")
    assert by_dest(engines(volume)["comfyui"])["text_encoders/t5xxl_fp16.safetensors"].source == "volume"


def test_an_existing_comfyui_models_folder_is_used_where_it_is(volume: Volume, tmp_path: Path) -> None:
    extra = tmp_path / "ComfyUI" / "models"
    tiny.place(extra, "single", "unet/tiny-flux.safetensors")  # the old folder name ComfyUI still reads
    tiny.place(extra, "ae", "vae/ae.safetensors")
    tiny.place(extra, "clip_l", "clip/clip_l.safetensors")
    tiny.place(extra, "t5_fp8", "clip/t5xxl_fp8_e4m3fn.safetensors")
    status = engines(volume, [extra])["comfyui"]
    assert status.variant == "fp8" and status.ready and status.state == "present"
    assert all(f.source == "extra_dir" and f.in_place for f in status.files)
    assert inventory.production_model_ready(volume, [extra])
    plan = planning.plan_download(volume, [extra], "tiny-flux", ["comfyui"], "fp8")
    assert plan.nothing_to_do

    # Found elsewhere in the folder (not where ComfyUI looks): checked by hash, then linked into the volume.
    tiny.place(extra, "t5_fp16", "downloads/t5.safetensors")
    plan = planning.plan_download(volume, [extra], "tiny-flux", ["comfyui"], "fp16")
    assert plan.spec["files"] == []
    assert plan.spec["links"] == [{"src": str(extra / "downloads/t5.safetensors"),
                                   "dest": str(volume.models_dir / "text_encoders/t5xxl_fp16.safetensors")}]
    assert ledger.verified_sha256(volume.models_dir, extra / "downloads/t5.safetensors") == tiny.sha256("t5_fp16")


def test_a_same_size_impostor_is_downloaded_instead(volume: Volume, tmp_path: Path) -> None:
    extra = tmp_path / "other"
    tiny.place(extra, "t5_fp16", "stuff/t5.safetensors", data=bytes(tiny.FILES["t5_fp16"][2]))
    plan = planning.plan_download(volume, [extra], "tiny-flux", ["comfyui"])
    assert "t5xxl_fp16.safetensors" in {Path(f["dest"]).name for f in plan.spec["files"]}
    assert plan.reused == []


def test_one_download_serves_every_engine(volume: Volume) -> None:
    plan = planning.plan_download(volume, [], "tiny-flux", ["comfyui", "diffusers", "aitoolkit"])
    keys = [(f["repo"], f["path"]) for f in plan.spec["files"]]
    assert len(keys) == len(set(keys))
    # ComfyUI's VAE and CLIP-L come from the diffusers download of the same job, linked after it.
    assert (tiny.REPO, "ae.safetensors") not in keys and (tiny.ENCODERS, "clip_l.safetensors") not in keys
    links = {Path(item["dest"]).relative_to(volume.models_dir).as_posix(): item["src"] for item in plan.spec["links"]}
    assert links == {"vae/ae.safetensors": str(volume.models_dir / DIFFUSERS["vae"]),
                     "text_encoders/clip_l.safetensors": str(volume.models_dir / DIFFUSERS["text_encoder"])}
    assert plan.spec["files"][0]["gated"] is True and plan.enough_space and plan.unknown_sizes == 3
    only_comfy = planning.plan_download(volume, [], "tiny-flux", ["comfyui"], "fp8")
    assert {Path(f["path"]).name for f in only_comfy.spec["files"]} == {
        "tiny-flux.safetensors", "ae.safetensors", "clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors"}


def test_remove_keeps_what_another_engine_reads(volume: Volume) -> None:
    place_diffusers(volume)
    for fid, dest in (("single", "diffusion_models/tiny-flux.safetensors"),
                      ("t5_fp16", "text_encoders/t5xxl_fp16.safetensors")):
        tiny.place(volume.models_dir, fid, dest)
    models = volume.models_dir
    (models / "vae").mkdir()
    os.symlink(models / DIFFUSERS["vae"], models / "vae/ae.safetensors")
    link_file(models / DIFFUSERS["text_encoder"], models / "text_encoders/clip_l.safetensors")  # a hard link
    assert engines(volume)["comfyui"].ready

    # AI-Toolkit reads the same folder as the built-in engine: removing one engine's files removes nothing.
    assert removal.remove(volume, "tiny-flux", ["diffusers"]) == 0
    assert engines(volume)["aitoolkit"].ready

    freed = removal.remove(volume, "tiny-flux", ["diffusers", "aitoolkit"])
    assert (models / DIFFUSERS["vae"]).is_file()  # ComfyUI's vae symlink points at it: kept
    assert not (models / DIFFUSERS["transformer_shard_1"]).exists() and not (models / "Tiny-FLUX/transformer").exists()
    assert (models / "text_encoders/clip_l.safetensors").read_bytes() == tiny.content("text_encoder")  # hard link
    shards = tiny.FILES["transformer_shard_1"][2] + tiny.FILES["transformer_shard_2"][2]
    assert freed == shards + sum(len(tiny.content(f)) for f in ("model_index", "transformer_config", "vae_config"))
    assert engines(volume)["comfyui"].ready

    removal.remove(volume, "tiny-flux")
    assert engines(volume)["comfyui"].state == "missing" and models.is_dir()


def test_a_whole_diffusers_snapshot_in_the_hf_cache_becomes_the_model_folder(volume: Volume, tmp_path: Path) -> None:
    cache = tmp_path / "hf-cache"
    for fid in tiny.DIFFUSERS_IDS:
        blob = tiny.hf_cache_file(cache, tiny.REPO, tiny.FILES[fid][1], tiny.content(fid))
        if fid in tiny.SMALL:  # a small file's blob is named by its git id, not by a sha256
            blob.rename(blob.with_name("1234abcd" + fid))
            link = cache / f"models--{tiny.REPO.replace('/', '--')}/snapshots/{'0' * 40}/{tiny.FILES[fid][1]}"
            link.unlink()
            link.symlink_to(os.path.relpath(blob.with_name("1234abcd" + fid), link.parent))
    assert all(f.source == "hf_cache" for f in engines(volume)["diffusers"].files)
    assert not engines(volume)["diffusers"].ready  # the built-in engine reads models/Tiny-FLUX, not the cache

    plan = planning.plan_download(volume, [], "tiny-flux", ["diffusers"])
    assert plan.spec["files"] == [] and plan.download_bytes == 0 and len(plan.spec["links"]) == 7
    run_links(plan)
    status = engines(volume)["diffusers"]
    assert status.ready and all(f.source == "volume" for f in status.files)


def test_a_file_without_a_published_sha256_is_only_taken_from_the_same_layout(volume: Volume, tmp_path: Path) -> None:
    extra = tmp_path / "models"
    # Same size and name as the catalogue's config, but in another model's folder: not taken.
    tiny.place(extra, "model_index", "Other-FLUX/model_index.json")
    assert by_dest(engines(volume, [extra])["diffusers"])[DIFFUSERS["model_index"]].state == "missing"
    tiny.place(extra, "model_index", "Tiny-FLUX/model_index.json")
    found = by_dest(engines(volume, [extra])["diffusers"])[DIFFUSERS["model_index"]]
    assert (found.state, found.where) == ("present", extra / "Tiny-FLUX/model_index.json")
    # The model's own folder added in Settings works as well as the folder above it.
    found = by_dest(engines(volume, [extra / "Tiny-FLUX"])["diffusers"])[DIFFUSERS["model_index"]]
    assert found.where == extra / "Tiny-FLUX/model_index.json"


def test_comfyui_is_ready_only_once_the_shared_vae_is_linked_into_its_folder(volume: Volume) -> None:
    place_diffusers(volume)
    for fid, dest in (("single", "diffusion_models/tiny-flux.safetensors"),
                      ("clip_l", "text_encoders/clip_l.safetensors"),
                      ("t5_fp16", "text_encoders/t5xxl_fp16.safetensors")):
        tiny.place(volume.models_dir, fid, dest)
    comfy = engines(volume)["comfyui"]
    vae = by_dest(comfy)["vae/ae.safetensors"]
    assert (vae.state, vae.where, vae.in_place) == ("present", volume.models_dir / DIFFUSERS["vae"], False)
    assert comfy.state == "present" and not comfy.ready  # ComfyUI reads vae/, where nothing is yet
    plan = planning.plan_download(volume, [], "tiny-flux", ["comfyui"])
    assert plan.spec["files"] == [] and [r["source"] for r in plan.reused] == ["volume"]
    run_links(plan)
    assert engines(volume)["comfyui"].ready


def test_a_file_found_to_be_another_is_remembered_and_downloaded_again(volume: Volume, tmp_path: Path) -> None:
    extra = tmp_path / "ComfyUI" / "models"
    impostor = tiny.place(extra, "single", "unet/tiny-flux.safetensors", data=bytes(tiny.FILES["single"][2]))
    assert by_dest(engines(volume, [extra])["comfyui"])["diffusion_models/tiny-flux.safetensors"].in_place
    checked = by_dest(inventory.verify(volume, [extra], "tiny-flux")[0].engines["comfyui"])
    item = checked["diffusion_models/tiny-flux.safetensors"]
    assert item.state == "missing" and str(impostor) in item.problem and "not used as that file" in item.problem
    # The cheap status remembers it (the ledger holds its hash) and the plan downloads the real one.
    again = by_dest(engines(volume, [extra])["comfyui"])["diffusion_models/tiny-flux.safetensors"]
    assert again.state == "missing" and again.where is None
    plan = planning.plan_download(volume, [extra], "tiny-flux", ["comfyui"])
    assert "tiny-flux.safetensors" in {Path(f["dest"]).name for f in plan.spec["files"]}

    wrong = tiny.place(volume.models_dir, "vae", DIFFUSERS["vae"], data=bytes(tiny.FILES["vae"][2]))
    inventory.verify(volume, [], "tiny-flux")
    status = by_dest(engines(volume)["diffusers"])[DIFFUSERS["vae"]]
    assert status.state == "missing" and str(wrong) in status.problem
    plan = planning.plan_download(volume, [], "tiny-flux", ["diffusers"])
    assert str(wrong) in {f["dest"] for f in plan.spec["files"]}


def test_the_hf_cache_is_found_where_huggingface_hub_puts_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from isengard_desktop.core.models.reuse import hf_hub_cache

    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    assert hf_hub_cache() == tmp_path / "hf-home" / "hub"  # read now, not when huggingface_hub was imported
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert hf_hub_cache() == tmp_path / "elsewhere"
