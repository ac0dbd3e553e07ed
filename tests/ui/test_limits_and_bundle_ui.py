"""Issue 11 items 5 and 6 in the window: the Advanced fields hold only what a run accepts, and the Jobs tab's
bundle leaves the person's images out unless the box saying so is ticked."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractSpinBox

from isengard_desktop.core.presets import LIMITS, load_preset
from isengard_desktop.core.training import build_spec


def type_into(qtbot, box: QAbstractSpinBox, text: str) -> None:
    box.selectAll()
    qtbot.keyClicks(box.lineEdit(), text)
    qtbot.keyClick(box.lineEdit(), Qt.Key.Key_Return)


def test_the_advanced_fields_cannot_hold_what_a_run_would_refuse(qtbot, window, ctx) -> None:
    window.tabs.setCurrentWidget(window.training)
    form = window.training.form
    form.advanced.setChecked(True)  # as tests/ui/test_training_and_jobs.py opens the panel
    type_into(qtbot, form.steps, "99999999999")
    type_into(qtbot, form.rank, "100000")
    assert form.steps.value() <= LIMITS["steps"][1] and form.rank.value() <= LIMITS["rank"][1]
    assert (form.learning_rate.minimum(), form.learning_rate.maximum()) == LIMITS["learning_rate"]
    assert "1 to 256" in form.rank.toolTip()
    load_preset(form.preset.currentData()).values(fast_test=True, overrides=form.overrides())  # accepted as is


@pytest.mark.slow
def test_the_bundle_has_the_persons_images_only_when_the_box_is_ticked(qtbot, window, ctx, photos: Path,
                                                                       tmp_path: Path) -> None:
    ada = ctx.characters.create("Ada", "ohwx_ada")
    ctx.importer.run(ada.id, [photos])
    spec, check = build_spec(ctx.volume, ctx.dataset, ada, "fast-test", "quick",
                             {"steps": 2, "save_every": 2, "sample_every": 2})
    assert check.ok, check.problems
    job = ctx.jobs.submit("training", "diffusers", spec.to_dict(), ada.id)
    assert ctx.jobs.wait(job.id, timeout=120).state == "succeeded"
    tab = window.jobs
    window.tabs.setCurrentWidget(tab)
    tab.reload()
    tab.table.selectRow(0)
    assert not tab.bundle_images.isChecked() and "show the person" in tab.bundle_images.text()

    without = tab.export_bundle(tmp_path / "without.zip")
    assert "sample image(s) of the person are left out" in tab.status.text()
    assert not [n for n in zipfile.ZipFile(without).namelist() if n.endswith(".png")]

    qtbot.mouseClick(tab.bundle_images, Qt.MouseButton.LeftButton, pos=tab.bundle_images.rect().center())
    assert tab.bundle_images.isChecked()
    with_images = tab.export_bundle(tmp_path / "with.zip")
    assert "which show the person, are included" in tab.status.text()
    assert [n for n in zipfile.ZipFile(with_images).namelist() if n.endswith(".png")]


def test_a_caption_over_the_limit_is_refused_in_words_and_the_text_kept(qtbot, window, ctx, photos: Path) -> None:
    from isengard_desktop.base.caption_text import MAX_CAPTION_LENGTH

    ada = ctx.characters.create("Ada", "ohwx_ada")
    ctx.importer.run(ada.id, [photos / "face 0.png"])
    tab = window.dataset
    window.tabs.setCurrentWidget(tab)
    tab.reload()
    qtbot.waitUntil(lambda: tab.model.rowCount() == 1, timeout=10_000)
    tab.view.setCurrentIndex(tab.model.index(0))
    long_caption = "ohwx_ada " * 150
    tab.caption.setPlainText(long_caption)
    qtbot.mouseClick(tab.save_caption, Qt.MouseButton.LeftButton)
    assert f"keep it to {MAX_CAPTION_LENGTH} or fewer" in tab.info.text()
    assert tab.caption.toPlainText() == long_caption, "what the person typed is not thrown away"
    assert ctx.dataset.list()[0].caption == "a photo of ohwx_ada"
