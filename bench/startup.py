"""Benchmark: the window's first frame and a light CLI command, each against its reference in the same run.

- window: `python -m isengard_desktop --volume V` (a volume with three characters and photos, the main window
  rather than the first-run page) with ISENGARD_EXIT_AFTER_SHOW=1, which prints ``startup_s=`` at the first
  painted frame and quits; reference: bench/_bare_window.py, a bare PySide6 window with five tabs and a
  status bar that does the same. Timed from outside, from process start to that line (interpreter start-up
  counts, process exit does not). The window reopens on the tab the person last used (settings.json
  ``last_tab``), so it is timed opening on each tab, one row each. Targets: <= 0.45 s and <= 2.6x the bare
  window, on every tab.
- CLI: `python -m isengard_desktop --volume V characters list --json` against `python -c pass`, whole
  processes. Targets: <= 0.2 s and <= 6x.

The source checkout's bytecode is compiled first (as an installed package's is). Runs are interleaved so load
from other processes on a shared machine falls on both sides alike; medians. Uses Xvfb when DISPLAY is set
(run under xvfb-run), the offscreen platform otherwise.

    .venv/bin/python bench/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The tabs the window can reopen on (MainWindow's TABS titles, as settings.json's last_tab holds them).
OPENING_TABS = ("Characters", "Dataset", "Training", "Generate", "Jobs")


def _env() -> dict[str, str]:
    env = dict(os.environ, ISENGARD_MODE="fast-test")
    if not env.get("DISPLAY"):
        env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def prepare(volume: Path) -> None:
    """Three characters with four photos each, set up (no first-run page)."""
    code = f"""
from pathlib import Path
from PIL import Image
from isengard_desktop.context import AppContext
volume = Path({str(volume)!r})
ctx = AppContext.open(volume, "fast-test")
photos = volume.parent / "photos"
photos.mkdir()
for i in range(4):
    Image.new("RGB", (640, 800), (40 * i, 100, 150)).save(photos / f"{{i}}.jpg")
for name in ("Ada", "Bob", "Cleo"):
    ctx.importer.run(ctx.characters.create(name, f"ohwx_{{name.lower()}}").id, [photos])
ctx.close()
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=_env(), capture_output=True)
    path = volume / "settings.json"
    path.write_text(json.dumps({**json.loads(path.read_text(encoding="utf-8")), "first_run_done": True}))


def tab_volumes(volume: Path) -> dict[str, Path]:
    """A copy of the prepared ``volume`` per opening tab, each remembering that tab as the last one used."""
    volumes = {}
    for tab in OPENING_TABS:
        copy = volume.with_name(f"{volume.name}-{tab.lower()}")
        shutil.copytree(volume, copy)
        path = copy / "settings.json"
        path.write_text(json.dumps({**json.loads(path.read_text(encoding="utf-8")), "last_tab": tab}))
        volumes[tab] = copy
    return volumes


def first_frame(command: list[str]) -> float:
    """Seconds from starting ``command`` to its ``startup_s=`` line (its first painted frame)."""
    env = dict(_env(), ISENGARD_EXIT_AFTER_SHOW="1")
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    for line in process.stdout:
        if line.startswith("startup_s="):
            elapsed = time.perf_counter() - start
            break
    else:
        process.wait()
        raise SystemExit(f"{command} showed no window: {process.stderr.read()[-1500:]}")
    process.communicate(timeout=60)
    return elapsed


def whole(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=_env(), cwd=ROOT, timeout=60)
    return time.perf_counter() - start


def measure(runs: int = 7, tabs: tuple[str, ...] = OPENING_TABS) -> list[dict]:
    """The rows of bench/run_all.py's table: figure, reference, ratio, target (one window row per opening tab in
    ``tabs``)."""
    compileall.compile_dir(str(ROOT / "isengard_desktop"), quiet=1)
    compileall.compile_dir(str(ROOT / "engines"), quiet=1)
    with tempfile.TemporaryDirectory() as folder:
        volume = Path(folder) / "volume"
        prepare(volume)
        apps = {tab: [sys.executable, "-m", "isengard_desktop", "--volume", str(path)]
                for tab, path in tab_volumes(volume).items() if tab in tabs}
        bare = [sys.executable, str(ROOT / "bench" / "_bare_window.py")]
        cli = [sys.executable, "-m", "isengard_desktop", "--volume", str(volume), "characters", "list", "--json"]
        empty = [sys.executable, "-c", "pass"]
        for app in apps.values():  # warm the page cache for both sides
            first_frame(app)
        first_frame(bare), whole(cli)
        times: dict[str, list[float]] = {"bare": [], "cli": [], "empty": [], **{tab: [] for tab in apps}}
        for _ in range(runs):
            for tab, app in apps.items():
                times[tab].append(first_frame(app))
            times["bare"].append(first_frame(bare))
            times["cli"].append(whole(cli))
            times["empty"].append(whole(empty))
    med = {name: statistics.median(values) for name, values in times.items()}
    spread = {name: (min(values), max(values)) for name, values in times.items()}
    platform = "xvfb" if os.environ.get("DISPLAY") else "offscreen"
    rows = [{"name": f"window first frame, {tab} tab ({platform})", "figure": med[tab], "reference": med["bare"],
             "reference_name": "bare 5-tab PySide6 window", "max_ratio": 2.6, "max_figure": 0.45, "unit": "s",
             "spread": spread[tab]} for tab in apps]
    return [*rows,
            {"name": "characters list --json", "figure": med["cli"], "reference": med["empty"],
             "reference_name": "python -c pass", "max_ratio": 6.0, "max_figure": 0.2, "unit": "s",
             "spread": spread["cli"]}]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tabs", nargs="*", default=OPENING_TABS, choices=OPENING_TABS, help="opening tabs to time")
    args = parser.parse_args()
    for row in measure(args.runs, tuple(args.tabs)):
        low, high = row["spread"]
        print(f"{row['name']:44s}: {row['figure']:.3f} s (runs {low:.2f}-{high:.2f}) vs "
              f"{row['reference_name']} {row['reference']:.3f} s, ratio {row['figure'] / row['reference']:.2f} "
              f"(targets <= {row['max_figure']} s, <= {row['max_ratio']}x)")


if __name__ == "__main__":
    main()
