"""Benchmark (issue 12 item 7): automatic captions in fast-test, and the real captioning model's download size.

Prints, as JSON:
- the tiny Qwen3-VL's build time and size on disk (fresh folder each time, median of N builds; importing torch and
  transformers is timed apart);
- caption throughput with the model loaded (photos per second through Captioner.answer + the caption rules, on
  scikit-image's real photographs resized as the captioner resizes them), one thread as the worker uses;
- the whole job as a person runs it: `isengard dataset autocaption` in a fresh process (CLI, worker start-up with
  torch and transformers, model load, every photo, storing the captions), photos per second over that wall time;
- Qwen3-VL-4B-Instruct's download size from the catalogue (what `isengard models download` fetches).

    .venv/bin/python bench/captioning.py [--photos 24] [--builds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NAMES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "camera",
         "cat", "retina", "colorwheel")


def photos(folder: Path, count: int) -> list[Path]:
    """``count`` real photographs (scikit-image's, cycled; each copy slightly cropped so none is a duplicate)."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        image = Image.fromarray(getattr(data, NAMES[i % len(NAMES)])()).convert("RGB")
        image = image.crop((i, i, image.width - i, image.height - i))
        path = folder / f"photo-{i:03d}.png"
        image.save(path)
        out.append(path)
    return out


def build_times(builds: int) -> dict:
    started = time.perf_counter()
    # Timed apart: a fresh worker pays these imports once, whatever it builds or loads.
    import torch  # noqa: F401
    from transformers import PreTrainedTokenizerFast, Qwen3VLForConditionalGeneration  # noqa: F401

    from engines.captioning.tiny_model import build_tiny_qwen3_vl

    import_s = time.perf_counter() - started
    times, size = [], 0
    for _ in range(builds):
        folder = Path(tempfile.mkdtemp(prefix="tiny-qwen3-vl-"))
        started = time.perf_counter()
        build_tiny_qwen3_vl(folder)
        times.append(time.perf_counter() - started)
        size = sum(p.stat().st_size for p in folder.iterdir())
        shutil.rmtree(folder)
    return {"import_torch_transformers_s": round(import_s, 2),
            "tiny_build_s_median": round(statistics.median(times), 3), "tiny_build_s": [round(t, 3) for t in times],
            "tiny_size_bytes": size}


def warm_throughput(paths: list[Path]) -> dict:
    from engines.captioning.captioner import Captioner, load_image
    from engines.captioning.tiny_model import build_tiny_qwen3_vl
    from isengard_desktop.base.caption_text import finish_caption, instruction

    folder = build_tiny_qwen3_vl(Path(tempfile.mkdtemp(prefix="tiny-qwen3-vl-")))
    started = time.perf_counter()
    captioner = Captioner(folder, threads=1)
    load_s = time.perf_counter() - started
    captioner.answer(load_image(paths[0]), instruction())  # first call pays one-off set-up
    usable, tokens = 0, 0
    started = time.perf_counter()
    for path in paths:
        answer = captioner.answer(load_image(path), instruction())
        usable += finish_caption(answer.text, "ohwx_bench")[1]
        tokens += answer.new_tokens
    seconds = time.perf_counter() - started
    shutil.rmtree(folder)
    return {"load_s": round(load_s, 3), "warm_photos_per_s": round(len(paths) / seconds, 2),
            "warm_tokens_per_s": round(tokens / seconds, 1), "new_tokens_per_photo": round(tokens / len(paths), 1),
            "usable_answers": usable}


def job_throughput(paths: list[Path]) -> dict:
    volume = Path(tempfile.mkdtemp(prefix="caption-bench-"))
    env = {**os.environ, "ISENGARD_MODE": "fast-test"}

    def isengard(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "isengard_desktop", "--volume", str(volume), *args],
                              capture_output=True, text=True, env=env, check=True, cwd=ROOT).stdout

    isengard("characters", "create", "Bench", "--trigger", "ohwx_bench")
    isengard("dataset", "import", "Bench", str(paths[0].parent))
    runs = []
    for _ in range(2):  # the first run also builds the tiny model into the volume
        started = time.perf_counter()
        out = json.loads(isengard("--json", "dataset", "autocaption", "Bench", "--overwrite"))
        runs.append(time.perf_counter() - started)
    shutil.rmtree(volume, ignore_errors=True)
    return {"job_wall_s": [round(r, 2) for r in runs], "job_photos_per_s": round(len(paths) / runs[-1], 2),
            "job_stored": out["stored"]}


def download_size() -> dict:
    from isengard_desktop.base import catalogue
    from isengard_desktop.core.autocaption import ENGINE, MODEL_ID

    files = catalogue.get(MODEL_ID).placements(ENGINE)
    total = sum(p.file.size or 0 for p in files)
    return {"real_model": MODEL_ID, "real_download_bytes": total, "real_download_gb": round(total / 1e9, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--builds", type=int, default=3)
    args = parser.parse_args()
    paths = photos(Path(tempfile.mkdtemp(prefix="caption-photos-")), args.photos)
    figures = {"photos": args.photos, "cpu_count": os.cpu_count(), **build_times(args.builds),
               **warm_throughput(paths), **job_throughput(paths), **download_size()}
    sys.stdout.write(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
