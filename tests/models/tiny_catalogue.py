"""A tiny catalogue shaped like FLUX.1-dev's (diffusers layout + ComfyUI single files with an fp16/fp8 T5 and
alternatives), with real bytes, for model-manager tests: point ISENGARD_MODEL_CATALOGUE at it."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

REPO = "test-org/tiny-flux"
ENCODERS = "test-org/tiny-encoders"
BIG = 1_200_000  # above reuse's MIN_SIZE_MATCH, so big files are matched by size in extra folders

# file id -> (repo, path, size); small json files get a few bytes and no size/sha in the catalogue, like the hub's.
FILES: dict[str, tuple[str, str, int]] = {
    "model_index": (REPO, "model_index.json", 60),
    "transformer_config": (REPO, "transformer/config.json", 40),
    "transformer_shard_1": (REPO, "transformer/diffusion_pytorch_model-00001-of-00002.safetensors", BIG + 11),
    "transformer_shard_2": (REPO, "transformer/diffusion_pytorch_model-00002-of-00002.safetensors", BIG + 12),
    "vae_config": (REPO, "vae/config.json", 30),
    "vae": (REPO, "vae/diffusion_pytorch_model.safetensors", BIG + 13),
    "text_encoder": (REPO, "text_encoder/model.safetensors", BIG + 14),
    "single": (REPO, "tiny-flux.safetensors", BIG + 15),
    "ae": (REPO, "ae.safetensors", BIG + 16),
    "clip_l": (ENCODERS, "clip_l.safetensors", BIG + 17),
    "t5_fp16": (ENCODERS, "t5xxl_fp16.safetensors", BIG + 18),
    "t5_fp8": (ENCODERS, "t5xxl_fp8_e4m3fn.safetensors", BIG + 19),
}
SMALL = {"model_index", "transformer_config", "vae_config"}
DIFFUSERS_IDS = ("model_index", "transformer_config", "transformer_shard_1", "transformer_shard_2", "vae_config", "vae",
                 "text_encoder")


def content(file_id: str) -> bytes:
    size = FILES[file_id][2]
    return random.Random(file_id).randbytes(size)


def sha256(file_id: str) -> str:
    return hashlib.sha256(content(file_id)).hexdigest()


def catalogue_data() -> dict:
    files = {}
    for fid, (repo, path, size) in FILES.items():
        small = fid in SMALL
        files[fid] = {"repo": repo, "path": path, "size": None if small else size,
                      "sha256": None if small else sha256(fid), "source": "tests/models/tiny_catalogue.py"}
    diffusers = [fid for fid in FILES if fid in DIFFUSERS_IDS]
    return {
        "schema_version": 1,
        "models": [{
            "id": "tiny-flux", "title": "Tiny FLUX", "family": "flux1", "repo": REPO, "gated": True,
            "licence_url": "https://example.invalid/licence", "description": "for tests",
            "files": files,
            "layouts": {
                "diffusers": {"folder": "Tiny-FLUX", "placements": [{"file": f} for f in diffusers]},
                "comfyui": {
                    "reads_extra_dirs": True,
                    "folder_aliases": {"diffusion_models": ["diffusion_models", "unet"],
                                       "text_encoders": ["text_encoders", "clip"], "vae": ["vae"]},
                    "variants": ["fp16", "fp8"],
                    "placements": [
                        {"file": "single", "dest": "diffusion_models/tiny-flux.safetensors"},
                        {"file": "ae", "alternatives": ["vae"], "dest": "vae/ae.safetensors"},
                        {"file": "clip_l", "alternatives": ["text_encoder"],
                         "dest": "text_encoders/clip_l.safetensors"},
                        {"file": "t5_fp16", "variant": "fp16", "dest": "text_encoders/t5xxl_fp16.safetensors"},
                        {"file": "t5_fp8", "variant": "fp8", "dest": "text_encoders/t5xxl_fp8_e4m3fn.safetensors"},
                    ],
                },
            },
            "engines": {"diffusers": "diffusers", "aitoolkit": "diffusers", "comfyui": "comfyui"},
        }],
    }


def write_catalogue(folder: Path) -> Path:
    path = folder / "tiny-catalogue.json"
    path.write_text(json.dumps(catalogue_data(), indent=1), encoding="utf-8")
    return path


def place(models_dir: Path, file_id: str, dest: str, data: bytes | None = None) -> Path:
    """Put a file where the volume's layout expects it (as a finished download would)."""
    path = models_dir / dest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content(file_id) if data is None else data)
    return path


def publish(fake_hub, gated_token: str | None = "hf_test_token") -> None:  # noqa: ANN001 - tests.models.fake_hub
    """Every file on a FakeHub (small ones as non-LFS files); the gated repo opened to ``gated_token``."""
    for fid, (repo, path, _) in FILES.items():
        fake_hub.add_file(repo, path, content(fid), lfs=fid not in SMALL, gated=(repo == REPO))
    if gated_token:
        fake_hub.add_token(gated_token, {REPO: "accepted"})


def hf_cache_file(cache: Path, repo: str, path: str, data: bytes, revision: str = "0" * 40) -> Path:
    """Lay a file out as huggingface_hub's cache does: blobs/<sha256> + snapshots/<rev>/<path> -> relative symlink."""
    root = cache / ("models--" + repo.replace("/", "--"))
    blob = root / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    link = root / "snapshots" / revision / path
    link.parent.mkdir(parents=True, exist_ok=True)
    import os

    link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(revision)
    return blob
