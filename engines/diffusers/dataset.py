"""Training images: loading, aspect-ratio buckets and the deterministic order batches are drawn in.

Every image is loaded upright (EXIF orientation applied) in RGB. For each resolution of the spec it
joins the bucket whose aspect ratio is nearest its own, provided the image is at least as large as
the bucket, because upscaling a small photo teaches the LoRA blur. An image smaller than every bucket
of every resolution goes to a smaller bucket of its own shape instead; only one smaller than
``MIN_SIDE`` is left out. Bucket sides are multiples of 16: the VAE divides by 8 and FLUX packs 2x2
latent patches.

The batch order is a pure function of (seed, step), so a resumed run draws exactly the batches the
uninterrupted run would have drawn, without replaying the past.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from pathlib import Path

import structlog
from PIL import Image, ImageOps

from engines.diffusers.errors import TrainingError
from engines.interface import DatasetItem

log = structlog.get_logger(__name__)

MULTIPLE = 16
MIN_SIDE = 64  # below this an image carries no identity worth learning
# Width:height ratios offered at every resolution, the same shapes the Generate screen offers.
ASPECTS = ((1, 1), (4, 3), (3, 4), (3, 2), (2, 3), (16, 9), (9, 16))

Bucket = tuple[int, int]  # (width, height) in pixels


@dataclass(frozen=True)
class Sample:
    """One image at one bucket size: what a batch is made of."""

    index: int  # position in the spec's dataset
    path: Path
    caption: str
    bucket: Bucket


def buckets_for(resolution: int) -> list[Bucket]:
    """The buckets of one resolution: its long side is ``resolution``, its short side follows ASPECTS."""
    long_side = _floor(resolution)
    found: list[Bucket] = []
    for wide, high in ASPECTS:
        if wide >= high:
            bucket = (long_side, max(MULTIPLE, _floor(long_side * high / wide)))
        else:
            bucket = (max(MULTIPLE, _floor(long_side * wide / high)), long_side)
        if bucket not in found:
            found.append(bucket)
    return found


def choose_bucket(size: tuple[int, int], resolution: int) -> Bucket | None:
    """The bucket of ``resolution`` nearest in shape to an image of ``size`` that fits in it, or None."""
    width, height = size
    fitting = [b for b in buckets_for(resolution) if b[0] <= width and b[1] <= height]
    if not fitting:
        return None
    shape = math.log(width / height)
    # Nearest aspect ratio first; among equals the larger bucket keeps more of the photo.
    return min(fitting, key=lambda b: (abs(math.log(b[0] / b[1]) - shape), -b[0] * b[1]))


def smaller_bucket(size: tuple[int, int]) -> Bucket | None:
    """For an image smaller than every bucket: the largest bucket of its shape that fits, or None."""
    for resolution in range(_floor(max(size)), MIN_SIDE - 1, -MULTIPLE):
        bucket = choose_bucket(size, resolution)
        if bucket is not None:
            return bucket
    return None


def load_image(path: Path) -> Image.Image:
    """The image upright and in RGB; raises TrainingError naming the file when it cannot be read."""
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise TrainingError(f"The training image {path} cannot be read: {exc}.") from exc


def fit_to_bucket(image: Image.Image, bucket: Bucket) -> Image.Image:
    """Scale down so the image covers the bucket, then crop the centre to the bucket's size."""
    width, height = image.size
    scale = max(bucket[0] / width, bucket[1] / height)
    if scale < 1.0:
        resized = (max(bucket[0], round(width * scale)), max(bucket[1], round(height * scale)))
        image = image.resize(resized, Image.Resampling.LANCZOS)
    left = (image.width - bucket[0]) // 2
    top = (image.height - bucket[1]) // 2
    return image.crop((left, top, left + bucket[0], top + bucket[1]))


def plan_samples(items: list[DatasetItem], resolutions: list[int]) -> tuple[list[Sample], list[str]]:
    """Every (image, bucket) pair to train on, and a sentence for each image left out."""
    if not items:
        raise TrainingError("The dataset is empty: add photos to the character before training.")
    if not resolutions:
        raise TrainingError("The training spec has no resolution: give at least one, for example 512.")
    samples: list[Sample] = []
    skipped: list[str] = []
    for index, item in enumerate(items):
        path = Path(item.path)
        if not path.is_file():
            raise TrainingError(f"The training image {path} does not exist.")
        size = _upright_size(path)
        buckets = [b for r in sorted(set(resolutions)) if (b := choose_bucket(size, r)) is not None]
        if not buckets and (fallback := smaller_bucket(size)) is not None:
            buckets = [fallback]
        if not buckets:
            skipped.append(
                f"{path.name} is {size[0]}x{size[1]} px, too small or too narrow for any bucket "
                f"(at least {MIN_SIDE} px on the long side); left out."
            )
            continue
        samples += [Sample(index, path, item.caption, bucket) for bucket in dict.fromkeys(buckets)]
    if not samples:
        raise TrainingError(
            f"No training image fits a bucket: every image is under {MIN_SIDE} px on its long side or too "
            "narrow; use larger photos."
        )
    return samples, skipped


def _upright_size(path: Path) -> tuple[int, int]:
    # Only the header is read here; the pixels are decoded once, when latents are cached.
    try:
        with Image.open(path) as opened:
            width, height = opened.size
            orientation = opened.getexif().get(0x0112, 1)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"The training image {path} cannot be read: {exc}.") from exc
    # EXIF orientations 5-8 rotate by 90 degrees, which swaps width and height.
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _floor(value: float) -> int:
    return int(value) // MULTIPLE * MULTIPLE


class BatchOrder:
    """Which samples make up the batch of each step: a pure function of (seed, step).

    An epoch shuffles each bucket's samples, cuts them into batches (a batch never mixes bucket sizes)
    and shuffles the batches, with a random generator seeded from (seed, epoch) alone.
    """

    def __init__(self, samples: list[Sample], batch_size: int, seed: int) -> None:
        if batch_size < 1:
            raise TrainingError(f"The batch size must be at least 1, not {batch_size}.")
        self.seed = seed
        self.batch_size = batch_size
        self._by_bucket: dict[Bucket, list[int]] = {}
        for position, sample in enumerate(samples):
            self._by_bucket.setdefault(sample.bucket, []).append(position)
        self.batches_per_epoch = sum(math.ceil(len(v) / batch_size) for v in self._by_bucket.values())
        self._cached_epoch = -1
        self._cached: list[list[int]] = []

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        if epoch != self._cached_epoch:
            rng = random.Random(derive_seed(self.seed, "epoch", epoch))
            batches: list[list[int]] = []
            for bucket in sorted(self._by_bucket):
                members = list(self._by_bucket[bucket])
                rng.shuffle(members)
                batches += [members[i : i + self.batch_size] for i in range(0, len(members), self.batch_size)]
            rng.shuffle(batches)
            self._cached_epoch, self._cached = epoch, batches
        return self._cached

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, index within the epoch) of the 0-based ``step``."""
        return divmod(step, self.batches_per_epoch)

    def batch(self, step: int) -> list[int]:
        epoch, index = self.position(step)
        return self.epoch_batches(epoch)[index]

    def state(self, next_step: int) -> dict[str, int]:
        """What a checkpoint records: where the next batch comes from."""
        epoch, index = self.position(next_step)
        return {
            "seed": self.seed,
            "batch_size": self.batch_size,
            "epoch": epoch,
            "index": index,
            "batches_per_epoch": self.batches_per_epoch,
        }


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed from the run's seed and a purpose, so each stream of randomness is independent."""
    digest = hashlib.sha256(":".join(str(p) for p in (seed, *parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1
