"""The Characters and Dataset tabs driven the way a person uses them."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from isengard_desktop.ui.dataset_model import ImageRole


def rows_become(qtbot, tab, count: int) -> None:
    """The grid reloads off the GUI thread: wait until it shows ``count`` images."""
    qtbot.waitUntil(lambda: tab.model.rowCount() == count, timeout=10_000)


def create_character(qtbot, window, name="Ada Lovelace", trigger="ohwx_ada"):
    dialog = window.characters.new_character()
    dialog.name.setText(name)
    dialog.trigger.setText(trigger)
    dialog.save()
    return dialog


def test_create_character_shows_a_card_and_refuses_bad_trigger(qtbot, window):
    bad = window.characters.new_character()
    bad.name.setText("Ada")
    bad.trigger.setText("ada lovelace")
    bad.save()
    assert bad.isVisible() and "single word" in bad.error.text()
    bad.reject()

    hinted = window.characters.new_character()
    hinted.trigger.setText("anna")
    assert "already knows" in hinted.hint.text()
    hinted.reject()

    create_character(qtbot, window)
    assert [c.character.name for c in window.characters.cards.values()] == ["Ada Lovelace"]
    assert window.dataset.character.findText("Ada Lovelace") >= 0  # the other tabs heard about it


def test_drop_imports_in_background_and_reports_refused_files(qtbot, window, photos: Path):
    create_character(qtbot, window)
    card = next(iter(window.characters.cards.values()))
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(photos))])
    drop = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                      Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.characters.import_finished, timeout=60_000) as finished:
        card.dropEvent(drop)
    report = finished.args[0]
    assert len(report.imported) == 9
    assert [Path(r["file"]).name for r in report.refused] == ["broken.jpg"]
    summary = window.characters.last_summary
    assert "9 photo(s) added" in summary.text() and "broken.jpg" in summary.detailedText()
    card = next(iter(window.characters.cards.values()))
    assert card.character.image_count == 9 and not card.avatar.pixmap().isNull()
    rows_become(qtbot, window.dataset, 9)


def test_filters_caption_and_bulk_delete(qtbot, window, photos: Path, ctx):
    create_character(qtbot, window)
    create_character(qtbot, window, "Bob", "ohwx_bob")
    ada, bob = (c.id for c in ctx.characters.list())
    with qtbot.waitSignal(window.characters.import_finished, timeout=60_000):
        window.characters.import_paths(ada, [photos])
    with qtbot.waitSignal(window.characters.import_finished, timeout=60_000):
        window.characters.import_paths(bob, [photos / "face 0.png"])
    tab = window.dataset
    rows_become(qtbot, tab, 10)
    tab.character.setCurrentIndex(tab.character.findData(bob))
    rows_become(qtbot, tab, 1)
    tab.character.setCurrentIndex(0)
    rows_become(qtbot, tab, 10)
    tab.duplicates.setChecked(True)
    rows_become(qtbot, tab, 2)  # the same photo in Ada and in Bob
    tab.duplicates.setChecked(False)
    rows_become(qtbot, tab, 10)
    tab.too_small.setChecked(True)
    with qtbot.waitSignal(tab.reloaded):
        pass
    assert tab.model.rowCount() == 10  # every test photo is below 512 px
    tab.too_small.setChecked(False)
    with qtbot.waitSignal(tab.reloaded):
        pass

    tab.view.setCurrentIndex(tab.model.index(0))
    assert tab.caption.toPlainText() == "a photo of ohwx_ada"
    tab.caption.setPlainText("ohwx_ada smiling at the sea")
    with qtbot.waitSignal(tab.reloaded):
        tab.save_caption.click()
    assert tab.caption.toPlainText() == "ohwx_ada smiling at the sea"  # still selected after the reload
    tab.caption_filter.setCurrentIndex(1)  # own caption
    rows_become(qtbot, tab, 1)
    assert tab.model.index(0).data(ImageRole).caption == "ohwx_ada smiling at the sea"
    tab.caption_filter.setCurrentIndex(0)
    rows_become(qtbot, tab, 10)

    tab.view.selectAll()
    victims = [tab.model.index(r).data(ImageRole) for r in range(3)]
    tab.view.clearSelection()
    for row in range(3):
        tab.view.selectionModel().select(tab.model.index(row), tab.view.selectionModel().SelectionFlag.Select)
    tab.delete_button.click()
    rows_become(qtbot, tab, 7)
    for image in victims:
        assert list(ctx.volume.trash_dir.rglob(image.path.name)), "deleted photos go to the trash"
    assert next(iter(window.characters.cards.values())).character.image_count in (6, 7)


def test_thumbnails_load_in_the_grid(qtbot, window, photos: Path, ctx):
    create_character(qtbot, window)
    with qtbot.waitSignal(window.characters.import_finished, timeout=60_000):
        window.characters.import_paths(ctx.characters.list()[0].id, [photos])
    model = window.dataset.model
    rows_become(qtbot, window.dataset, 9)
    first = model.index(0)
    model.data(first, Qt.ItemDataRole.DecorationRole)  # asks for the thumbnail
    qtbot.waitUntil(lambda: model.thumbnails.cached(first.data(ImageRole).id), timeout=10_000)
    shown = model.data(first, Qt.ItemDataRole.DecorationRole)
    assert shown.width() > 0 and shown.cacheKey() != model.thumbnails.placeholder.cacheKey()


def test_settings_shows_engine_states(qtbot, window, monkeypatch):
    monkeypatch.delenv("ISENGARD_AITOOLKIT_DIR", raising=False)
    monkeypatch.delenv("ISENGARD_COMFYUI_DIR", raising=False)
    dialog = window.open_settings()
    qtbot.waitUntil(lambda: "checking" not in dialog.engine_labels["aitoolkit"].text(), timeout=30_000)
    assert "pin 4d5a649a · not installed" in dialog.engine_labels["aitoolkit"].text()
    assert "isengard engines install aitoolkit" in dialog.engine_labels["aitoolkit"].text()
    assert "isengard engines install comfyui" in dialog.engine_labels["comfyui"].text()
    dialog.accept()


def test_settings_adds_and_removes_an_extra_models_folder(qtbot, window, ctx, tmp_path):
    from isengard_desktop.storage import settings as settings_store

    folder = tmp_path / "ComfyUI" / "models"
    folder.mkdir(parents=True)
    dialog = window.open_settings()
    dialog.add_model_dir(str(folder))
    assert settings_store.load(ctx.volume.settings_path).extra_model_dirs == [str(folder)]
    assert dialog.model_dirs.item(0).text() == str(folder)
    dialog.model_dirs.setCurrentRow(0)
    dialog.remove_model_dir()
    assert settings_store.load(ctx.volume.settings_path).extra_model_dirs == []
    dialog.accept()
