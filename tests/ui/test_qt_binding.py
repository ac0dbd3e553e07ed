"""The installed Qt binding must not drop references to None/True (PySide6 6.12.0 did: ERROR_LIST E4)."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QComboBox


class _Emitter(QObject):
    value = Signal(str, object)


def test_combo_current_data_keeps_none_alive(qtbot) -> None:
    combo = QComboBox()
    qtbot.addWidget(combo)
    combo.addItem("All characters", None)
    before = sys.getrefcount(None)
    for _ in range(1000):
        combo.currentData()
    assert sys.getrefcount(None) - before > -10, "this PySide6 build leaks references to None; install <6.12"


def test_signals_keep_booleans_alive(qtbot) -> None:
    emitter = _Emitter()
    emitter.value.connect(lambda *_: None)
    before = sys.getrefcount(True)
    for _ in range(1000):
        emitter.value.emit("job", {"ok": True})
    assert sys.getrefcount(True) - before > -10
