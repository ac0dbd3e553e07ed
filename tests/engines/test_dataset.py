"""Buckets, image loading and batch order of the diffusers engine (no model needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from engines.diffusers.dataset import (
    BatchOrder,
    buckets_for,
    choose_bucket,
    fit_to_bucket,
    load_image,
    plan_samples,
)
from engines.diffusers.errors import TrainingError
from engines.interface import DatasetItem


def save(path: Path, size: tuple[int, int], orientation: int | None = None) -> DatasetItem:
    image = Image.new("RGB", size, (90, 120, 200))
    if orientation is None:
        image.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(path, exif=exif)
    return DatasetItem(str(path), "a photo of ohwx")


def test_bucket_sides_are_multiples_of_16() -> None:
    for resolution in (64, 512, 768, 1024, 1000):
        for width, height in buckets_for(resolution):
            assert width % 16 == 0 and height % 16 == 0
            assert max(width, height) == resolution // 16 * 16


def test_never_upscales_and_matches_shape() -> None:
    assert choose_bucket((1000, 700), 1024) is None  # every 1024 bucket would need upscaling
    assert choose_bucket((1200, 800), 1024) == (1024, 672)
    assert choose_bucket((1200, 800), 512) == (512, 336)  # 3:2, short side floored to a multiple of 16
    assert choose_bucket((600, 900), 512) == (336, 512)
    assert choose_bucket((600, 1000), 512) == (288, 512)  # 3:5 is nearer 9:16 than 2:3
    assert choose_bucket((700, 700), 512) == (512, 512)


def test_small_image_goes_to_a_smaller_bucket_and_tiny_one_is_left_out(tmp_path: Path) -> None:
    items = [
        save(tmp_path / "big.png", (600, 600)),
        save(tmp_path / "small.png", (300, 200)),
        save(tmp_path / "tiny.png", (40, 40)),
    ]
    samples, skipped = plan_samples(items, [512])
    assert [(s.path.name, s.bucket) for s in samples] == [("big.png", (512, 512)), ("small.png", (288, 192))]
    assert len(skipped) == 1 and "tiny.png" in skipped[0]


def test_every_fitting_resolution_gets_a_sample(tmp_path: Path) -> None:
    samples, _ = plan_samples([save(tmp_path / "a.png", (1100, 1100))], [512, 1024])
    assert [s.bucket for s in samples] == [(512, 512), (1024, 1024)]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    item = save(tmp_path / "rotated.jpg", (120, 80), orientation=6)  # stored landscape, shown portrait
    assert load_image(Path(item.path)).size == (80, 120)
    samples, _ = plan_samples([item], [64])
    assert samples[0].bucket == (48, 64)
    assert fit_to_bucket(load_image(Path(item.path)), (48, 64)).size == (48, 64)


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="dataset is empty"):
        plan_samples([], [512])
    with pytest.raises(TrainingError, match="does not exist"):
        plan_samples([DatasetItem(str(tmp_path / "gone.png"), "x")], [512])
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(TrainingError, match="bad.png cannot be read"):
        plan_samples([DatasetItem(str(tmp_path / "bad.png"), "x")], [512])
    with pytest.raises(TrainingError, match="No training image fits a bucket"):
        plan_samples([save(tmp_path / "tiny.png", (32, 32))], [512])


def test_batch_order_is_a_pure_function_of_seed_and_step(tmp_path: Path) -> None:
    items = [save(tmp_path / f"{n}.png", size) for n, size in enumerate([(64, 64)] * 5 + [(96, 64)] * 2)]
    samples, _ = plan_samples(items, [64])
    order = BatchOrder(samples, batch_size=2, seed=1)
    fresh = BatchOrder(samples, batch_size=2, seed=1)
    assert order.batches_per_epoch == 3 + 1
    steps = [order.batch(step) for step in range(12)]
    assert [fresh.batch(step) for step in reversed(range(12))] == steps[::-1]
    for epoch in range(3):
        batches = order.epoch_batches(epoch)
        assert sorted(i for b in batches for i in b) == list(range(7))  # each sample once per epoch
        assert all(len({samples[i].bucket for i in b}) == 1 for b in batches)  # never mixed sizes
    assert order.epoch_batches(0) != order.epoch_batches(1)
