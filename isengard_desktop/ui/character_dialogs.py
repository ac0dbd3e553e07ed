"""The New / Edit character dialog: validation errors from the core shown inline, trigger advice as a hint."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLineEdit, QPlainTextEdit, QVBoxLayout

from isengard_desktop.base.errors import IsengardError
from isengard_desktop.core.characters import Character, trigger_word_hints
from isengard_desktop.ui.widgets import label


class CharacterDialog(QDialog):
    """Asks for name, trigger word and description; ``submit(name, trigger, description)`` saves or raises."""

    def __init__(self, parent, submit: Callable[[str, str, str], Character], character: Character | None = None):
        super().__init__(parent)
        self.setWindowTitle("Edit character" if character else "New character")
        self.setMinimumWidth(460)
        self._submit = submit
        self.result_character: Character | None = None
        self.name = QLineEdit(character.name if character else "")
        self.name.setPlaceholderText("Ada Lovelace")
        self.trigger = QLineEdit(character.trigger_word if character else "")
        self.trigger.setPlaceholderText("ohwx_ada  (a rare single word that will mean this person)")
        self.description = QPlainTextEdit(character.description if character else "")
        self.description.setPlaceholderText("Optional notes: who this is, what the photos show.")
        self.description.setFixedHeight(80)
        self.hint = label("", "hint")
        self.error = label("", "error")
        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("Trigger word", self.trigger)
        form.addRow("", self.hint)
        form.addRow("Description", self.description)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.trigger.textChanged.connect(self._update_hint)
        self._update_hint(self.trigger.text())

    def _update_hint(self, text: str) -> None:
        hints = trigger_word_hints(text) if text.strip() else []
        self.hint.setText(hints[0] if hints else "")
        self.hint.setVisible(bool(hints))

    def save(self) -> None:
        try:
            self.result_character = self._submit(self.name.text(), self.trigger.text(), self.description.toPlainText())
        except IsengardError as exc:
            self.error.setText(str(exc))
            return
        self.accept()
