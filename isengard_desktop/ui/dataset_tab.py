"""The Dataset tab: one virtualised grid of every image, filters, multi-select, bulk delete,
caption editing and the selected image's details."""

from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, QSize, Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QMessageBox,
    QPlainTextEdit,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from isengard_desktop.context import AppContext
from isengard_desktop.core.dataset import DatasetImage, ImageFilter, default_caption
from isengard_desktop.core.log import correlation
from isengard_desktop.errors import IsengardError
from isengard_desktop.ui.bridge import run_in_background
from isengard_desktop.ui.dataset_model import CELL, DatasetModel, ImageRole
from isengard_desktop.ui.widgets import button, label

CAPTION_CHOICES = [("All captions", None), ("Own caption", True), ("Default caption", False)]


class DatasetTab(QWidget):
    changed = Signal()
    reloaded = Signal()  # the grid shows the current filter's images

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.model = DatasetModel(self)
        self._generation = 0
        self._select_after: int | None = None
        layout = QVBoxLayout(self)
        filters = QHBoxLayout()
        filters.addWidget(label("Dataset", "title", wrap=False))
        filters.addSpacing(16)
        self.character = QComboBox()
        self.caption_filter = QComboBox()
        for text, _value in CAPTION_CHOICES:
            self.caption_filter.addItem(text)
        self.too_small = QCheckBox("Too small for training")
        self.duplicates = QCheckBox("Duplicates")
        self.count = label("", "muted", wrap=False)
        self.select_all = button("Select all")
        self.delete_button = button("Delete selected", danger=True)
        for widget in (self.character, self.caption_filter, self.too_small, self.duplicates):
            filters.addWidget(widget)
        filters.addStretch(1)
        for widget in (self.count, self.select_all, self.delete_button):
            filters.addWidget(widget)
        layout.addLayout(filters)

        self.view = QListView()
        self.view.setModel(self.model)
        self.view.setViewMode(QListView.ViewMode.IconMode)
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        self.view.setMovement(QListView.Movement.Static)
        self.view.setUniformItemSizes(True)
        self.view.setLayoutMode(QListView.LayoutMode.Batched)
        self.view.setBatchSize(300)
        self.view.setGridSize(QSize(CELL + 8, CELL + 8))
        self.view.setIconSize(QSize(CELL - 20, CELL - 40))
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setSpacing(4)
        # A grid cell centres its item across but not down (the first row sat on the frame's rounded top
        # edge and looked cut off): the same 4 px above the first row as beside the first column.
        self.view.setViewportMargins(0, 4, 0, 0)

        details = QWidget()
        details.setMinimumWidth(300)
        side = QVBoxLayout(details)
        self.preview = QLabel()
        self.preview.setFixedSize(280, 280)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setStyleSheet("background:#1a1d22; border-radius:8px;")
        self.info = label("Select a photo to see its details.", "muted")
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.caption = QPlainTextEdit()
        self.caption.setFixedHeight(90)
        self.caption.setPlaceholderText("Caption used for training")
        self.save_caption = button("Save caption", primary=True)
        self.reset_caption = button("Use default caption")
        side.addWidget(self.preview)
        side.addWidget(self.info)
        side.addWidget(label("Caption", "muted"))
        side.addWidget(self.caption)
        row = QHBoxLayout()
        row.addWidget(self.save_caption)
        row.addWidget(self.reset_caption)
        side.addLayout(row)
        side.addStretch(1)

        splitter = QSplitter()
        splitter.addWidget(self.view)
        splitter.addWidget(details)
        splitter.setStretchFactor(0, 1)
        layout.addWidget(splitter, 1)

        self.character.currentIndexChanged.connect(self.reload)
        self.caption_filter.currentIndexChanged.connect(self.reload)
        self.too_small.toggled.connect(self.reload)
        self.duplicates.toggled.connect(self.reload)
        self.select_all.clicked.connect(self.view.selectAll)
        self.delete_button.clicked.connect(self.delete_selected)
        self.save_caption.clicked.connect(lambda: self.set_caption(self.caption.toPlainText()))
        self.reset_caption.clicked.connect(lambda: self.set_caption(None))
        self.view.selectionModel().selectionChanged.connect(self._show_selection)
        self.refresh()

    # data --------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Characters may have changed: rebuild the character filter, then reload the grid."""
        current = self.character.currentData()
        self.character.blockSignals(True)
        self.character.clear()
        self.character.addItem("All characters", None)
        for person in self.ctx.characters.list():
            self.character.addItem(person.name, person.id)
        index = self.character.findData(current)
        self.character.setCurrentIndex(max(index, 0))
        self.character.blockSignals(False)
        self.reload()

    def current_filter(self) -> ImageFilter:
        return ImageFilter(
            character_id=self.character.currentData(),
            captioned=CAPTION_CHOICES[self.caption_filter.currentIndex()][1],
            too_small_only=self.too_small.isChecked(),
            duplicates_only=self.duplicates.isChecked(),
        )

    def reload(self) -> None:
        """Query the images for the current filter off the GUI thread (10,000 rows take ~150 ms)."""
        self._generation += 1
        generation, flt = self._generation, self.current_filter()
        run_in_background(self, lambda _progress, _cancelled: self.ctx.dataset.list(flt),
                          on_done=lambda images: self._apply(generation, images))

    def _apply(self, generation: int, images: list[DatasetImage]) -> None:
        if generation != self._generation:
            return  # a newer filter was chosen meanwhile
        self.model.set_images(images)
        self.count.setText(f"{len(images)} photo{'s' if len(images) != 1 else ''}")
        if self._select_after is not None:
            row = next((r for r, image in enumerate(images) if image.id == self._select_after), None)
            self._select_after = None
            if row is not None:
                self.view.selectionModel().setCurrentIndex(
                    self.model.index(row), QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self._show_selection()
        self.reloaded.emit()

    def selected_images(self) -> list[DatasetImage]:
        return [index.data(ImageRole) for index in self.view.selectionModel().selectedIndexes()]

    # actions -----------------------------------------------------------------------------------
    def delete_selected(self) -> None:
        images = self.selected_images()
        if not images:
            return
        answer = QMessageBox.question(
            self, "Delete photos",
            f"Delete {len(images)} photo(s) from the dataset?\n\nTheir files are moved to the volume's trash folder "
            f"({self.ctx.volume.trash_dir}); your original files are not touched.",
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        with correlation("images_delete", count=len(images)):
            self.ctx.dataset.delete([image.id for image in images])
        self.reload()
        self.changed.emit()

    def set_caption(self, text: str | None) -> None:
        images = self.selected_images()
        if len(images) != 1:
            return
        with correlation("caption_set", image_id=images[0].id):
            try:
                self.ctx.dataset.set_caption(images[0].id, text)
            except IsengardError as exc:  # e.g. a caption over the length limit: say so, keep the text
                self.info.setText(str(exc))
                return
        self._select_after = images[0].id
        self.reload()

    def _show_selection(self, *_args) -> None:
        images = self.selected_images() if self.view.selectionModel() else []
        single = len(images) == 1
        self.caption.setEnabled(single)
        self.save_caption.setEnabled(single)
        self.reset_caption.setEnabled(single and images[0].has_own_caption)
        self.delete_button.setEnabled(bool(images))
        if not single:
            self.preview.clear()
            self.caption.setPlainText("")
            self.info.setText(f"{len(images)} photos selected." if images else "Select a photo to see its details.")
            return
        image = images[0]
        pixmap = QPixmap(str(image.thumbnail_path))
        if not pixmap.isNull():
            self.preview.setPixmap(pixmap.scaled(280, 280, Qt.AspectRatioMode.KeepAspectRatio,
                                                 Qt.TransformationMode.SmoothTransformation))
        row = image.row
        flags = []
        if image.too_small:
            flags.append(f"⚠ smaller than {self.ctx.settings.min_training_side} px: too small for training")
        if row.duplicate_count > 1:
            flags.append(f"⧉ the same photo is in {row.duplicate_count - 1} other place(s)")
        self.info.setText("\n".join([
            f"<b>{row.source_name}</b>", f"Character: {image.character_name}",
            f"{row.width} × {row.height} px · {row.format} · {row.file_size / 1024:.0f} KB",
            f"SHA-256: {row.sha256[:16]}…", *flags,
        ]).replace("\n", "<br>"))
        self.caption.setPlainText(image.caption)
        self.caption.setToolTip(f"Default: {default_caption(image.trigger_word)}")

    def shutdown(self) -> None:
        self.model.shutdown()
