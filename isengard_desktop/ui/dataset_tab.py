"""The Dataset tab: one virtualised grid of every image, filters, multi-select, bulk delete,
caption editing and the selected image's details; Check photos (a job) and its findings as badges, a filter per
issue and the face boxes on the preview."""

from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from isengard_desktop.base.caption_text import default_caption
from isengard_desktop.base.errors import IsengardError
from isengard_desktop.base.log import correlation
from isengard_desktop.base.mode import FAST_TEST
from isengard_desktop.context import AppContext
from isengard_desktop.core.dataset import DatasetImage, ImageFilter
from isengard_desktop.core.photo_check.analyse import BADGES, ISSUES
from isengard_desktop.core.photo_check.service import PhotoCheckService
from isengard_desktop.ui.bridge import run_in_background
from isengard_desktop.ui.caption_panel import CaptionPanel
from isengard_desktop.ui.dataset_model import CELL, BadgeDelegate, DatasetModel, ImageRole
from isengard_desktop.ui.widgets import button, label

CAPTION_CHOICES = [("All captions", None), ("Own caption", True), ("Default caption", False)]
# The issue filter: everything, any issue, or one issue (Check photos' codes).
ISSUE_CHOICES = [("All checks", None), ("Any issue", "any"), *((f"Issue: {BADGES[c]}", c) for c in ISSUES)]


