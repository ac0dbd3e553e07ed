"""The reference for bench/startup.py: a bare PySide6 main window with five tabs and a status bar.

Prints ``startup_s=`` at its first painted frame, the same way the app does with ISENGARD_EXIT_AFTER_SHOW, then quits.
"""

import sys
import time

T0 = time.perf_counter()

from PySide6.QtCore import QEvent, QObject, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow, QTabWidget  # noqa: E402


class _FirstPaint(QObject):
    def eventFilter(self, watched, event):  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.Paint and not getattr(self, "done", False):
            self.done = True
            QTimer.singleShot(0, report)
        return False


def report() -> None:
    sys.stdout.write(f"startup_s={time.perf_counter() - T0:.3f}\n")
    sys.stdout.flush()
    app.quit()


def bare_window() -> QMainWindow:
    """The reference window (bench/startup_stall.py uses it too): five tabs of labels and a status bar."""
    window = QMainWindow()
    window.resize(1240, 800)
    tabs = QTabWidget()
    for title in ("Characters", "Dataset", "Training", "Generate", "Jobs"):
        tabs.addTab(QLabel(title), title)
    window.setCentralWidget(tabs)
    window.statusBar().addWidget(QLabel("ready"))
    return window


if __name__ == "__main__":
    app = QApplication(sys.argv)
    window = bare_window()
    spy = _FirstPaint()
    window.installEventFilter(spy)
    window.show()
    app.exec()
