"""Benchmark: the longest event-loop stall while the window imports 300 photos (target < 50 ms).

Drives the Characters tab's import (the same code path as a drop) with the 4000x3000 JPEGs of
bench/import_throughput.py, while a 10 ms heartbeat measures the gaps. Runs offscreen by default.

    .venv/bin/python bench/gui_stall_import.py [--count 300]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    from heartbeat import Heartbeat
    from import_throughput import make_photos
    from PySide6.QtWidgets import QApplication

    from isengard_desktop.context import AppContext
    from isengard_desktop.ui.main_window import MainWindow

    paths = make_photos(args.count)
    app = QApplication([])
    with tempfile.TemporaryDirectory() as folder:
        ctx = AppContext.open(Path(folder) / "volume", "fast-test")
        character = ctx.characters.create("Bench", "ohwx_bench")
        window = MainWindow(ctx)
        window.show()
        app.processEvents()
        beat = Heartbeat()
        done = []
        window.characters.import_finished.connect(lambda report: (done.append(report), app.quit()))
        beat.start()
        start = time.perf_counter()
        window.characters.import_paths(character.id, paths)
        app.exec()
        elapsed = time.perf_counter() - start
        beat.stop()
        window.close()
        ctx.close()
    print(f"imported                    : {len(done[0].imported)} photos in {elapsed:.1f} s")
    print(f"heartbeats                  : {len(beat.gaps)} (10 ms timer)")
    print(f"longest stall (< 50 ms)     : {beat.longest_ms:.1f} ms")
    print(f"99th percentile gap         : {beat.percentile_ms(0.99):.1f} ms")


if __name__ == "__main__":
    main()