class DatasetTab(QWidget):
    changed = Signal()
    reloaded = Signal()  # the grid shows the current filter's images

    def __init__(self, ctx: AppContext, bridge=None, later: bool = False) -> None:
        """``later``: built for the window's first frame, the grid shows an empty cell per photo and reads the
        photos when load_later() is called, after that frame (its thread would slow the frame down)."""
        super().__init__()
        self.ctx = ctx
        self.later = later
        self.checks = PhotoCheckService(ctx)
        self.check_job: str | None = None
        self._check_error: str | None = None
        self.model = DatasetModel(self)
        self._photo_counts: dict[int, int] = {}  # character id -> its photos (the characters list counts them)
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
        self.issue_filter = QComboBox()
        for text, value in ISSUE_CHOICES:
            self.issue_filter.addItem(text, value)
        self.issue_filter.setToolTip("Show the photos Check photos flagged, by issue")
        self.count = label("", "muted", wrap=False)
        self.select_all = button("Select all")
        self.delete_button = button("Delete selected", danger=True)
        for widget in (self.character, self.caption_filter, self.too_small, self.duplicates, self.issue_filter):
            filters.addWidget(widget)
        filters.addStretch(1)
        for widget in (self.count, self.select_all, self.delete_button):
            filters.addWidget(widget)
        layout.addLayout(filters)
        # Work on a whole character's photos: Check photos (and its progress), the dataset's verdict.
        self.actions_row = QHBoxLayout()
        self.check_button = button("Check photos", primary=True)
        self.check_button.setToolTip("Find the photos that would hurt the likeness: no face, several faces, a face "
                                     "too small, blur, bad exposure, near-copies, someone else")
        self.check_progress = QProgressBar()
        self.check_progress.setFixedWidth(220)
        self.check_progress.setVisible(False)
        self.check_cancel = button("Cancel")
        self.check_cancel.setToolTip("Stop the check; the photos checked so far keep their results")
        self.check_cancel.setVisible(False)
        self.check_verdict = label("", "muted")
        for widget in (self.check_button, self.check_progress, self.check_cancel):
            self.actions_row.addWidget(widget)
        self.actions_row.addWidget(self.check_verdict, 1)
        layout.addLayout(self.actions_row)
        # Caption all (ui/caption_panel.py): the character's captions from the vision-language model, as a job.
        self.captions = CaptionPanel(ctx, bridge, self.character)
        self.captions.written.connect(self.reload)
        layout.addWidget(self.captions)

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
        self.view.setItemDelegate(BadgeDelegate(self.view))

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

        # Said only once a query answered with no photo (never while the first one runs: they may be on the way).
        self.empty_note = label("", "hint")
        self.empty_note.hide()
        layout.addWidget(self.empty_note)

        splitter = QSplitter()
        splitter.addWidget(self.view)
        splitter.addWidget(details)
        splitter.setStretchFactor(0, 1)
        layout.addWidget(splitter, 1)

        self.character.currentIndexChanged.connect(self.reload)
        self.caption_filter.currentIndexChanged.connect(self.reload)
        self.too_small.toggled.connect(self.reload)
        self.duplicates.toggled.connect(self.reload)
        self.issue_filter.currentIndexChanged.connect(self.reload)
        self.check_button.clicked.connect(self.check_photos)
        self.check_cancel.clicked.connect(self.cancel_check)
        if bridge is not None:
            bridge.event.connect(self._on_job_event)
        self.select_all.clicked.connect(self.view.selectAll)
        self.delete_button.clicked.connect(self.delete_selected)
        self.save_caption.clicked.connect(lambda: self.set_caption(self.caption.toPlainText()))
        self.reset_caption.clicked.connect(lambda: self.set_caption(None))
        self.view.selectionModel().selectionChanged.connect(self._show_selection)
        self._show_selection()  # nothing selected yet: the caption and delete buttons wait for a photo
        self.refresh()

    # data --------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Characters may have changed: rebuild the character filter, then reload the grid."""
        current = self.character.currentData()
        self.character.blockSignals(True)
        self.character.clear()
        self.character.addItem("All characters", None)
        people = self.ctx.characters.list()
        self._photo_counts = {person.id: person.image_count for person in people}
        for person in people:
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
        issue = self.issue_filter.currentData()
        if self.later:  # the first frame's: cells for the photos there are, filled once the query answers
            self._show_expected(flt, issue)
            return
        run_in_background(self, lambda _progress, _cancelled: self._load(flt, issue),
                          on_done=lambda loaded: self._apply(generation, *loaded))

    def load_later(self) -> None:
        """Read the grid's photos (for a tab built with ``later``)."""
        self.later = False
        self.reload()

    def _show_expected(self, flt: ImageFilter, issue: str | None) -> None:
        """Before the first query answers: as many thumbnail-sized empty cells as the characters list counts photos
        for the filter, when only the character filter is set (the other filters need the query)."""
        self.empty_note.hide()
        self._show_summary(None)
        if flt != ImageFilter(character_id=flt.character_id) or issue is not None:
            self.count.setText("Loading photos…")
            return
        count = sum(n for person, n in self._photo_counts.items() if flt.character_id in (None, person))
        self.model.set_placeholders(count)
        self.count.setText(f"Loading {count} photo{'s' if count != 1 else ''}…")

    def _load(self, flt: ImageFilter, issue: str | None) -> tuple[list[DatasetImage], dict[int, dict], dict | None]:
        """The filter's images and Check photos' findings for them (off the GUI thread: the report is rebuilt from
        the cache, one character at a time)."""
        images = self.ctx.dataset.list(flt)
        found: dict[int, dict] = {}
        summary = None
        for character_id in sorted({image.row.character_id for image in images}):
            report = self.checks.report(character_id)
            found.update(report.by_image())
            if flt.character_id is not None:
                summary = report.summary
        if issue is not None:
            images = [i for i in images
                      if (found.get(i.id, {}).get("issues") if issue == "any" else
                          issue in found.get(i.id, {}).get("issues", []))]
        return images, found, summary

    def _apply(self, generation: int, images: list[DatasetImage], found: dict[int, dict] | None = None,
               summary: dict | None = None) -> None:
        if generation != self._generation:
            return  # a newer filter was chosen meanwhile
        self.model.set_images(images, found)
        self._show_summary(summary)
        self.count.setText(f"{len(images)} photo{'s' if len(images) != 1 else ''}")
        self._show_empty(images)
        if self._select_after is not None:
            row = next((r for r, image in enumerate(images) if image.id == self._select_after), None)
            self._select_after = None
            if row is not None:
                self.view.selectionModel().setCurrentIndex(
                    self.model.index(row), QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self._show_selection()
        self.reloaded.emit()

    def _show_empty(self, images: list[DatasetImage]) -> None:
        """Say why the grid is empty, and what to do."""
        self.empty_note.setVisible(not images)
        if images:
            return
        character = self.character.currentText() if self.character.currentData() is not None else None
        filtered = self.current_filter() != ImageFilter(character_id=self.character.currentData()) \
            or self.issue_filter.currentData() is not None
        if filtered:
            self.empty_note.setText("No photo matches these filters.")
        elif character:
            self.empty_note.setText(f"{character} has no photos yet: add some in the Characters tab.")
        else:
            self.empty_note.setText("No photos yet: create a character and add photos in the Characters tab.")

    def selected_images(self) -> list[DatasetImage]:
        return [image for index in self.view.selectionModel().selectedIndexes()
                if (image := index.data(ImageRole)) is not None]

    # Check photos --------------------------------------------------------------------------------
    def _show_summary(self, summary: dict | None) -> None:
        character_id = self.character.currentData()
        busy = self.check_job is not None
        self.check_button.setEnabled(character_id is not None and not busy)
        if busy:
            return
        if self._check_error:  # the last check failed: say why once, in place of the verdict
            self.check_verdict.setText(self._check_error)
            self._check_error = None
        elif character_id is None:
            self.check_verdict.setText("Choose a character to check its photos.")
        elif summary is None or not summary["total"]:
            self.check_verdict.setText("")
        else:
            identity = summary["identity"]["reason"]
            text = (f"{summary['usable']} of {summary['total']} photos look usable. {summary['advice']}"
                    + (f" {identity}" if identity else ""))
            self.check_verdict.setText(text)

    def check_photos(self) -> str | None:
        """Queue the chosen character's check job (the worker measures; the window only follows its progress)."""
        character_id = self.character.currentData()
        if character_id is None:
            return None
        try:
            with correlation("photos_check", character_id=character_id):
                job = self.checks.submit(character_id)
        except IsengardError as exc:
            self.check_verdict.setText(str(exc))
            return None
        self.check_job = job.id
        self.check_button.setEnabled(False)
        self.check_progress.setRange(0, 0)  # busy until the worker says how many photos
        self.check_progress.setVisible(True)
        self.check_cancel.setVisible(True)
        self.check_cancel.setEnabled(True)
        self.check_verdict.setText("Checking photos…")
        return job.id

    def cancel_check(self) -> None:
        """Ask the check's worker to stop (what it measured stays cached); the job's end event tidies up."""
        if self.check_job is None:
            return
        try:
            self.ctx.jobs.cancel(self.check_job)
        except IsengardError as exc:  # it ended meanwhile
            self.check_verdict.setText(str(exc))
            return
        self.check_cancel.setEnabled(False)
        self.check_verdict.setText("Stopping the check…")

    def _on_job_event(self, job_id: str, event: dict) -> None:
        if job_id != self.check_job:
            return
        kind = event.get("event")
        if kind == "progress" and event.get("total"):
            self.check_progress.setRange(0, int(event["total"]))
            self.check_progress.setValue(int(event.get("step", 0)))
            rate = event.get("it_per_s")
            self.check_progress.setFormat(f"%v / %m photos{f' · {rate:.1f}/s' if rate else ''}")
        elif kind == "state" and event.get("state") not in ("queued", "running"):
            self.check_job = None
            self.check_progress.setVisible(False)
            self.check_cancel.setVisible(False)
            self.check_button.setEnabled(True)
            if event.get("state") != "succeeded":
                self._check_error = event.get("error") or f"The check ended {event.get('state')}."
            self.reload()

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
        found = self.model.checks.get(image.id, {})
        pixmap = QPixmap(str(image.thumbnail_path))
        if not pixmap.isNull():
            pixmap = pixmap.scaled(280, 280, Qt.AspectRatioMode.KeepAspectRatio,
                                   Qt.TransformationMode.SmoothTransformation)
            self.preview.setPixmap(_with_face_boxes(pixmap, found.get("face_boxes") or [], image.row.width))
        row = image.row
        flags = [f"⚑ {reason}" for reason in found.get("reasons", [])]
        if found.get("identity_score") is not None and "identity_outlier" not in found.get("issues", []):
            flags.append(f"Likeness to the character's other photos: {found['identity_score']:.2f}"
                         + (" (fast-test: a tiny random embedder, not a real likeness)"
                            if self.ctx.mode == FAST_TEST else ""))
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


def _with_face_boxes(pixmap: QPixmap, boxes: list[list[int]], photo_width: int) -> QPixmap:
    """The preview with Check photos' face boxes drawn on it (boxes are in the upright photo's pixels)."""
    if not boxes or photo_width <= 0:
        return pixmap
    scale = pixmap.width() / photo_width
    out = QPixmap(pixmap)
    painter = QPainter(out)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    for number, (x, y, w, h) in enumerate(boxes):
        painter.setPen(QPen(QColor("#2ecc71" if number == 0 else "#f39c12"), 2))
        painter.drawRect(round(x * scale), round(y * scale), round(w * scale), round(h * scale))
    painter.end()
    return out
