"""The Dataset grid's model: every image as a row, thumbnails loaded off the GUI thread into an LRU cache.

Built for 10,000 images: ``data()`` reads an in-memory list, and a thumbnail is read from the
volume's cache (or made again, if the cache lost it) by a thread pool only when the view asks for it.
"""

from __future__ import annotations

from collections import OrderedDict

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QRunnable, QSize, Qt, QThreadPool, Signal
from PySide6.QtGui import QColor, QImage, QPixmap

from isengard_desktop.core.dataset import DatasetImage
from isengard_desktop.core.image_probe import make_thumbnail

CELL = 150
CACHE_SIZE = 1500
ImageRole = Qt.ItemDataRole.UserRole + 1


class _Signals(QObject):
    loaded = Signal(int, QImage)  # image id, thumbnail


class _LoadThumbnail(QRunnable):
    def __init__(self, image: DatasetImage, signals: _Signals) -> None:
        super().__init__()
        self.image = image
        self.signals = signals

    def run(self) -> None:
        path = self.image.thumbnail_path
        if not path.exists() and self.image.path.exists():
            try:
                make_thumbnail(self.image.path, path)
            except OSError:
                pass
        qimage = QImage(str(path))
        if not qimage.isNull():
            # Scaled here, off the GUI thread: the GUI thread only wraps the result in a QPixmap.
            qimage = qimage.scaled(CELL - 20, CELL - 40, Qt.AspectRatioMode.KeepAspectRatio,
                                   Qt.TransformationMode.SmoothTransformation)
        self.signals.loaded.emit(self.image.id, qimage)


class DatasetModel(QAbstractListModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.images: list[DatasetImage] = []
        self._rows: dict[int, int] = {}
        self._cache: OrderedDict[int, QPixmap] = OrderedDict()
        self._loading: set[int] = set()
        self._signals = _Signals()
        self._signals.loaded.connect(self._on_loaded)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)
        self._placeholder = QPixmap(CELL - 20, CELL - 40)
        self._placeholder.fill(QColor("#262a31"))

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
            return self._thumbnail(image)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{image.row.source_name}\n{image.row.width}×{image.row.height}\n{image.caption}"
        if role == Qt.ItemDataRole.SizeHintRole:
            return QSize(CELL, CELL)
        if role == ImageRole:
            return image
        return None

    def _thumbnail(self, image: DatasetImage) -> QPixmap:
        pixmap = self._cache.get(image.id)
        if pixmap is not None:
            self._cache.move_to_end(image.id)
            return pixmap
        if image.id not in self._loading:
            self._loading.add(image.id)
            self._pool.start(_LoadThumbnail(image, self._signals))
        return self._placeholder

    def _on_loaded(self, image_id: int, qimage: QImage) -> None:
        self._loading.discard(image_id)
        if qimage.isNull():
            return
        pixmap = QPixmap.fromImage(qimage)
        self._cache[image_id] = pixmap
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        row = self._rows.get(image_id)
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])

    def shutdown(self) -> None:
        self._pool.clear()
        self._pool.waitForDone(5000)
