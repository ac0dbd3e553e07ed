"""Benchmark (E6): the longest event-loop stall in the first two seconds after the window appears.

Each run is a fresh process (nothing imported yet) that builds the window as `isengard` does (ui/app.py's
run_gui: context, MainWindow, show, the deferred work it schedules) on a volume with three characters, then
measures the gaps of a 10 ms QTimer heartbeat for two seconds from its first painted frame (the frame itself
is what bench/startup.py times), once for each tab the window can reopen on (settings.json ``last_tab``: the
target holds whatever tab it opens on). The reference is the same heartbeat in a bare five-tab PySide6 window.
Target: <= 30 ms. Median over runs, interleaved; one row per opening tab.

    .venv/bin/python bench/startup_stall.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _child(kind: str, volume: str) -> None:
    from heartbeat import Heartbeat
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    if kind == "app":
        from isengard_desktop.base.resources import resource_path
        from isengard_desktop.ui import app as app_module

        app.setStyleSheet(resource_path("style.qss").read_text(encoding="utf-8"))
        ctx = app_module._open_context(volume)
        from isengard_desktop.ui.main_window import MainWindow

        window = MainWindow(ctx)
        window.show()
        QTimer.singleShot(0, window.offer_interrupted_jobs)
    else:
        from _bare_window import bare_window

        ctx = None
        window = bare_window()
        window.show()
    beat = Heartbeat()
    from PySide6.QtCore import QEvent, QObject

    class FirstFrame(QObject):  # the window has appeared once its first paint is done: start listening then
        def eventFilter(self, watched, event):  # noqa: N802 (Qt's name)
            if event.type() == QEvent.Type.Paint and not getattr(self, "seen", False):
                self.seen = True
                QTimer.singleShot(0, beat.start)
                QTimer.singleShot(2000, app.quit)
            return False

    spy = FirstFrame()
    window.installEventFilter(spy)
    app.exec()
    beat.stop()
    window.close()
    if ctx is not None:
        ctx.close()
    print(json.dumps({"longest_ms": beat.longest_ms, "p99_ms": beat.percentile_ms(0.99)}))


def _run(kind: str, volume: Path) -> float:
    env = dict(os.environ, ISENGARD_MODE="fast-test")
    if not env.get("DISPLAY"):
        env["QT_QPA_PLATFORM"] = "offscreen"
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(volume)], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["longest_ms"]


def measure(runs: int = 5, tabs: tuple[str, ...] | None = None) -> list[dict]:
    """One row per opening tab (``tabs``: those of startup.OPENING_TABS to measure, by default all)."""
    from startup import prepare, tab_volumes

    with tempfile.TemporaryDirectory() as folder:
        volume = Path(folder) / "volume"
        prepare(volume)
        volumes = {tab: path for tab, path in tab_volumes(volume).items() if tabs is None or tab in tabs}
        for path in volumes.values():  # warm the page cache
            _run("app", path)
        apps: dict[str, list[float]] = {tab: [] for tab in volumes}
        bare = []
        for _ in range(runs):
            for tab, path in volumes.items():
                apps[tab].append(_run("app", path))
            bare.append(_run("bare", volume))
    return [{"name": f"E6 longest stall, first 2 s, {tab} tab", "figure": statistics.median(app),
             "reference": statistics.median(bare), "reference_name": "bare 5-tab window", "max_figure": 30.0,
             "max_ratio": None, "unit": "ms", "spread": (min(app), max(app))} for tab, app in apps.items()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "VOLUME"))
    parser.add_argument("--tabs", nargs="*", help="opening tabs to measure (default: each)")
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    for row in measure(args.runs, tuple(args.tabs) if args.tabs else None):
        low, high = row["spread"]
        print(f"{row['name']}: median {row['figure']:.1f} ms (runs {low:.0f}-{high:.0f}), "
              f"{row['reference_name']} {row['reference']:.1f} ms (target <= 30 ms)")


if __name__ == "__main__":
    main()
