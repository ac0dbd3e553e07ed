"""Benchmark (issue 12 item 7): Check photos' throughput and peak memory for 200 photos, and the detector's and the
embedder's size on disk.

Makes 200 real photographs (scikit-image's, resized to 1024-3000 px, cropped, blurred, re-encoded: the sizes a
phone and a camera give), imports them into a character of a fresh fast-test volume, then times
`isengard dataset check` as a whole command twice: cold (every photo measured: two worker processes on the CPU,
the tiny embedder) and warm (every figure from the cache). Peak RSS is sampled every 20 ms over the CLI process
and all its children (the job's worker and its two measuring processes), both as a sum and per process.

    .venv/bin/python bench/photo_check.py [--photos 200]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

INSTALLED = Path(sys.executable).parent / "isengard"


def make_photos(folder: Path, count: int) -> None:
    from PIL import Image, ImageFilter
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    sources = [Image.fromarray(getattr(data, n)()).convert("RGB")
               for n in ("astronaut", "coffee", "chelsea", "rocket", "camera", "hubble_deep_field")]
    rng = random.Random(12)
    for i in range(count):
        image = sources[i % len(sources)]
        w, h = image.size
        left, top = rng.randint(0, w // 10), rng.randint(0, h // 10)
        image = image.crop((left, top, w - rng.randint(0, w // 10), h - rng.randint(0, h // 10)))
        long_side = rng.randint(1024, 3000)
        scale = long_side / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
        if i % 7 == 3:
            image = image.filter(ImageFilter.GaussianBlur(3))
        image.save(folder / f"photo_{i:03d}.jpg", quality=rng.choice((70, 85, 95)))


def _mean_megapixels(folder: Path) -> float:
    from PIL import Image

    sizes = []
    for path in folder.iterdir():
        with Image.open(path) as image:
            sizes.append(image.size[0] * image.size[1])
    return sum(sizes) / len(sizes) / 1e6


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, int, int, str, float]:
    """Wall seconds, peak summed RSS and peak single-process RSS of the command's process tree, stdout, and the CPU
    seconds the whole tree used (the machine may be shared: CPU time says what the check costs by itself)."""
    cpu_before = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    root = psutil.Process(proc.pid)
    peak_sum = peak_one = 0
    while proc.poll() is None:
        try:
            members = [root, *root.children(recursive=True)]
        except psutil.Error:
            break
        sizes = []
        for member in members:
            try:
                sizes.append(member.memory_info().rss)
            except psutil.Error:
                pass
        peak_sum, peak_one = max(peak_sum, sum(sizes)), max(peak_one, max(sizes, default=0))
        time.sleep(0.02)
    out = proc.stdout.read() if proc.stdout else ""
    proc.wait()
    return time.perf_counter() - started, peak_sum, peak_one, out, _children_cpu() - cpu_before


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # every waited-for descendant: CLI, worker, its pool
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=200)
    args = parser.parse_args()
    env = {**os.environ, "ISENGARD_MODE": "fast-test"}
    with tempfile.TemporaryDirectory() as tmp:
        volume, folder = Path(tmp) / "vol", Path(tmp) / "photos"
        make_photos(folder, args.photos)
        megapixels = _mean_megapixels(folder)
        base = [str(INSTALLED), "--volume", str(volume)]
        subprocess.run(base + ["characters", "create", "Bench", "--trigger", "ohwx_bench"], env=env, check=True,
                       capture_output=True)
        subprocess.run(base + ["dataset", "import", "Bench", str(folder)], env=env, check=True, capture_output=True)
        for label in ("cold", "warm"):
            seconds, peak_sum, peak_one, out, cpu = run(base + ["--json", "dataset", "check", "Bench"], env)
            report = json.loads(out)
            print(f"{label}: {args.photos} photos (mean {megapixels:.1f} MP) in {seconds:.1f} s = "
                  f"{args.photos / seconds:.1f} photos/s (whole command); peak RSS {peak_sum / 2**20:.0f} MB "
                  f"summed over the process tree, {peak_one / 2**20:.0f} MB the largest process; "
                  f"{report['summary']['flagged']} flagged; {cpu:.1f} CPU-s = {args.photos / cpu:.2f} photos per "
                  f"CPU-second (so at most {2 * args.photos / cpu:.1f} photos/s on 2 idle cores); load average "
                  f"{os.getloadavg()[0]:.1f}")
        log = sorted((volume / "jobs").glob("*/job.log"))[0].read_text(encoding="utf-8", errors="replace")
        measured = [json.loads(line) for line in log.splitlines() if '"photo_check_finished"' in line]
        if measured:
            job_s = measured[0].get("seconds")
            print(f"cold, measuring alone (job log): {job_s} s = {args.photos / job_s:.1f} photos/s on "
                  f"{min(2, os.cpu_count() or 1)} worker processes")
        import cv2

        from isengard_desktop.base import catalogue
        from isengard_desktop.core.photo_check.measure import detector_path
        from isengard_desktop.core.photo_check.tiny_embedder import model_bytes

        sface = catalogue.get("sface").files["sface"]
        print(f"detector {detector_path().name}: {detector_path().stat().st_size / 1e6:.2f} MB on disk "
              f"(inside opencv-python-headless {cv2.__version__})")
        print(f"embedder SFace: {sface.size / 1e6:.1f} MB (downloaded in production); tiny fast-test embedder: "
              f"{len(model_bytes()) / 1e3:.1f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
