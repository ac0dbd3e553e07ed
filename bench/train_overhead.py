"""Benchmark: the app's training overhead on the tiny model (issue: ratio <= 1.10 whole, <= 1.02 per step).

Times `isengard train --steps N` (worker start-up, dataset, caching, checkpoints, final LoRA, all of it)
against a minimal plain diffusers + peft loop over the same tiny model, data and thread count, each in a
fresh process. Prints both wall times, both per-step times and the ratios.

    .venv/bin/python bench/train_overhead.py [--steps 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_photos(folder: Path) -> None:
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        image = Image.new("RGB", (64, 48), (30 + 40 * i, 120, 200 - 30 * i))
        ImageDraw.Draw(image).ellipse((12 + 3 * i, 6, 44, 40), fill=(240, 200, 160))
        image.save(folder / f"ada-{i}.png")


def isengard(volume: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ISENGARD_MODE": "fast-test"}
    return subprocess.run([sys.executable, "-m", "isengard_desktop", "--volume", str(volume), *args],
                          capture_output=True, text=True, env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="isengard-bench-train-"))
    photos, volume = work / "photos", work / "volume"
    make_photos(photos)
    isengard(volume, "characters", "create", "Ada", "--trigger", "ohwx_ada")
    isengard(volume, "dataset", "import", "Ada", str(photos))
    # A first short run installs the tiny model into the volume, as the first use on a new machine would.
    isengard(volume, "train", "Ada", "--preset", "quick", "--engine", "diffusers", "--steps", "2")
    model = volume / "models" / "tiny-flux"

    app_walls, app_steps, plain_walls, plain_steps = [], [], [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        out = isengard(volume, "train", "Ada", "--preset", "quick", "--engine", "diffusers", "--steps",
                       str(args.steps), "--save-every", str(args.steps), "--sample-every", str(args.steps),
                       "--json-events")
        app_walls.append(time.perf_counter() - start)
        progress = [json.loads(line) for line in out.stdout.splitlines() if '"progress"' in line]
        app_steps.append(1.0 / progress[-1]["it_per_s"])

        start = time.perf_counter()
        plain = subprocess.run([sys.executable, str(ROOT / "bench" / "_plain_flux_loop.py"), str(model), str(photos),
                                str(args.steps), str(work / "plain")], capture_output=True, text=True, check=True)
        plain_walls.append(time.perf_counter() - start)
        plain_steps.append(json.loads(plain.stdout.strip().splitlines()[-1])["s_per_step"])

    app_wall, plain_wall = statistics.median(app_walls), statistics.median(plain_walls)
    app_step, plain_step = statistics.median(app_steps), statistics.median(plain_steps)
    print(f"steps per run              : {args.steps} (tiny FLUX, 64 px, 1 thread, median of {args.repeats})")
    print(f"isengard train wall time   : {app_wall:.2f} s   ({', '.join(f'{t:.2f}' for t in app_walls)})")
    print(f"plain diffusers wall time  : {plain_wall:.2f} s   ({', '.join(f'{t:.2f}' for t in plain_walls)})")
    print(f"ratio wall (target <= 1.10): {app_wall / plain_wall:.3f}")
    print(f"isengard s/step            : {app_step * 1000:.2f} ms")
    print(f"plain s/step               : {plain_step * 1000:.2f} ms")
    print(f"ratio per step (<= 1.02)   : {app_step / plain_step:.3f}")


if __name__ == "__main__":
    main()
