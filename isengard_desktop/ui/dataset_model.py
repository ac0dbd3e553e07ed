"""The Dataset grid's model: every image as a row, thumbnails loaded off the GUI thread into an LRU cache.

Built for 10,000 images: ``data()`` reads an in-memory list, and a thumbnail is read from the
volume's cache (or made again, if the cache lost it) by a thread pool only when the view asks for it.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QRect, QSize, Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QStyledItemDelegate, QStyleOptionViewItem

from isengard_desktop.core.dataset import DatasetImage
from isengard_desktop.core.photo_check.analyse import BADGES
from isengard_desktop.ui.thumbnails import ThumbnailCache

CELL = 150
CACHE_SIZE = 1500
ImageRole = Qt.ItemDataRole.UserRole + 1
IssuesRole = Qt.ItemDataRole.UserRole + 2  # the photo's issue codes from Check photos ([] when none)
BADGE_COLOURS = {"not_checked": "#5b6270", "near_duplicate": "#7a5cc2", "low_resolution": "#a0742a"}
BADGE_DEFAULT = "#c0392b"


def _thumbnail_file(image: DatasetImage) -> Path:
    """The volume's cached thumbnail, made again if the cache lost it."""
    path = image.thumbnail_path
    if not path.exists() and image.path.exists():
        # Imported here: it brings Pillow and pillow-heif, which the window's first frame does not need (E37).
        from isengard_desktop.base.image_probe import make_thumbnail

        make_thumbnail(image.path, path)
    return path


class DatasetModel(QAbstractListModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.images: list[DatasetImage] = []
        self.placeholders = 0  # cells shown, thumbnail-sized and empty, while the first query runs
        self._rows: dict[int, int] = {}
        # Check photos' findings per image id: {"issues": [...], "reasons": [...], "face_boxes": [...], ...}.
        self.checks: dict[int, dict] = {}
        self.thumbnails = ThumbnailCache(QSize(CELL - 20, CELL - 40), CACHE_SIZE, self)
        self.thumbnails.ready.connect(self._on_loaded)

    def set_images(self, images: list[DatasetImage], checks: dict[int, dict] | None = None) -> None:
        self.beginResetModel()
        self.images = images
        self.placeholders = 0
        self.checks = checks or {}
        self._rows = {image.id: row for row, image in enumerate(images)}
        self.endResetModel()

    def set_placeholders(self, count: int) -> None:
        """Show ``count`` empty cells until set_images: the photos a character has, known before they are read."""
        self.beginResetModel()
        self.images, self.checks, self._rows, self.placeholders = [], {}, {}, count
        self.endResetModel()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802, B008 (Qt's signature)
        return 0 if parent.isValid() else len(self.images) or self.placeholders

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        if index.isValid() and index.row() >= len(self.images):  # a placeholder: nothing to select yet
            return Qt.ItemFlag.ItemIsEnabled  # (drawn like a photo whose thumbnail is on the way, not greyed)
        return super().flags(index)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        if index.row() >= len(self.images):
            return self._placeholder_data(role)
        image = self.images[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            flags = (" ⚠" if image.too_small else "") + (" ⧉" if image.row.duplicate_count > 1 else "")
            return f"{image.character_name}{flags}"
        if role == Qt.ItemDataRole.DecorationRole:
            return self.thumbnails.get(image.id, lambda: _thumbnail_file(image))
        if role == Qt.ItemDataRole.ToolTipRole:
            reasons = self.checks.get(image.id, {}).get("reasons", [])
            return "\n".join([image.row.source_name, f"{image.row.width}×{image.row.height}", image.caption,
                              *(f"⚑ {r}" for r in reasons)])
        if role == IssuesRole:
            return self.checks.get(image.id, {}).get("issues", [])
        if role == Qt.ItemDataRole.SizeHintRole:
            return QSize(CELL, CELL)
        if role == ImageRole:
            return image
        return None

    def _placeholder_data(self, role: int):
        if role == Qt.ItemDataRole.DecorationRole:
            return self.thumbnails.placeholder
        if role == Qt.ItemDataRole.SizeHintRole:
            return QSize(CELL, CELL)
        if role == Qt.ItemDataRole.DisplayRole:
            return "…"
        return None

    def _on_loaded(self, image_id: int) -> None:
        row = self._rows.get(image_id)
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])

    def shutdown(self) -> None:
        self.thumbnails.shutdown()


class BadgeDelegate(QStyledItemDelegate):
    """Draws a photo's Check photos issues as small badges over the top of its thumbnail (the reasons are in
    its tooltip and the details panel)."""

    MAX_BADGES = 3

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        super().paint(painter, option, index)
        issues = [code for code in (index.data(IssuesRole) or []) if code != "not_checked"]
        if not issues:
            return
        painter.save()
        font = painter.font()
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.8))
        font.setBold(True)
        painter.setFont(font)
        metrics = painter.fontMetrics()
        x, y = option.rect.left() + 6, option.rect.top() + 6
        shown = issues[:self.MAX_BADGES]
        if len(issues) > self.MAX_BADGES:
            shown[-1] = f"+{len(issues) - self.MAX_BADGES + 1}"
        for code in shown:
            text = BADGES.get(code, code)
            width = metrics.horizontalAdvance(text) + 10
            if x + width > option.rect.right() - 4:
                x, y = option.rect.left() + 6, y + metrics.height() + 5
            box = QRect(x, y, width, metrics.height() + 2)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(BADGE_COLOURS.get(code, BADGE_DEFAULT)))
            painter.drawRoundedRect(box, 6, 6)
            painter.setPen(QColor("#ffffff"))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
            x += width + 4
        painter.restore()
