"""The Characters and Dataset tabs driven the way a person uses them."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QDialogButtonBox

from isengard_desktop.ui.character_dialogs import CharacterDialog
from isengard_desktop.ui.dataset_model import ImageRole

LEFT = Qt.MouseButton.LeftButton


def rows_become(qtbot, tab, count: int) -> None:
    """The grid reloads off the GUI thread: wait until it shows ``count`` images."""
    qtbot.waitUntil(lambda: tab.model.rowCount() == count, timeout=10_000)


def open_new_character(qtbot, window) -> CharacterDialog:
    """Click "New character" as a person does; returns the dialog it opened."""
    window.tabs.setCurrentWidget(window.characters)
    before = {id(d) for d in window.characters.findChildren(CharacterDialog)}
    qtbot.mouseClick(window.characters.new_button, LEFT)
    opened = [d for d in window.characters.findChildren(CharacterDialog) if id(d) not in before]
    assert len(opened) == 1 and opened[0].isVisible()
    return opened[0]


def click_dialog(qtbot, dialog: CharacterDialog, which: QDialogButtonBox.StandardButton) -> None:
    qtbot.mouseClick(dialog.findChild(QDialogButtonBox).button(which), LEFT)


def create_character(qtbot, window, name="Ada Lovelace", trigger="ohwx_ada"):
    dialog = open_new_character(qtbot, window)
    qtbot.keyClicks(dialog.name, name)
    qtbot.keyClicks(dialog.trigger, trigger)
    click_dialog(qtbot, dialog, QDialogButtonBox.StandardButton.Save)
    assert not dialog.isVisible(), dialog.error.text()
    return dialog


def tick(qtbot, box) -> None:
    """Click a check box on its box (its centre may be past the end of its label)."""
    qtbot.mouseClick(box, LEFT, pos=QPoint(6, box.height() // 2))


def drop_on(widget, paths: list[Path]) -> bool:
    """Drag files over ``widget`` and drop them, as the window system delivers it; returns whether it took them."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path)) for path in paths])
    enter = QDragEnterEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    if not enter.isAccepted():
        return False
    drop = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, drop)
    return drop.isAccepted()


def test_create_character_shows_a_card_and_refuses_bad_trigger(qtbot, window, ctx):
    bad = open_new_character(qtbot, window)
    qtbot.keyClicks(bad.name, "Ada")
    qtbot.keyClicks(bad.trigger, "ada lovelace")
    click_dialog(qtbot, bad, QDialogButtonBox.StandardButton.Save)
    assert bad.isVisible() and "single word" in bad.error.text()
    click_dialog(qtbot, bad, QDialogButtonBox.StandardButton.Cancel)
    assert not bad.isVisible() and ctx.characters.list() == []

    hinted = open_new_character(qtbot, window)
    qtbot.keyClicks(hinted.trigger, "anna")
    assert "already knows" in hinted.hint.text()
    click_dialog(qtbot, hinted, QDialogButtonBox.StandardButton.Cancel)

    create_character(qtbot, window)
    assert [c.character.name for c in window.characters.cards.values()] == ["Ada Lovelace"]
    assert window.dataset.character.findText("Ada Lovelace") >= 0  # the other tabs heard about it


def test_drop_imports_in_background_and_reports_refused_files(qtbot, window, photos: Path):
    create_character(qtbot, window)
    card = next(iter(window.characters.cards.values()))
    assert not drop_on(card, []), "a drag without files is refused"
    with qtbot.waitSignal(window.characters.import_finished, timeout=60_000) as finished:
        assert drop_on(card, [photos])
    report = finished.args[0]
    assert len(report.imported) == 9
    assert [Path(r["file"]).name for r in report.refused] == ["broken.jpg"]
    summary = window.characters.last_summary
    assert "9 photos added" in summary.text() and "broken.jpg" in summary.detailedText()
    card = next(iter(window.characters.cards.values()))
    assert card.character.image_count == 9 and not card.avatar.pixmap().isNull()
    rows_become(qtbot, window.dataset, 9)


def test_filters_caption_and_bulk_delete(qtbot, window, photos: Path, ctx, tmp_path: Path):
    create_character(qtbot, window)
    create_character(qtbot, window, "Bob", "ohwx_bob")
    ada, bob = (c.id for c in ctx.characters.list())
    big = tmp_path / "big" / "bob large.png"  # the only photo large enough for training (512 px and more)
    big.parent.mkdir()
    Image.new("RGB", (640, 600), (90, 60, 30)).save(big)
    with qtbot.waitSignal(window.characters.import_finished, timeout=60_000):
        window.characters.import_paths(ada, [photos])
    with qtbot.waitSignal(window.characters.import_finished, timeout=60_000):
        window.characters.import_paths(bob, [photos / "face 0.png", big])
    tab = window.dataset
    window.tabs.setCurrentWidget(tab)
    rows_become(qtbot, tab, 11)
    tab.character.setCurrentIndex(tab.character.findData(bob))
    rows_become(qtbot, tab, 2)
    tab.character.setCurrentIndex(0)
    rows_become(qtbot, tab, 11)
    tick(qtbot, tab.duplicates)
    rows_become(qtbot, tab, 2)  # the same photo in Ada and in Bob
    shown = [tab.model.index(r).data(ImageRole) for r in range(2)]
    assert {i.row.source_name for i in shown} == {"face 0.png"} and {i.character_name for i in shown} == {
        "Ada Lovelace", "Bob"}
    tick(qtbot, tab.duplicates)
    rows_become(qtbot, tab, 11)
    tick(qtbot, tab.too_small)
    rows_become(qtbot, tab, 10)  # every photo but the large one
    assert all(tab.model.index(r).data(ImageRole).too_small for r in range(10))
    tick(qtbot, tab.too_small)
    rows_become(qtbot, tab, 11)

    tab.character.setCurrentIndex(tab.character.findData(ada))
    rows_become(qtbot, tab, 9)
    tab.view.setCurrentIndex(tab.model.index(0))
    assert tab.caption.toPlainText() == "a photo of ohwx_ada"
    tab.caption.selectAll()
    qtbot.keyClicks(tab.caption, "ohwx_ada smiling at the sea")
    with qtbot.waitSignal(tab.reloaded):
        qtbot.mouseClick(tab.save_caption, LEFT)
    assert tab.caption.toPlainText() == "ohwx_ada smiling at the sea"  # still selected after the reload
    tab.caption_filter.setCurrentIndex(1)  # own caption
    rows_become(qtbot, tab, 1)
    assert tab.model.index(0).data(ImageRole).caption == "ohwx_ada smiling at the sea"
    tab.caption_filter.setCurrentIndex(0)
    rows_become(qtbot, tab, 9)

    victims = [tab.model.index(r).data(ImageRole) for r in range(3)]
    tab.view.clearSelection()
    for row in range(3):
        tab.view.selectionModel().select(tab.model.index(row), tab.view.selectionModel().SelectionFlag.Select)
    qtbot.mouseClick(tab.delete_button, LEFT)
    rows_become(qtbot, tab, 6)
    for image in victims:
        assert list(ctx.volume.trash_dir.rglob(image.path.name)), "deleted photos go to the trash"
    counts = {card.character.name: card.character.image_count for card in window.characters.cards.values()}
    assert counts == {"Ada Lovelace": 6, "Bob": 2}


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
