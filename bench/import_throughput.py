"""Benchmark: photo import throughput (issue target: ratio >= 1.0 against plain Pillow).

Makes 300 synthetic 4000x3000 JPEGs (cached between runs), then times
  (a) a plain-Pillow baseline in ONE process that only decodes and thumbnails each file, and
  (b) `Importer.run` into a fresh volume (hash, full integrity decode, EXIF, thumbnail, atomic copy,
      database rows), which uses both cores.
Prints images per second for both and their ratio.

    .venv/bin/python bench/import_throughput.py [--count 300]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageFilter

CACHE = Path(tempfile.gettempdir()) / "isengard-bench-photos-4000x3000"


def make_photos(count: int) -> list[Path]:
    CACHE.mkdir(exist_ok=True)
    paths = []
    base = Image.effect_noise((1000, 750), 64).convert("RGB").filter(ImageFilter.GaussianBlur(2))
    for i in range(count):
        path = CACHE / f"IMG_{i:04d}.jpg"
        if not path.exists():
            rng = random.Random(i)
            tint = Image.new("RGB", base.size, tuple(rng.randint(0, 255) for _ in range(3)))
            detail = Image.effect_noise((4000, 3000), 30).convert("RGB")
            photo = Image.blend(Image.blend(base, tint, 0.4).resize((4000, 3000), Image.Resampling.BICUBIC),
                                detail, 0.15)
            photo.save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def baseline(paths: list[Path]) -> float:
    start = time.perf_counter()
    for path in paths:
        with Image.open(path) as image:
            image.thumbnail((256, 256))
    return time.perf_counter() - start


def ours(paths: list[Path]) -> float:
    from isengard_desktop.context import AppContext

    with tempfile.TemporaryDirectory() as folder:
        ctx = AppContext.open(Path(folder) / "volume", "fast-test")
        character = ctx.characters.create("Bench", "ohwx_bench")
        start = time.perf_counter()
        report = ctx.importer.run(character.id, paths)
        elapsed = time.perf_counter() - start
        assert len(report.imported) == len(paths), report.refused[:3]
        ctx.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    paths = make_photos(args.count)
    size_mb = sum(p.stat().st_size for p in paths) / 2**20
    base_s = baseline(paths)
    our_s = ours(paths)
    print(f"photos                      : {len(paths)} × 4000×3000 JPEG ({size_mb:.0f} MB)")
    print(f"plain Pillow (1 process)    : {base_s:.2f} s = {len(paths) / base_s:.1f} images/s")
    print(f"Isengard import             : {our_s:.2f} s = {len(paths) / our_s:.1f} images/s")
    print(f"ratio ours/baseline (>= 1.0): {base_s / our_s:.2f}")


if __name__ == "__main__":
    main()
