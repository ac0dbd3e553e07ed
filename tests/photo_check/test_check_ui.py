"""Check photos in the window, as a person uses it: press the button, watch it finish, read the badges, filter by
issue, see the face boxes and the reasons, and find the flagged photos named in the Training pre-flight."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QItemSelectionModel, Qt

from tests.photo_check import real_photos


@pytest.mark.slow
def test_check_photos_badges_filter_faces_and_preflight(qtbot, window, ctx, tmp_path: Path):
    from isengard_desktop.ui.dataset_model import IssuesRole

    folder = tmp_path / "photos"
    real_photos.make(folder, ("astronaut", "two_people", "blurred", "coffee"))
    character = ctx.characters.create("Eileen", "ohwx_eileen")
    ctx.importer.run(character.id, [str(folder)])
    window.characters.refresh()
    window.tabs.setCurrentWidget(window.dataset)
    tab = window.dataset
    tab.refresh()
    tab.character.setCurrentIndex(tab.character.findData(character.id))
    qtbot.waitUntil(lambda: tab.model.rowCount() == 4, timeout=10_000)
    # Before a check every photo is "not checked" and the button is there to press.
    assert tab.check_button.isEnabled()
    assert all("not_checked" in tab.model.index(r).data(IssuesRole) for r in range(4))

    qtbot.mouseClick(tab.check_button, Qt.MouseButton.LeftButton)
    assert not tab.check_button.isEnabled() and tab.check_progress.isVisible() and tab.check_cancel.isVisible()
    qtbot.waitUntil(lambda: tab.check_job is None, timeout=90_000)
    assert not tab.check_cancel.isVisible()
    qtbot.waitUntil(lambda: "look usable" in tab.check_verdict.text(), timeout=10_000)
    assert not tab.check_progress.isVisible()

    names = {tab.model.images[r].row.source_name: r for r in range(tab.model.rowCount())}
    issues = {name: tab.model.index(r).data(IssuesRole) for name, r in names.items()}
    assert issues["astronaut.jpg"] == []
    assert "several_faces" in issues["two_people.jpg"] and "blurry" in issues["blurred.jpg"]
    assert "no_face" in issues["coffee.jpg"]
    tooltip = tab.model.index(names["two_people.jpg"]).data(Qt.ItemDataRole.ToolTipRole)
    assert "2 faces: crop to the person" in tooltip
    assert "1 photo shows more than one face" in tab.check_verdict.text()

    # The filter per issue.
    tab.issue_filter.setCurrentIndex(tab.issue_filter.findData("several_faces"))
    qtbot.waitUntil(lambda: tab.model.rowCount() == 1, timeout=10_000)
    tab.view.selectionModel().setCurrentIndex(tab.model.index(0), QItemSelectionModel.SelectionFlag.ClearAndSelect)
    assert "2 faces" in tab.info.text()
    # The face boxes are drawn on the preview: green (the main face) on the left half, orange on the right.
    preview = tab.preview.pixmap().toImage()
    colours = {preview.pixelColor(x, y).name() for x in range(preview.width()) for y in range(preview.height())}
    assert "#2ecc71" in colours and "#f39c12" in colours
    tab.issue_filter.setCurrentIndex(tab.issue_filter.findData("any"))
    qtbot.waitUntil(lambda: tab.model.rowCount() == 3, timeout=10_000)

    # The Training pre-flight warns and names the photos behind it; Start stays available.
    window.tabs.setCurrentWidget(window.training)
    form = window.training.form
    form.refresh()
    form.character.setCurrentIndex(form.character.findData(character.id))
    qtbot.waitUntil(lambda: "two_people.jpg (several faces" in form.verdict.text(), timeout=10_000)
    assert "1 of 4 look usable" in form.verdict.text()
    assert window.training.start_button.isEnabled()


@pytest.mark.slow
def test_cancel_a_check_from_the_dataset_tab(qtbot, window, ctx, tmp_path: Path):
    folder = tmp_path / "photos"
    real_photos.make(folder)
    character = ctx.characters.create("Eileen", "ohwx_eileen")
    ctx.importer.run(character.id, [str(folder)])
    window.tabs.setCurrentWidget(window.dataset)
    tab = window.dataset
    tab.refresh()
    tab.character.setCurrentIndex(tab.character.findData(character.id))
    qtbot.waitUntil(lambda: tab.model.rowCount() == len(list(folder.iterdir())), timeout=10_000)
    qtbot.mouseClick(tab.check_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(tab.check_cancel, Qt.MouseButton.LeftButton)
    assert "Stopping" in tab.check_verdict.text()
    qtbot.waitUntil(lambda: tab.check_job is None, timeout=60_000)
    qtbot.waitUntil(lambda: "cancelled" in tab.check_verdict.text(), timeout=10_000)
    assert tab.check_button.isEnabled() and not tab.check_cancel.isVisible()
