"""E38's crash, as a child process of test_gui_gc.py (a regression segfaults this process, not the test run).

Objects like the job bridge (a parentless QObject with a running QTimer) are left in reference cycles while a Python
thread makes what the GUI thread frees, as a job's reader threads do with its events. Without ui/gui_gc.py the cycle
collector runs on that thread, destroys the objects there ("Timers cannot be stopped from another thread") and the
event loop then crashes on their timers (3 runs of 3 here). Prints where collections ran and objects were destroyed.
Run: ``python -m tests.ui.gc_scenario [--without-collector] [rounds]``.
"""

from __future__ import annotations

import sys
import threading
import time

from PySide6.QtCore import QEventLoop, QObject, Qt, QTimer
from PySide6.QtWidgets import QApplication


def _tick() -> None:
    pass


class _Follower(QObject):
    """A parentless QObject with a running timer (a plain function as its slot, so only the cycle holds it)."""

    def __init__(self) -> None:
        super().__init__()
        self.timer = QTimer(self)
        self.timer.setInterval(1)
        self.timer.timeout.connect(_tick)
        self.timer.start()
        self.me = self  # the reference cycle: only the collector frees it


def main(argv: list[str]) -> int:
    import gc

    app = QApplication.instance() or QApplication(argv)
    if "--without-collector" not in argv:
        from isengard_desktop.ui.gui_gc import collect_on_gui_thread

        collect_on_gui_thread(app)
    rounds = next((int(a) for a in argv[1:] if a.isdigit()), 150)
    collected_on: list[str] = []
    destroyed_on: list[str] = []
    gc.callbacks.append(lambda phase, _info: phase == "start" and collected_on.append(threading.current_thread().name))
    events: list[dict] = []
    stop = threading.Event()

    def reader() -> None:  # as jobs/runner.py: each line becomes an event dict the GUI thread consumes and frees
        while not stop.is_set():
            events.extend({"event": "progress", "step": i} for i in range(50))
            time.sleep(0.0005)

    thread = threading.Thread(target=reader, name="reader", daemon=True)
    thread.start()
    drain = QTimer()
    drain.timeout.connect(events.clear)
    drain.start(50)
    for _ in range(rounds):
        follower = _Follower()
        follower.destroyed.connect(lambda *_a: destroyed_on.append(threading.current_thread().name),
                                   Qt.ConnectionType.DirectConnection)
        del follower
        loop = QEventLoop()
        QTimer.singleShot(10, loop.quit)
        loop.exec()  # the GUI thread waits in Qt's event loop, as in app.exec() or qtbot.waitUntil
    stop.set()
    thread.join()
    off = sum(name != "MainThread" for name in destroyed_on)
    sys.stdout.write(f"collections_off_gui={sum(name != 'MainThread' for name in collected_on)} "
                     f"collections_on_gui={collected_on.count('MainThread')} "
                     f"destroyed_on_gui={len(destroyed_on) - off} destroyed_off_gui={off}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
