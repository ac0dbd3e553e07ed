"""Benchmark: peak memory of `isengard dataset import` (issue 11, item 4).

Runs the real CLI in a subprocess on a fresh volume and samples the resident memory of the CLI and
all its descendants (the import pool's workers) every 20 ms. Prints the peak of the whole process
tree (the sum at one instant) and the peak of the largest single process.

    .venv/bin/python bench/import_memory.py huge-png      # one 10,000 x 10,000 RGBA PNG (~400 KB file)
    .venv/bin/python bench/import_memory.py photos [--count 300]   # 4000x3000 JPEGs from import_throughput
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
HUGE = Path(tempfile.gettempdir()) / "isengard-bench-huge-10000-rgba.png"


def make_huge_png() -> Path:
    if not HUGE.exists():
        from PIL import Image, ImageDraw

        image = Image.new("RGBA", (10_000, 10_000), (200, 120, 80, 255))
        ImageDraw.Draw(image).ellipse((2000, 2000, 8000, 8000), fill=(30, 60, 90, 128))
        image.save(HUGE, optimize=False)
    return HUGE


def tree_rss(proc: psutil.Process) -> tuple[int, int]:
    total = largest = 0
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    for member in members:
        try:
            rss = member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
        total += rss
        largest = max(largest, rss)
    return total, largest


def measure(paths: list[Path]) -> tuple[float, int, int, str]:
    with tempfile.TemporaryDirectory() as folder:
        volume = Path(folder) / "volume"
        cli = [sys.executable, "-m", "isengard_desktop", "--volume", str(volume)]
        subprocess.run([*cli, "characters", "create", "Bench", "--trigger", "ohwx_bench"], check=True,
                       capture_output=True, cwd=ROOT)
        start = time.perf_counter()
        # Output to files, not pipes: 300 files' JSON would fill a pipe nobody reads until the end.
        out_file, err_file = Path(folder) / "out.json", Path(folder) / "err.txt"
        with open(out_file, "w") as out_handle, open(err_file, "w") as err_handle:
            proc = subprocess.Popen([*cli, "dataset", "import", "Bench", *map(str, paths), "--json"], cwd=ROOT,
                                    stdout=out_handle, stderr=err_handle, text=True)
            watched = psutil.Process(proc.pid)
            peak_total = peak_single = 0
            while proc.poll() is None:
                total, single = tree_rss(watched)
                peak_total, peak_single = max(peak_total, total), max(peak_single, single)
                time.sleep(0.02)
        elapsed = time.perf_counter() - start
        out, err = out_file.read_text(), err_file.read_text()
        if proc.returncode in (0, 1):
            report = json.loads(out)
            summary = {key: len(report[key]) for key in ("imported", "duplicates", "refused")}
            summary["first_refusal"] = report["refused"][0]["reason"][:160] if report["refused"] else ""
        else:
            summary = err[-500:]
        return elapsed, peak_total, peak_single, f"exit {proc.returncode}: {summary}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["huge-png", "photos"])
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    if args.what == "huge-png":
        paths = [make_huge_png()]
    else:
        sys.path.insert(0, str(ROOT / "bench"))
        from import_throughput import make_photos

        paths = make_photos(args.count)
    elapsed, total, single, summary = measure(paths)
    print(f"files                 : {len(paths)} ({sum(p.stat().st_size for p in paths) / 2**20:.1f} MB)")
    print(f"time                  : {elapsed:.2f} s")
    print(f"peak RSS, whole tree  : {total / 2**20:.0f} MB")
    print(f"peak RSS, one process : {single / 2**20:.0f} MB")
    print(f"result                : {summary}")


if __name__ == "__main__":
    main()
