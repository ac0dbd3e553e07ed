"""The Dataset grid's model: every image as a row, thumbnails loaded off the GUI thread into an LRU cache.

Built for 10,000 images: ``data()`` reads an in-memory list, and a thumbnail is read from the
volume's cache (or made again, if the cache lost it) by a thread pool only when the view asks for it.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QSize, Qt

from isengard_desktop.core.dataset import DatasetImage
from isengard_desktop.core.image_probe import make_thumbnail
from isengard_desktop.ui.thumbnails import ThumbnailCache

CELL = 150
CACHE_SIZE = 1500
ImageRole = Qt.ItemDataRole.UserRole + 1


def _thumbnail_file(image: DatasetImage) -> Path:
    """The volume's cached thumbnail, made again if the cache lost it."""
    path = image.thumbnail_path
    if not path.exists() and image.path.exists():
        make_thumbnail(image.path, path)
    return path


class DatasetModel(QAbstractListModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.images: list[DatasetImage] = []
        self._rows: dict[int, int] = {}
        self.thumbnails = ThumbnailCache(QSize(CELL - 20, CELL - 40), CACHE_SIZE, self)
        self.thumbnails.ready.connect(self._on_loaded)

    def set_images(self, images: list[DatasetImage]) -> None:
        self.beginResetModel()
        self.images = images
        self._rows = {image.id: row for row, image in enumerate(images)}
        self.endResetModel()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802, B008 (Qt's signature)
        return 0 if parent.isValid() else len(self.images)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        image = self.images[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            flags = (" ⚠" if image.too_small else "") + (" ⧉" if image.row.duplicate_count > 1 else "")
            return f"{image.character_name}{flags}"
        if role == Qt.ItemDataRole.DecorationRole:
            return self.thumbnails.get(image.id, lambda: _thumbnail_file(image))
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{image.row.source_name}\n{image.row.width}×{image.row.height}\n{image.caption}"
        if role == Qt.ItemDataRole.SizeHintRole:
            return QSize(CELL, CELL)
        if role == ImageRole:
            return image
        return None

    def _on_loaded(self, image_id: int) -> None:
        row = self._rows.get(image_id)
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])

    def shutdown(self) -> None:
        self.thumbnails.shutdown()
