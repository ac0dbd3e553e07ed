"""The Dataset tab's Caption all, clicked as a person would: progress, the captions in the grid, Cancel; in
production without the model, the row says why and offers the download instead."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # Qt reads it once, at the first QApplication

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402

from isengard_desktop.base.caption_text import trigger_count  # noqa: E402
from isengard_desktop.context import AppContext  # noqa: E402
from isengard_desktop.ui.dataset_model import ImageRole  # noqa: E402
from tests.captioning.conftest import PERSON_CAPTION, PHOTOS, TRIGGER  # noqa: E402


@pytest.fixture
def ctx(caption_ctx: AppContext) -> AppContext:
    """The shared ``window`` fixture opens on the volume with Eileen's photos."""
    return caption_ctx


def _choose_character(qtbot, window) -> object:
    tab = window.dataset
    window.tabs.setCurrentWidget(tab)
    tab.character.setCurrentIndex(tab.character.findText("Eileen"))
    qtbot.waitUntil(lambda: tab.captions.caption_button.isEnabled(), timeout=10_000)
    return tab


@pytest.mark.slow
def test_caption_all_writes_the_captions_shown_in_the_grid(qtbot, window) -> None:
    tab = _choose_character(qtbot, window)
    panel = tab.captions
    assert panel.omit_traits.isChecked() and not panel.overwrite.isChecked()  # the documented defaults
    qtbot.mouseClick(panel.caption_button, Qt.MouseButton.LeftButton)
    assert not panel.caption_button.isEnabled() and panel.progress.isVisible() and panel.cancel_button.isVisible()
    assert "1 caption(s) you wrote are kept" in panel.status.text()
    qtbot.waitUntil(lambda: panel.progress.maximum() == len(PHOTOS) - 1, timeout=120_000)
    with qtbot.waitSignal(tab.reloaded, timeout=240_000):
        qtbot.waitUntil(lambda: "caption(s) written" in panel.status.text(), timeout=240_000)
    assert panel.status.text() == f"{len(PHOTOS) - 1} caption(s) written, 1 you wrote kept."
    assert panel.caption_button.isEnabled() and not panel.progress.isVisible()
    shown = [tab.model.index(r).data(ImageRole) for r in range(tab.model.rowCount())]
    assert shown[0].caption == PERSON_CAPTION
    assert all(i.row.caption_source == "auto" and trigger_count(i.caption, TRIGGER) == 1 for i in shown[1:])


@pytest.mark.slow
def test_cancel_stops_captioning(qtbot, window, caption_ctx: AppContext) -> None:
    tab = _choose_character(qtbot, window)
    panel = tab.captions
    qtbot.mouseClick(panel.caption_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.progress.value() >= 1, timeout=120_000)
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.status.text().startswith("Cancelled:"), timeout=120_000)
    assert caption_ctx.jobs.list(kind="caption")[0].state == "cancelled"
    written = sum(1 for i in caption_ctx.dataset.list() if i.row.caption_source == "auto")
    assert 1 <= written < len(PHOTOS) - 1 and f"{written} caption(s) written" in panel.status.text()


def test_production_without_the_model_offers_the_download(qtbot, tmp_path: Path) -> None:
    from isengard_desktop.ui.caption_panel import CaptionPanel
    from isengard_desktop.ui.dataset_tab import DatasetTab

    ctx = AppContext.open(tmp_path / "prod", "production")
    try:
        ctx.characters.create("Eileen", TRIGGER)
        tab = DatasetTab(ctx)
        qtbot.addWidget(tab)
        tab.show()
        panel: CaptionPanel = tab.captions
        qtbot.waitUntil(lambda: panel.download_button.isVisible(), timeout=10_000)
        assert not panel.caption_button.isVisible()
        assert panel.status.text().startswith("Not ready: Automatic captions need Qwen3-VL-4B-Instruct")
        assert "isengard models download qwen3-vl-4b-instruct" in panel.status.text()
    finally:
        ctx.close()
