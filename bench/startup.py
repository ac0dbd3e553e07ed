"""Benchmark: from process start to the main window shown, median of 5 (target < 1.5 s).

Starts `python -m isengard_desktop --volume V` with ISENGARD_EXIT_AFTER_SHOW=1 (the window quits
right after its first show) and times it from outside, so interpreter start-up counts too. The
volume holds a few characters and photos so the Characters tab has cards to draw. Uses Xvfb when
DISPLAY is set (run under xvfb-run), the offscreen platform otherwise.

    .venv/bin/python bench/startup.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def prepare(volume: Path) -> None:
    from PIL import Image

    from isengard_desktop.context import AppContext

    ctx = AppContext.open(volume, "fast-test")
    photos = volume.parent / "photos"
    photos.mkdir()
    for i in range(12):
        Image.new("RGB", (640, 800), (20 * i, 100, 150)).save(photos / f"{i}.jpg")
    for name in ("Ada", "Bob", "Cleo"):
        ctx.importer.run(ctx.characters.create(name, f"ohwx_{name.lower()}").id, [photos])
    ctx.close()


def main() -> None:
    env = dict(os.environ, ISENGARD_EXIT_AFTER_SHOW="1", ISENGARD_MODE="fast-test")
    if not env.get("DISPLAY"):
        env["QT_QPA_PLATFORM"] = "offscreen"
    times, inside = [], []
    with tempfile.TemporaryDirectory() as folder:
        volume = Path(folder) / "volume"
        prepare(volume)
        for _ in range(5):
            start = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "isengard_desktop", "--volume", str(volume)],
                                 capture_output=True, text=True, env=env, timeout=60)
            line = next(row for row in out.stdout.splitlines() if row.startswith("startup_s="))
            times.append(time.perf_counter() - start)
            inside.append(float(line.split("=")[1]))
    platform = "xvfb" if env.get("DISPLAY") else "offscreen"
    print(f"platform                         : {platform}")
    print(f"process start -> window shown    : median {statistics.median(times):.3f} s "
          f"({', '.join(f'{t:.2f}' for t in times)}) (includes process exit)")
    print(f"app import -> first frame (in-app): median {statistics.median(inside):.3f} s")


if __name__ == "__main__":
    main()
