"""The Training tab shows the memory plan's verdict for this machine's card, in production mode: a desktop RTX 3090
(a stand-in nvidia-smi on PATH answering as the real one does) without bitsandbytes in the app's environment."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from isengard_desktop.context import AppContext


@pytest.fixture
def production(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, desktop_3090):
    monkeypatch.delenv("ISENGARD_AITOOLKIT_DIR", raising=False)
    monkeypatch.delenv("ISENGARD_COMFYUI_DIR", raising=False)
    context = AppContext.open(tmp_path / "vol", "production")
    context.settings.first_run_done = True
    yield context
    context.jobs.shutdown(wait=10)
    context.close()


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed here")
def test_the_training_tab_refuses_what_would_not_fit(qtbot, production: AppContext, monkeypatch) -> None:
    from PySide6.QtCore import QThread
    from PySide6.QtWidgets import QMessageBox

    from isengard_desktop.ui.main_window import MainWindow

    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes))
    production.characters.create("Ada Lovelace", "ohwx_ada")
    window = MainWindow(production)
    qtbot.addWidget(window)
    window.show()
    tab = window.training
    tab.refresh()
    tab.form.preset.setCurrentIndex(tab.form.preset.findData("quick"))
    tab.form.engine.setCurrentIndex(tab.form.engine.findData("diffusers"))
    tab.update_verdict()  # asks nvidia-smi off the event loop; the verdict is drawn again when it answers
    qtbot.waitUntil(lambda: "Does not fit" in tab.form.verdict.text(), timeout=10_000)
    text = tab.form.verdict.text()
    assert "Does not fit the NVIDIA GeForce RTX 3090 (drives a display" in text, text
    assert "pip install bitsandbytes" in text and "GPU memory by phase" in text
    assert not tab.start_button.isEnabled()
    # Let the window's background start-up work (the chart library's import) end before it closes.
    qtbot.waitUntil(lambda: not any(t.isRunning() for t in window.findChildren(QThread)), timeout=10_000)
    window.close()
