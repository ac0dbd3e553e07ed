"""Benchmark: the window while a run emits events as fast as it can (issue targets: longest event-loop
stall < 50 ms, peak RSS of the GUI process < 300 MB, no torch in the GUI process).

A tiny fast-test run (64 px, 1 thread: a few hundred progress events a second) is started from the
Training tab; a 10 ms heartbeat measures stalls and the GUI process's RSS is sampled every 50 ms.

    .venv/bin/python bench/gui_training.py [--steps 1500]
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
os.environ["ISENGARD_MODE"] = "fast-test"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args()
    import psutil
    from heartbeat import Heartbeat
    from PIL import Image
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from isengard_desktop.context import AppContext
    from isengard_desktop.ui.main_window import MainWindow

    app = QApplication([])
    process = psutil.Process()
    with tempfile.TemporaryDirectory() as folder:
        ctx = AppContext.open(Path(folder) / "volume", "fast-test")
        character = ctx.characters.create("Bench", "ohwx_bench")
        photos = Path(folder) / "photos"
        photos.mkdir()
        for i in range(6):
            Image.new("RGB", (96, 80), (30 * i, 100, 150)).save(photos / f"{i}.png")
        ctx.importer.run(character.id, [photos])
        window = MainWindow(ctx)
        window.show()
        window.tabs.setCurrentWidget(window.training)
        window.training.refresh()
        form = window.training.form
        form.advanced.setChecked(True)
        form.steps.setValue(args.steps)
        form.save_every.setValue(max(args.steps // 5, 1))
        form.sample_every.setValue(max(args.steps // 5, 1))
        # A person takes a moment before pressing Start; the window uses it to preload the chart library.
        deadline = time.perf_counter() + 2.0
        while time.perf_counter() < deadline:
            app.processEvents()
            time.sleep(0.01)
        peak = [process.memory_info().rss]
        sampler = QTimer()
        sampler.timeout.connect(lambda: peak.append(process.memory_info().rss))
        sampler.start(50)
        beat = Heartbeat()
        beat.start()  # from the click on Start: building the chart counts too
        job_id = window.training.start()
        states = []

        def on_state(jid: str, state: str) -> None:
            if jid == job_id and state not in ("queued", "running"):
                states.append(state)
                QTimer.singleShot(300, app.quit)

        window.bridge.state_changed.connect(on_state)
        start = time.perf_counter()
        app.exec()
        elapsed = time.perf_counter() - start
        beat.stop()
        sampler.stop()
        events = sum(1 for e in ctx.jobs.events(job_id) if e["event"] == "progress")
        torch_loaded = "torch" in sys.modules
        window.close()
        ctx.close()
    print(f"run                          : {args.steps} steps, {states[0]}, {elapsed:.1f} s, "
          f"{events} progress events ({events / elapsed:.0f}/s)")
    print(f"longest stall (< 50 ms)      : {beat.longest_ms:.1f} ms (99th pct {beat.percentile_ms(0.99):.1f} ms)")
    print(f"peak GUI RSS (< 300 MB)      : {max(peak) / 2**20:.0f} MB")
    print(f"torch in GUI process         : {torch_loaded}")


if __name__ == "__main__":
    main()
