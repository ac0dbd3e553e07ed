"""VAE latents of the training images, encoded once per bucket and cached on disk.

The VAE is frozen, so an image at a bucket size always encodes to the same distribution. Its mean
and standard deviation are stored per bucket in ``output_dir/cache/latents_{W}x{H}.safetensors``; a
training step then draws a latent from that distribution (as diffusers' DreamBooth script does from
its in-memory cache) with the step's own generator, which keeps the draw reproducible on resume.
A cache file is reused only when its fingerprint (the images' bytes, the bucket and the VAE) matches.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from engines.diffusers.dataset import Bucket, Sample, fit_to_bucket, load_image
from isengard_desktop.base import atomic

log = structlog.get_logger(__name__)

CACHE_VERSION = 1  # bump when the way pixels become latents changes, so old caches are not reused


@dataclass
class LatentDist:
    """The VAE's posterior for one sample, kept on the CPU where each step draws from it."""

    mean: torch.Tensor  # [C, h, w]
    std: torch.Tensor  # [C, h, w]


def cache_latents(
    samples: list[Sample], vae: torch.nn.Module, cache_dir: Path, device: torch.device
) -> list[LatentDist]:
    """The latent distribution of every sample, in the order of ``samples``."""
    by_bucket: dict[Bucket, list[int]] = {}
    for position, sample in enumerate(samples):
        by_bucket.setdefault(sample.bucket, []).append(position)
    vae_key = _vae_key(vae)
    out: list[LatentDist | None] = [None] * len(samples)
    for bucket, positions in sorted(by_bucket.items()):
        members = [samples[p] for p in positions]
        path = cache_dir / f"latents_{bucket[0]}x{bucket[1]}.safetensors"
        fingerprint = _fingerprint(members, bucket, vae_key)
        tensors = _read(path, fingerprint)
        if tensors is None:
            tensors = _encode(members, bucket, vae, device)
            atomic.write_bytes(path, save(tensors, metadata={"fingerprint": fingerprint, "bucket": f"{bucket}"}))
            log.info("latents_cached", path=str(path), images=len(members))
        else:
            log.info("latent_cache_used", path=str(path), images=len(members))
        for row, position in enumerate(positions):
            out[position] = LatentDist(tensors["mean"][row], tensors["std"][row])
    return [dist for dist in out if dist is not None]


def pixels(sample: Sample) -> torch.Tensor:
    """The sample's image at its bucket size as a [3, H, W] tensor in [-1, 1]."""
    image = fit_to_bucket(load_image(sample.path), sample.bucket)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _encode(
    members: list[Sample], bucket: Bucket, vae: torch.nn.Module, device: torch.device
) -> dict[str, torch.Tensor]:
    started = time.perf_counter()
    means, stds = [], []
    with torch.no_grad():
        # One image at a time: a 1024 px FLUX VAE encode already needs gigabytes of activations.
        for sample in members:
            batch = pixels(sample).unsqueeze(0).to(device=device, dtype=vae.dtype)
            dist = vae.encode(batch).latent_dist
            means.append(dist.mean[0].float().cpu())
            stds.append(dist.std[0].float().cpu())
    log.info(
        "latents_encoded",
        bucket=f"{bucket[0]}x{bucket[1]}",
        images=len(members),
        seconds=round(time.perf_counter() - started, 3),
    )
    return {"mean": torch.stack(means).contiguous(), "std": torch.stack(stds).contiguous()}


def _read(path: Path, fingerprint: str) -> dict[str, torch.Tensor] | None:
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as handle:
        if (handle.metadata() or {}).get("fingerprint") != fingerprint:
            return None
    return load_file(str(path))


def _fingerprint(members: list[Sample], bucket: Bucket, vae_key: str) -> str:
    digest = hashlib.sha256(f"{CACHE_VERSION}|{bucket}|{vae_key}".encode())
    for sample in members:
        digest.update(hashlib.sha256(sample.path.read_bytes()).digest())
    return digest.hexdigest()


def _vae_key(vae: torch.nn.Module) -> str:
    config = dict(getattr(vae, "config", {}))
    shape = f"{sum(p.numel() for p in vae.parameters())}|{vae.dtype}"
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode() + shape.encode()).hexdigest()
