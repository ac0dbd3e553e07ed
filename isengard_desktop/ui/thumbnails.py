"""Thumbnails read and scaled on a thread pool into an LRU cache: the Dataset grid and the Generate gallery.

``get`` answers at once with the cached pixmap or a placeholder; the file is read and scaled off
the GUI thread (a 1024 px PNG takes tens of milliseconds to decode), and ``ready(key)`` tells the
model to repaint that cell. The GUI thread only wraps the finished QImage in a QPixmap.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QSize, Qt, QThreadPool, Signal
from PySide6.QtGui import QColor, QImage, QPixmap


class _Signals(QObject):
    loaded = Signal(object, QImage)  # key, scaled image


class _Load(QRunnable):
    def __init__(self, key: Hashable, source: Callable[[], Path | None], size: QSize, signals: _Signals) -> None:
        super().__init__()
        self.key, self.source, self.size, self.signals = key, source, size, signals

    def run(self) -> None:
        try:
            path = self.source()
        except OSError:
            path = None
        qimage = QImage(str(path)) if path else QImage()
        if not qimage.isNull():
            qimage = qimage.scaled(self.size, Qt.AspectRatioMode.KeepAspectRatio,
                                   Qt.TransformationMode.SmoothTransformation)
        self.signals.loaded.emit(self.key, qimage)


class ThumbnailCache(QObject):
    ready = Signal(object)  # the key whose thumbnail has arrived

    def __init__(self, size: QSize, capacity: int, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.size = size
        self.capacity = capacity
        self._cache: OrderedDict[Hashable, QPixmap] = OrderedDict()
        self._loading: set[Hashable] = set()
        # The pool first: Qt deletes children in order, so the pool (which waits for its loads) goes before the
        # signals they emit on. Owned by the cache, the signals are never destroyed by a load dropping the last
        # Python reference on a pool thread (E38).
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)
        self._signals = _Signals(self)
        self._signals.loaded.connect(self._on_loaded)
        self.placeholder = QPixmap(size)
        self.placeholder.fill(QColor("#262a31"))

    def get(self, key: Hashable, source: Callable[[], Path | None]) -> QPixmap:
        """The thumbnail of ``key``; ``source`` (run on the pool) gives the file to read when it is not cached."""
        pixmap = self._cache.get(key)
        if pixmap is not None:
            self._cache.move_to_end(key)
            return pixmap
        if key not in self._loading:
            self._loading.add(key)
            self._pool.start(_Load(key, source, self.size, self._signals))
        return self.placeholder

    def cached(self, key: Hashable) -> bool:
        return key in self._cache

    def _on_loaded(self, key: Hashable, qimage: QImage) -> None:
        self._loading.discard(key)
        if qimage.isNull():
            return
        self._cache[key] = QPixmap.fromImage(qimage)
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        self.ready.emit(key)

    def shutdown(self) -> None:
        self._pool.clear()
        self._pool.waitForDone(5000)
