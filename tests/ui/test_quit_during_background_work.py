"""Quitting while background work still runs (a status check, a thumbnail, a plan) must not abort the app.

A QThread destroyed while it runs ends the process with "QThread: Destroyed while thread is still running" and a
core dump; the bundle's window test met it when the window closed right after it was shown."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import gc, time
from PySide6.QtWidgets import QApplication, QWidget
from isengard_desktop.ui.bridge import run_in_background, wait_for_tasks
app = QApplication([])
window = QWidget()
run_in_background(window, lambda progress, cancelled: time.sleep(1.5))
del window  # the window goes away while its task still runs
gc.collect()
print("all background work ended:", wait_for_tasks(10))
"""


def test_closing_the_window_while_a_task_runs_exits_cleanly() -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert "all background work ended: True" in result.stdout
    assert "Destroyed while thread" not in result.stderr
