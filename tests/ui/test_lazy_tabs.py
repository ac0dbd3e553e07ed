"""The window builds only the tab it opens on; the others are built when a person first clicks them (before they
are painted), and a tab built late still shows what happened before it existed (issue 14, E37)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from isengard_desktop.ui.dataset_tab import DatasetTab
from tests.ui.test_generate_tab import _train_lora


def test_only_the_open_tab_is_built_and_a_clicked_tab_is_the_real_one(qtbot, window):
    assert set(window.book.built) == {"characters"}
    bar = window.tabs.tabBar()
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.tabRect(1).center())
    assert isinstance(window.tabs.currentWidget(), DatasetTab)
    assert window.tabs.currentWidget() is window.dataset and window.tabs.tabText(1) == "Dataset"
    assert window.ctx.settings.last_tab == "Dataset"  # remembered as before: the window reopens there


def test_a_generate_tab_built_after_a_training_offers_its_new_lora(qtbot, window, ctx, photos: Path):
    qtbot.waitUntil(lambda: window.bridge.attached, timeout=10_000)  # after the first frame
    _train_lora(qtbot, window, ctx, photos)
    qtbot.waitUntil(lambda: window._trained_job is not None, timeout=10_000)
    assert "generate" not in window.book.built
    tab = window.generate
    qtbot.waitUntil(lambda: len(tab.form.lora_rows) == 1, timeout=20_000)
    assert tab.form.lora_rows[0].combo.currentData().character_name == "Ada Lovelace"
