"""One character as a card: avatar, name, trigger word, photo count, LoRA state; photos can be dropped on it."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QVBoxLayout

from isengard_desktop.core.characters import Character
from isengard_desktop.ui.widgets import button, label

AVATAR = 168


def dropped_paths(mime) -> list[Path]:
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]


class CharacterCard(QFrame):
    import_requested = Signal(int)  # character id: open the file dialog
    paths_dropped = Signal(int, list)  # character id, [Path]
    edit_requested = Signal(int)
    delete_requested = Signal(int)

    def __init__(self, character: Character) -> None:
        super().__init__()
        self.character = character
        self.setObjectName("card")
        self.setAcceptDrops(True)
        self.setFixedWidth(AVATAR + 56)
        layout = QVBoxLayout(self)
        self.avatar = QLabel()
        self.avatar.setFixedSize(AVATAR, AVATAR)
        self.avatar.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.avatar.setStyleSheet("background:#1a1d22; border-radius:8px; color:#6b7280;")
        thumb = character.avatar_thumbnail
        pixmap = QPixmap(str(thumb)) if thumb and thumb.exists() else QPixmap()
        if pixmap.isNull():
            self.avatar.setText("Drop photos\nhere")
        else:
            self.avatar.setPixmap(pixmap.scaled(AVATAR, AVATAR, Qt.AspectRatioMode.KeepAspectRatioByExpanding,
                                                Qt.TransformationMode.SmoothTransformation).copy(0, 0, AVATAR, AVATAR))
        layout.addWidget(self.avatar, alignment=Qt.AlignmentFlag.AlignHCenter)
        name = label(character.name)
        name.setStyleSheet("font-size:15px; font-weight:600; background:transparent;")
        layout.addWidget(name)
        details = label(f"trigger: {character.trigger_word}\n{character.image_count} photos · {character.lora_state}",
                        "muted")
        details.setStyleSheet("background:transparent;")
        layout.addWidget(details)
        row = QHBoxLayout()
        for text, signal in (("+ Photos", self.import_requested), ("Edit", self.edit_requested),
                             ("Delete", self.delete_requested)):
            widget = button(text, danger=text == "Delete")
            widget.clicked.connect(lambda _=False, s=signal: s.emit(self.character.id))
            row.addWidget(widget)
        layout.addLayout(row)

    def _set_drop_target(self, on: bool) -> None:
        self.setProperty("dropTarget", on)
        self.style().unpolish(self)
        self.style().polish(self)

    def dragEnterEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        if event.mimeData().hasUrls():
            self._set_drop_target(True)
            event.acceptProposedAction()

    def dragLeaveEvent(self, event) -> None:  # noqa: N802
        self._set_drop_target(False)

    def dropEvent(self, event) -> None:  # noqa: N802
        self._set_drop_target(False)
        paths = dropped_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.paths_dropped.emit(self.character.id, paths)
