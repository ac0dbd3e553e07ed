"""Benchmark: the window while the built-in generator makes a batch of images into the gallery (SPEC §2:
no event-loop stall over 50 ms), and the GUI process's peak RSS.

A 16-image fast-test batch is started from the Generate tab; each image lands in the gallery (a database
read and a thumbnail made off the GUI thread) while a 10 ms heartbeat measures stalls.

    .venv/bin/python bench/gui_generate.py [--images 16]
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
    parser.add_argument("--images", type=int, default=16)
    args = parser.parse_args()
    import psutil
    from heartbeat import Heartbeat
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from isengard_desktop.context import AppContext
    from isengard_desktop.ui.main_window import MainWindow

    app = QApplication([])
    process = psutil.Process()
    with tempfile.TemporaryDirectory() as folder:
        ctx = AppContext.open(Path(folder) / "volume", "fast-test")
        window = MainWindow(ctx)
        window.show()
        window.tabs.setCurrentWidget(window.generate)
        tab = window.generate
        deadline = time.perf_counter() + 3.0  # the engines list arrives; a person types a prompt meanwhile
        while time.perf_counter() < deadline:
            app.processEvents()
            time.sleep(0.01)
        names = [tab.form.engine.itemData(i) for i in range(tab.form.engine.count())]
        tab.form.engine.setCurrentIndex(names.index("diffusers"))
        tab.form.prompt.setPlainText("a lighthouse at dusk")
        tab.form.batch.setValue(args.images)
        peak = [process.memory_info().rss]
        sampler = QTimer()
        sampler.timeout.connect(lambda: peak.append(process.memory_info().rss))
        sampler.start(50)
        beat = Heartbeat()
        beat.start()
        tab.generate()
        job_id = tab.job_id

        def on_state(jid: str, state: str) -> None:
            if jid == job_id and state not in ("queued", "running"):
                QTimer.singleShot(500, app.quit)

        window.bridge.state_changed.connect(on_state)
        start = time.perf_counter()
        app.exec()
        elapsed = time.perf_counter() - start
        beat.stop()
        sampler.stop()
        final = ctx.jobs.get(job_id)
        shown = tab.model.rowCount()
        window.close()
        ctx.close()
    print(f"{args.images} images ({final.state}) in {elapsed:.1f} s; gallery shows {shown}")
    print(f"longest event-loop stall {beat.longest_ms:.0f} ms (p99 {beat.percentile_ms(0.99):.0f} ms; "
          f"target < 50 ms); peak GUI RSS {max(peak) / 2**20:.0f} MB; torch in the GUI process: "
          f"{'torch' in sys.modules}")


if __name__ == "__main__":
    main()
