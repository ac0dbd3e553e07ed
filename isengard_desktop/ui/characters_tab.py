"""The Characters tab: cards, create / edit / delete, and importing photos (dialog or drag and drop)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QMessageBox,
    QProgressBar,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from isengard_desktop.base.errors import IsengardError
from isengard_desktop.base.log import correlation
from isengard_desktop.context import AppContext
from isengard_desktop.ui.bridge import Task, run_in_background
from isengard_desktop.ui.character_card import CharacterCard
from isengard_desktop.ui.character_dialogs import CharacterDialog
from isengard_desktop.ui.widgets import button, label

if TYPE_CHECKING:  # the importer pulls in Pillow and pillow-heif: not before the first frame (E37)
    from isengard_desktop.core.importer import ImportProgress, ImportReport

COLUMNS = 4
IMAGE_FILTER = "Photos (*.jpg *.jpeg *.png *.webp *.bmp *.tif *.tiff *.heic *.heif);;All files (*)"


class CharactersTab(QWidget):
    changed = Signal()  # characters or their photos changed: other tabs refresh
    import_finished = Signal(object)  # ImportReport

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.import_task: Task | None = None
        self.last_summary: QMessageBox | None = None
        layout = QVBoxLayout(self)
        header = QHBoxLayout()
        header.addWidget(label("Characters", "title"))
        header.addStretch(1)
        self.new_button = button("New character", primary=True)
        self.new_button.clicked.connect(self.new_character)
        header.addWidget(self.new_button)
        layout.addLayout(header)
        layout.addWidget(label("Each character is one person. Drop photos or a folder onto a card to add them; "
                               "your original files are copied, never changed.", "muted"))
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        layout.addWidget(self.scroll, 1)
        self.progress_row = QWidget()
        row = QHBoxLayout(self.progress_row)
        self.progress_label = label("", "muted", wrap=False)
        self.progress = QProgressBar()
        self.cancel_import = button("Cancel import")
        self.cancel_import.clicked.connect(lambda: self.import_task and self.import_task.cancel())
        row.addWidget(self.progress_label)
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_import)
        self.progress_row.hide()
        layout.addWidget(self.progress_row)
        self.cards: dict[int, CharacterCard] = {}
        self.refresh()

    # rendering ---------------------------------------------------------------------------------
    def refresh(self) -> None:
        container = QWidget()
        grid = QGridLayout(container)
        grid.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        grid.setSpacing(14)
        self.cards = {}
        characters = self.ctx.characters.list()
        if not characters:
            empty = QWidget()
            box = QVBoxLayout(empty)
            box.addStretch(1)
            for widget in (label("Create your first character", "title"),
                           label("A character is a person you want to train: give it a name and a rare trigger word, "
                                 "then add 10–30 varied photos of that person.", "muted")):
                widget.setAlignment(Qt.AlignmentFlag.AlignCenter)
                box.addWidget(widget)
            start = button("New character", primary=True)
            start.clicked.connect(self.new_character)
            box.addWidget(start, alignment=Qt.AlignmentFlag.AlignCenter)
            box.addStretch(2)
            self.scroll.setWidget(empty)
            return
        for index, character in enumerate(characters):
            card = CharacterCard(character)
            card.import_requested.connect(self.choose_files)
            card.paths_dropped.connect(self.import_paths)
            card.edit_requested.connect(self.edit_character)
            card.delete_requested.connect(self.delete_character)
            self.cards[character.id] = card
            grid.addWidget(card, index // COLUMNS, index % COLUMNS)
        self.scroll.setWidget(container)

    # actions -----------------------------------------------------------------------------------
    def new_character(self) -> CharacterDialog:
        def submit(name: str, trigger: str, description: str):
            with correlation("character_create"):
                return self.ctx.characters.create(name, trigger, description)

        dialog = CharacterDialog(self, submit)
        dialog.accepted.connect(self._after_change)
        dialog.open()
        return dialog

    def edit_character(self, character_id: int) -> CharacterDialog:
        current = self.ctx.characters.get(character_id)

        def submit(name: str, trigger: str, description: str):
            with correlation("character_edit", character_id=character_id):
                return self.ctx.characters.update(character_id, name=name, trigger_word=trigger,
                                                  description=description)

        dialog = CharacterDialog(self, submit, current)
        dialog.accepted.connect(self._after_change)
        dialog.open()
        return dialog

    def delete_character(self, character_id: int) -> None:
        character = self.ctx.characters.get(character_id)
        answer = QMessageBox.question(
            self, "Delete character",
            f"Delete {character.name}?\n\nIts {character.image_count} photos are moved to the volume's trash folder "
            f"({self.ctx.volume.trash_dir}), so you can still get them back. Your original files are not touched.",
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        with correlation("character_delete", character_id=character_id):
            try:
                self.ctx.characters.delete(character_id)
            except IsengardError as exc:
                QMessageBox.warning(self, "Could not delete", str(exc))
        self._after_change()

    def choose_files(self, character_id: int) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add photos", str(Path.home()), IMAGE_FILTER)
        if files:
            self.import_paths(character_id, [Path(f) for f in files])

    def choose_folder(self, character_id: int) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of photos", str(Path.home()))
        if folder:
            self.import_paths(character_id, [Path(folder)])

    def import_paths(self, character_id: int, paths: list[Path]) -> Task | None:
        """Import files or folders into a character in the background: the one path used by drop and dialog."""
        if self.import_task is not None:
            QMessageBox.information(self, "Import running", "Another import is still running; wait for it to finish.")
            return None
        character = self.ctx.characters.get(character_id)
        self.progress_label.setText(f"Adding photos to {character.name}…")
        self.progress.setRange(0, 0)
        self.progress_row.show()

        def work(report_progress, cancelled) -> ImportReport:
            with correlation("photos_import", character_id=character_id):
                return self.ctx.importer.run(character_id, paths, on_progress=report_progress,
                                             should_cancel=cancelled)

        self.import_task = run_in_background(self, work, self._on_progress, self._on_imported, self._on_failed)
        return self.import_task

    def _on_progress(self, progress: ImportProgress) -> None:
        self.progress.setRange(0, max(progress.total, 1))
        self.progress.setValue(progress.done)
        self.progress_label.setText(f"Adding photos: {progress.done} of {progress.total}")

    def _on_imported(self, report: ImportReport) -> None:
        self.import_task = None
        self.progress_row.hide()
        self._after_change()
        self.import_finished.emit(report)
        self.show_summary(report)

    def _on_failed(self, exc: Exception) -> None:
        self.import_task = None
        self.progress_row.hide()
        self._after_change()
        QMessageBox.warning(self, "Import stopped", f"The import stopped: {exc}\nPhotos added before this are kept.")

    def show_summary(self, report: ImportReport) -> QMessageBox:
        added, skipped = len(report.imported), len(report.duplicates)
        lines = [f"{added} photo{'' if added == 1 else 's'} added."]
        if skipped:
            lines.append(f"{skipped} {'was' if skipped == 1 else 'were'} already there and "
                         f"{'was' if skipped == 1 else 'were'} skipped.")
        small = sum(1 for item in report.imported if item["too_small"])
        if small:
            lines.append(f"{small} {'is' if small == 1 else 'are'} smaller than {self.ctx.settings.min_training_side} "
                         f"px and {'is' if small == 1 else 'are'} flagged as too small for training.")
        if report.cancelled:
            lines.append("The import was cancelled; what was added before is kept.")
        box = QMessageBox(QMessageBox.Icon.Information if not report.refused else QMessageBox.Icon.Warning,
                          "Photos added", "\n".join(lines), parent=self)
        if report.refused:
            refused = len(report.refused)
            box.setInformativeText(f"{refused} file{'' if refused == 1 else 's'} could not be added (see details).")
            box.setDetailedText("\n".join(f"{Path(r['file']).name}: {r['reason']}" for r in report.refused))
        box.setModal(False)
        box.open()  # non-blocking: the window stays usable
        self.last_summary = box
        return box

    def _after_change(self) -> None:
        self.refresh()
        self.changed.emit()
