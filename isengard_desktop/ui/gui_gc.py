"""Python's cycle collector runs on the GUI thread only, while the window's QApplication is up (E38).

CPython collects reference cycles on whichever thread happens to allocate when a generation fills up. In this
process that is often a job's reader thread, a background task's QThread or the thumbnail pool: in a run of three UI
test files, 41 of 430 collections ran on task threads, and freed main windows, a QPixmap and a QObject there.
PySide6 defers only QWidget and QWindow deletion to the main thread; any other Qt object in a collected cycle (the
job bridge and its timer, a pixmap, a task's QThread) is destroyed on a thread that does not own it, while the GUI
thread may be delivering an event or a timer to it: the rare segmentation fault in the event loop.

So automatic collection is switched off and a GUI-thread timer runs the collections instead, with CPython's own
rules: a generation is collected when its count passes its threshold, and a full pass waits until a quarter of the
long-lived objects are new (so the window meets no more full passes, and no longer stalls, than before).
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer

CHECK_MS = 100  # the counts are read ten times a second (a few microseconds); a collection runs only when due


class GuiThreadCollector(QObject):
    """Collects cyclic garbage from the GUI thread's event loop; automatic collection is off while it runs."""

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self._was_enabled = gc.isenabled()
        gc.disable()
        # CPython's bookkeeping for full passes, which Python cannot read: counted again from here (as it counts from
        # the interpreter's start), so the first full pass comes as soon as the oldest generation is due.
        self._long_lived_total = self._long_lived_pending = 0
        self._timer = QTimer(self)
        self._timer.setInterval(CHECK_MS)
        self._timer.timeout.connect(self.collect_due)
        self._timer.start()

    def collect_due(self) -> int:
        """Collect the oldest generation that is due, as CPython would have done by now; returns what it freed."""
        threshold, count = gc.get_threshold(), gc.get_count()
        if count[0] <= threshold[0]:
            return 0
        if count[2] > threshold[2] and self._long_lived_pending >= self._long_lived_total / 4:
            freed = gc.collect(2)
            self._long_lived_total, self._long_lived_pending = len(gc.get_objects(2)), 0
            return freed
        if count[1] > threshold[1]:
            young = len(gc.get_objects(0)) + len(gc.get_objects(1))
            freed = gc.collect(1)
            self._long_lived_pending += max(0, young - freed)  # the survivors move into the oldest generation
            return freed
        return gc.collect(0)

    def stop(self) -> None:
        """Collect everything now, on this thread, and give collection back to CPython."""
        self._timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()
        self.setParent(None)


def collect_on_gui_thread(app: QCoreApplication | None = None) -> GuiThreadCollector:
    """The application's collector, made on its first call (from the GUI thread, once the QApplication exists)."""
    app = app or QCoreApplication.instance()
    if app is None or QThread.currentThread() != app.thread():
        raise RuntimeError("collect_on_gui_thread needs the QApplication and its thread")
    collector = app.findChild(GuiThreadCollector)
    return collector if collector is not None else GuiThreadCollector(app)
