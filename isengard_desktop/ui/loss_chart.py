"""The live loss chart: raw loss and its exponential moving average, optional log scale.

pyqtgraph costs a quarter to half a second to import: not at start-up, and not on the GUI thread when
a run starts either. ``preload()`` imports it on a background thread once the window is up.
"""

from __future__ import annotations

import importlib
import threading

from PySide6.QtWidgets import QCheckBox, QVBoxLayout, QWidget

SMOOTHING = 0.9  # EMA weight of the past; the smoothed curve is what a person reads trends from


def smooth(values: list[float], weight: float = SMOOTHING) -> list[float]:
    out, last = [], None
    for value in values:
        last = value if last is None else weight * last + (1 - weight) * value
        out.append(last)
    return out


def preload() -> threading.Thread:
    """Import pyqtgraph off the GUI thread, so building the first chart does not stall the window."""
    thread = threading.Thread(target=importlib.import_module, args=("pyqtgraph",), name="preload-pyqtgraph",
                              daemon=True)
    thread.start()
    return thread


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
