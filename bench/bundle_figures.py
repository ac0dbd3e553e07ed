"""Benchmark: the installer bundle against the source checkout.

Figures: the bundle's size; the cold start of the window (process start to first frame, median of 5, the
ISENGARD_EXIT_AFTER_SHOW hook of bench/startup.py); the first tiny training run (`isengard train --preset quick
--steps 6` on a fresh volume, including worker start-up and torch's import, median of 3); each as bundle/source
ratio. Warm disk cache, runs interleaved; --drop-caches adds one start of each with an empty page cache (root).
With --build, also the build time (python packaging/build.py).

    .venv/bin/python bench/bundle_figures.py [--bundle dist/isengard-desktop] [--build] [--drop-caches]
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

ROOT = Path(__file__).resolve().parent.parent


def folder_size(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file() and not entry.is_symlink())


def _env() -> dict[str, str]:
    env = dict(os.environ, ISENGARD_MODE="fast-test")
    if not env.get("DISPLAY"):
        env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def _prepare(command: list[str], volume: Path, photos: Path) -> None:
    subprocess.run([*command, "--volume", str(volume), "characters", "create", "Ada", "--trigger", "ohwx_ada"],
                   check=True, capture_output=True, env=_env())
    subprocess.run([*command, "--volume", str(volume), "dataset", "import", "Ada", str(photos)], check=True,
                   capture_output=True, env=_env())
    # The main window, not the first-run page (as after Skip): the figure compares like with like.
    path = volume / "settings.json"
    path.write_text(json.dumps({**json.loads(path.read_text(encoding="utf-8")), "first_run_done": True}))


def _photos(folder: Path) -> Path:
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        image = Image.new("RGB", (512, 640), (30 + 40 * i, 120, 200 - 30 * i))
        ImageDraw.Draw(image).ellipse((120 + 10 * i, 120, 380, 460), fill=(240, 200, 160))
        image.save(folder / f"ada-{i}.jpg", quality=92)
    return folder


def startup_once(command: list[str], volume: Path) -> float:
    start = time.perf_counter()
    out = subprocess.run([*command, "--volume", str(volume)], capture_output=True, text=True,
                         env=dict(_env(), ISENGARD_EXIT_AFTER_SHOW="1"), timeout=120)
    if "startup_s=" not in out.stdout:
        raise SystemExit(f"{command} did not show its window: {out.stderr[-1500:]}")
    return time.perf_counter() - start


def training_once(command: list[str], volume: Path, photos: Path) -> float:
    _prepare(command, volume, photos)
    start = time.perf_counter()
    subprocess.run([*command, "--volume", str(volume), "train", "Ada", "--preset", "quick", "--steps", "6", "--json"],
                   check=True, capture_output=True, env=_env(), timeout=600)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", type=Path, default=ROOT / "dist" / "isengard-desktop")
    parser.add_argument("--build", action="store_true", help="build the bundle first and time it")
    parser.add_argument("--drop-caches", action="store_true", help="also one start each with an empty page cache")
    args = parser.parse_args()
    if args.build:
        start = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "packaging" / "build.py")], check=True, cwd=ROOT)
        print(f"build time                 : {time.perf_counter() - start:.0f} s")
    bundle = [str(args.bundle / "isengard")]
    source = [sys.executable, "-m", "isengard_desktop"]
    print(f"bundle size                : {folder_size(args.bundle) / 1e6:.0f} MB")
    commands = {"source": source, "bundle": bundle}
    starts: dict[str, list[float]] = {name: [] for name in commands}
    trainings: dict[str, list[float]] = {name: [] for name in commands}
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        photos = _photos(base / "photos")
        for name, command in commands.items():
            _prepare(command, base / f"window-{name}", photos)
            startup_once(command, base / f"window-{name}")  # warm the disk cache once: both start warm
        # Interleaved, so that load from other processes on this shared machine falls on both alike.
        for _ in range(5):
            for name, command in commands.items():
                starts[name].append(startup_once(command, base / f"window-{name}"))
        for i in range(3):
            for name, command in commands.items():
                trainings[name].append(training_once(command, base / f"train-{name}-{i}", photos))
        if args.drop_caches:  # truly cold: nothing of either in the page cache (root only; slows others briefly)
            for name, command in commands.items():
                subprocess.run(["sync"], check=True)
                Path("/proc/sys/vm/drop_caches").write_text("3\n")
                print(f"first start after dropping the page cache, {name}: "
                      f"{startup_once(command, base / f'window-{name}'):.2f} s")
    figures = {name: (statistics.median(starts[name]), statistics.median(trainings[name])) for name in commands}
    platform = "xvfb" if os.environ.get("DISPLAY") else "offscreen"
    for index, label in ((0, f"window start ({platform})"), (1, "first tiny training run")):
        src, bun = figures["source"][index], figures["bundle"][index]
        print(f"{label:27s}: bundle {bun:.2f} s, source {src:.2f} s, ratio {bun / src:.2f}")


if __name__ == "__main__":
    main()
