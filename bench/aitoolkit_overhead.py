"""Benchmark: a 20-step tiny AI-Toolkit job through `isengard train --engine aitoolkit` versus
`python run.py` directly with the same config (issue target: wall-time ratio <= 1.05), and the extra
memory on the app's side (the CLI and worker processes, AI-Toolkit's own process not counted).

Needs ISENGARD_AITOOLKIT_DIR (checkout) and ISENGARD_AITOOLKIT_PYTHON (its environment).

    ISENGARD_AITOOLKIT_DIR=... ISENGARD_AITOOLKIT_PYTHON=... .venv/bin/python bench/aitoolkit_overhead.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def run_measured(command: list[str], env: dict, cwd: str | None = None) -> tuple[float, float]:
    """Wall time, and the peak summed RSS of the process tree minus AI-Toolkit's run.py process."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0.0
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            ours = sum(p.memory_info().rss for p in tree if "run.py" not in " ".join(p.cmdline()))
            peak = max(peak, ours)
        except psutil.Error:
            pass
        time.sleep(0.1)
    if proc.returncode != 0:
        raise SystemExit(f"{command[:4]} failed with exit code {proc.returncode}")
    return time.perf_counter() - start, peak / 2**20


def main() -> None:
    if not os.environ.get("ISENGARD_AITOOLKIT_DIR"):
        raise SystemExit("Set ISENGARD_AITOOLKIT_DIR and ISENGARD_AITOOLKIT_PYTHON first.")
    from PIL import Image

    work = Path(tempfile.mkdtemp(prefix="isengard-bench-aitk-"))
    volume, photos = work / "volume", work / "photos"
    photos.mkdir()
    for i in range(4):
        Image.new("RGB", (96, 80), (40 * i, 120, 160)).save(photos / f"{i}.png")
    env = {**os.environ, "ISENGARD_MODE": "fast-test"}
    base = [sys.executable, "-m", "isengard_desktop", "--volume", str(volume)]
    subprocess.run([*base, "characters", "create", "Ada", "--trigger", "ohwx_ada"], env=env, check=True,
                   capture_output=True)
    subprocess.run([*base, "dataset", "import", "Ada", str(photos)], env=env, check=True, capture_output=True)
    # Builds the tiny model into the volume first, as a first run on a new machine would.
    subprocess.run([*base, "train", "Ada", "--engine", "diffusers", "--preset", "quick", "--steps", "1"], env=env,
                   check=True, capture_output=True)
    train = [*base, "train", "Ada", "--engine", "aitoolkit", "--preset", "quick", "--steps", "20", "--save-every", "20",
             "--sample-every", "20"]
    app_s, app_rss = run_measured(train, env)
    job = sorted((volume / "jobs").iterdir())[-1]
    config = json.loads((job / "aitoolkit_job.json").read_text())
    config["config"]["process"][0]["training_folder"] = str(work / "direct")
    direct_config = work / "direct.json"
    direct_config.write_text(json.dumps(config))
    direct_s, _ = run_measured([os.environ["ISENGARD_AITOOLKIT_PYTHON"], "run.py", str(direct_config)], env,
                               cwd=os.environ["ISENGARD_AITOOLKIT_DIR"])
    print(f"isengard train --engine aitoolkit : {app_s:.1f} s")
    print(f"python run.py directly            : {direct_s:.1f} s")
    print(f"ratio (target <= 1.05)            : {app_s / direct_s:.3f}")
    print(f"app-side peak RSS (CLI + worker)  : {app_rss:.0f} MB")


if __name__ == "__main__":
    main()
