"""The live loss chart: raw loss and its exponential moving average, optional log scale.

pyqtgraph costs a quarter to half a second to import: not before the first frame, and not on the GUI thread
when a run starts either. ``preload()`` loads it once the window is up, without stalling the window (E6):
the parts that hold the GIL for long in one C call (its Qt shim creating every QtCore/QtGui/QtWidgets type
through ``dir()``/``getattr``, the extra Qt extension modules) run on the GUI thread in slices of a few
milliseconds between events; the rest, pure Python, is imported on a background thread. The plot itself (~20-30
ms to make the first one) is made when the first curve arrives; until then the chart says where it will be.
"""

from __future__ import annotations

import gc
import importlib
import sys
import threading
import time
from collections.abc import Iterator

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QCheckBox, QVBoxLayout, QWidget

from isengard_desktop.ui.widgets import label

SMOOTHING = 0.9  # EMA weight of the past; the smoothed curve is what a person reads trends from


def smooth(values: list[float], weight: float = SMOOTHING) -> list[float]:
    out, last = [], None
    for value in values:
        last = value if last is None else weight * last + (1 - weight) * value
        out.append(last)
    return out


# Qt extension modules pyqtgraph's shim imports: each one's initialisation is one C call holding the GIL.
_QT_EXTRAS = ("PySide6.QtSvg", "PySide6.QtOpenGL", "PySide6.QtOpenGLWidgets", "PySide6.QtTest")
SLICE_S = 0.004  # GUI-thread work per slice: well under a 60 Hz frame
# Classes whose first lookup takes ~25 ms of Python (building their large enums): left to the thread, where
# Python code shares the GIL every few milliseconds (timed name by name in the running window).
_ON_THREAD = frozenset({"QEasingCurve"})


def _slices() -> Iterator[None]:
    """The GUI-thread part of loading pyqtgraph, a little at a time (each ``next`` is one slice)."""
    for name in _QT_EXTRAS:
        try:
            importlib.import_module(name)
        except ImportError:  # pyqtgraph copes without them
            pass
        yield
    from PySide6 import QtCore, QtGui, QtWidgets

    # PySide6 creates a class the first time it is looked up; pyqtgraph looks all ~700 up at once.
    deadline = time.perf_counter() + SLICE_S
    for module in (QtCore, QtGui, QtWidgets):
        for name in dir(module):
            if name in _ON_THREAD:
                continue
            getattr(module, name, None)
            if time.perf_counter() > deadline:
                yield
                deadline = time.perf_counter() + SLICE_S


_preloading: list[QTimer] = []  # preload() under way (asked again meanwhile, it does not start twice)


def preload(parent: QObject | None = None) -> None:
    """Load pyqtgraph without stalling the window: GUI-thread slices between events, then a background thread."""
    if "pyqtgraph" in sys.modules or _preloading:
        return
    # What exists by now (modules, classes, widgets) lives as long as the app: taken out of the garbage
    # collector's full passes, which would otherwise walk it all again while pyqtgraph allocates (~40 ms stalls).
    gc.freeze()
    steps = _slices()
    timer = QTimer(parent)
    timer.setInterval(0)
    _preloading.append(timer)
    timer.destroyed.connect(lambda *_: _preloading.clear())  # its parent closed half-way: a later call starts again

    def step() -> None:
        try:
            next(steps)
        except StopIteration:
            timer.stop()
            timer.deleteLater()
            threading.Thread(target=importlib.import_module, args=("pyqtgraph",), name="preload-pyqtgraph",
                             daemon=True).start()

    timer.timeout.connect(step)
    timer.start()


class LossChart(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.steps: list[int] = []
        self.losses: list[float] = []
        self._plot = None
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self.log_scale = QCheckBox("Log scale")
        self.log_scale.toggled.connect(self._apply_log)
        self._layout.addWidget(self.log_scale)
        self.empty = label("The loss curve of a run appears here: start one, or pick a past run.", "muted")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._layout.addWidget(self.empty, 1)
        self.setMinimumHeight(220)

    def _ensure_plot(self) -> None:
        if self._plot is not None:
            return
        import pyqtgraph as pg

        pg.setConfigOptions(antialias=True, background="#1a1d22", foreground="#a9b0bb")
        self._plot = pg.PlotWidget()
        self._plot.setLabel("bottom", "step")
        self._plot.setLabel("left", "loss")
        self._plot.addLegend(offset=(-10, 10))
        self._raw = self._plot.plot([], [], pen=pg.mkPen("#5b6472", width=1), name="loss")
        self._smooth = self._plot.plot([], [], pen=pg.mkPen("#d4a24c", width=2), name="smoothed")
        self._layout.insertWidget(0, self._plot, 1)
        self.empty.hide()
        self._apply_log(self.log_scale.isChecked())

    def _apply_log(self, on: bool) -> None:
        if self._plot is not None:
            self._plot.setLogMode(y=on)

    def set_points(self, steps: list[int], losses: list[float]) -> None:
        self.steps, self.losses = list(steps), list(losses)
        self._redraw()

    def add_point(self, step: int, loss: float) -> None:
        if self.steps and step <= self.steps[-1]:  # a resumed run replays from its checkpoint
            keep = next(i for i, s in enumerate(self.steps) if s >= step)
            del self.steps[keep:], self.losses[keep:]
        self.steps.append(step)
        self.losses.append(loss)
        self._redraw()

    def _redraw(self) -> None:
        self._ensure_plot()
        self._raw.setData(self.steps, self.losses)
        self._smooth.setData(self.steps, smooth(self.losses))
