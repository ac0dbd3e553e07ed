"""The Generate tab's gallery: every generated image, newest first, thumbnails loaded off the GUI thread."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QSize, Qt
from PySide6.QtWidgets import QAbstractItemView, QListView

from isengard_desktop.storage.jobs_repo import GenerationRow
from isengard_desktop.ui.thumbnails import ThumbnailCache

CELL = 180
RowRole = Qt.ItemDataRole.UserRole + 1
PathRole = Qt.ItemDataRole.UserRole + 2


class GalleryModel(QAbstractListModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.items: list[tuple[GenerationRow, Path]] = []
        self.thumbnails = ThumbnailCache(QSize(CELL - 12, CELL - 12), 600, self)
        self.thumbnails.ready.connect(self._on_ready)

    def set_items(self, items: list[tuple[GenerationRow, Path]]) -> None:
        self.beginResetModel()
        self.items = list(items)
        self.endResetModel()

    def prepend(self, row: GenerationRow, path: Path) -> None:
        self.beginInsertRows(QModelIndex(), 0, 0)
        self.items.insert(0, (row, path))
        self.endInsertRows()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802, B008 (Qt's signature)
        return 0 if parent.isValid() else len(self.items)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row, path = self.items[index.row()]
        if role == Qt.ItemDataRole.DecorationRole:
            return self.thumbnails.get(row.id, lambda: path)
        if role == Qt.ItemDataRole.ToolTipRole:
            return row.parameters
        if role == Qt.ItemDataRole.SizeHintRole:
            return QSize(CELL, CELL)
        if role == RowRole:
            return row
        if role == PathRole:
            return path
        return None

    def _on_ready(self, generation_id: int) -> None:
        for number, (row, _path) in enumerate(self.items):
            if row.id == generation_id:
                index = self.index(number)
                self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])
                return

    def shutdown(self) -> None:
        self.thumbnails.shutdown()


class GalleryView(QListView):
    def __init__(self, model: GalleryModel) -> None:
        super().__init__()
        self.setModel(model)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setIconSize(QSize(CELL - 12, CELL - 12))
        self.setSpacing(6)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
