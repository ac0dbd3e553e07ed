"""A window reopens on the tab the person last used (issue 14): built for the first frame, that tab says what it is
still reading and fills in after the frame — the Training tab becomes usable, the Dataset tab never claims a
character with photos has none."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer

from isengard_desktop.ui.dataset_tab import DatasetTab
from isengard_desktop.ui.generate_tab import GenerateTab
from isengard_desktop.ui.training_tab import TrainingTab
from tests.ui.test_training_and_jobs import set_advanced, wait_state

LEFT = Qt.MouseButton.LeftButton


@pytest.fixture
def reopen(qtbot, ctx, monkeypatch: pytest.MonkeyPatch):
    """Open the window on ``ctx`` as a person who last used tab ``title`` does (as the ``window`` fixture does)."""
    from PySide6.QtWidgets import QMessageBox

    from isengard_desktop.ui.main_window import MainWindow

    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes))
    monkeypatch.delenv("ISENGARD_COMFYUI_DIR", raising=False)
    ctx.settings.first_run_done = True
    windows = []

    def open_on(title: str):
        ctx.settings.last_tab = title
        win = MainWindow(ctx)
        qtbot.addWidget(win)
        win.show()
        windows.append(win)
        return win

    yield open_on
    for win in windows:
        win.close()


def _with_photos(ctx, photos: Path, name: str = "Ada Lovelace") -> int:
    character = ctx.characters.create(name, "ohwx_ada")
    ctx.importer.run(character.id, [photos])
    return ctx.characters.get(character.id).image_count


def test_a_window_reopened_on_training_checks_first_then_trains(qtbot, reopen, ctx, photos: Path):
    _with_photos(ctx, photos)
    window = reopen("Training")
    tab = window.tabs.currentWidget()
    assert isinstance(tab, TrainingTab) and window.tabs.tabText(window.tabs.currentIndex()) == "Training"
    # Before the first frame's work is done: it says it is checking, and nothing can start on a guess.
    assert tab.form.engine.currentText() == "checking engines…" and tab.form.engine.currentData() is None
    assert tab.form.base_model.currentText() == "checking base models…"
    assert tab.runs.item(0).text() == "Loading past runs…"
    assert "Checking" in tab.form.verdict.text() and not tab.start_button.isEnabled()

    qtbot.waitUntil(tab.start_button.isEnabled, timeout=30_000)
    assert "Ready" in tab.form.verdict.text()
    assert tab.form.engine.currentData() == "diffusers" and tab.form.base_model.currentData() is not None
    assert tab.runs.count() == 0  # no run yet: the placeholder row is gone
    assert tab.chart.empty.isVisible() and "appears here" in tab.chart.empty.text()

    set_advanced(tab, steps=4, every=4)
    qtbot.mouseClick(tab.start_button, LEFT)
    job_id = tab.job_id
    assert job_id, tab.form.verdict.text()
    wait_state(qtbot, ctx, job_id, ("succeeded", "failed"))
    qtbot.waitUntil(lambda: "LoRA saved" in tab.result.text(), timeout=10_000)
    assert len(tab.chart.steps) == 4 and tab.chart._plot.isVisible() and not tab.chart.empty.isVisible()
    assert tab.runs.count() == 1 and job_id in tab.runs.item(0).text()

    # Reopened again on Training: the past run is listed once read, and picking it draws its curve.
    again = reopen("Training").tabs.currentWidget()
    qtbot.waitUntil(lambda: again.runs.count() == 1 and job_id in again.runs.item(0).text(), timeout=30_000)
    assert again.chart.steps == []
    qtbot.mouseClick(again.runs.viewport(), LEFT, pos=again.runs.visualItemRect(again.runs.item(0)).center())
    assert again.chart.steps == tab.chart.steps
    qtbot.waitUntil(lambda: again.chart._plot.isVisible() and not again.chart.empty.isVisible())
    assert "LoRA saved" in again.result.text()


def test_a_training_tab_clicked_later_is_ready_when_it_appears(qtbot, reopen, ctx, photos: Path):
    _with_photos(ctx, photos)
    window = reopen("Characters")
    bar = window.tabs.tabBar()
    qtbot.mouseClick(bar, LEFT, pos=bar.tabRect(2).center())
    tab = window.tabs.currentWidget()
    assert isinstance(tab, TrainingTab)
    assert tab.form.engine.currentData() == "diffusers" and tab.start_button.isEnabled(), tab.form.verdict.text()
    assert window.ctx.settings.last_tab == "Training"  # the next start opens here


def test_a_window_reopened_on_dataset_never_says_a_character_with_photos_has_none(qtbot, reopen, ctx, photos):
    count = _with_photos(ctx, photos)
    ctx.characters.create("Bob", "ohwx_bob")  # no photos: the grid says so, once it knows
    assert count > 0
    window = reopen("Dataset")
    tab = window.tabs.currentWidget()
    assert isinstance(tab, DatasetTab)
    seen: list[tuple[bool, int]] = []  # what a person could see at each turn of the event loop
    watch = QTimer()
    watch.timeout.connect(lambda: seen.append((tab.empty_note.isVisible(), tab.model.rowCount())))
    watch.start(1)
    seen.append((tab.empty_note.isVisible(), tab.model.rowCount()))  # the first frame's
    assert tab.count.text() == f"Loading {count} photos…"
    qtbot.mouseClick(tab.select_all, LEFT)  # the waiting cells are not photos: nothing to select or delete yet
    assert tab.selected_images() == [] and not tab.delete_button.isEnabled()
    with qtbot.waitSignal(tab.reloaded, timeout=20_000):  # the photos read after the first frame
        pass
    qtbot.wait(50)
    watch.stop()
    assert all(not empty and rows == count for empty, rows in seen), seen[:5]
    assert tab.count.text() == f"{count} photos" and tab.model.images[0].character_name == "Ada Lovelace"
    qtbot.waitUntil(lambda: tab.model.thumbnails.cached(tab.model.images[0].id), timeout=20_000)

    tab.character.setCurrentIndex(tab.character.findText("Bob"))
    qtbot.waitUntil(tab.empty_note.isVisible, timeout=20_000)
    assert tab.empty_note.text() == "Bob has no photos yet: add some in the Characters tab."
    tab.character.setCurrentIndex(tab.character.findText("Ada Lovelace"))
    qtbot.waitUntil(lambda: tab.model.rowCount() == count, timeout=20_000)
    assert not tab.empty_note.isVisible()


def test_a_window_reopened_on_generate_waits_for_its_engines_before_generating(qtbot, reopen):
    window = reopen("Generate")
    tab = window.tabs.currentWidget()
    assert isinstance(tab, GenerateTab)
    assert not tab.generate_button.isEnabled() and tab.status.text().startswith("Reading the engines")
    assert tab.form.engine.currentText() == "checking engines…" and tab.details.text() == "Reading the gallery…"
    qtbot.waitUntil(tab.generate_button.isEnabled, timeout=30_000)
    assert tab.form.engine.currentData() == "diffusers" and tab.status.text() == ""
    assert tab.details.text() == "Your images appear here, newest first." and tab.form.run_on.currentText()
    assert tab.form.lora_note.text() == "No trained LoRA yet: train a character on the Training tab."
