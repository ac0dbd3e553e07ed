"""Small shared widgets: labels, buttons and a dismissable banner."""

from __future__ import annotations

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton


def label(text: str, name: str = "", wrap: bool = True) -> QLabel:
    widget = QLabel(text)
    if name:
        widget.setObjectName(name)
    widget.setWordWrap(wrap)
    return widget


def button(text: str, primary: bool = False, danger: bool = False) -> QPushButton:
    widget = QPushButton(text)
    if primary:
        widget.setProperty("primary", True)
    if danger:
        widget.setProperty("danger", True)
    return widget


class Banner(QFrame):
    """A message across the top of a tab, with one action and a close button."""

    def __init__(self, text: str, action_text: str = "", on_action=None) -> None:
        super().__init__()
        self.setObjectName("banner")
        row = QHBoxLayout(self)
        self.text = label(text)
        row.addWidget(self.text, 1)
        if action_text and on_action:
            act = button(action_text, primary=True)
            act.clicked.connect(on_action)
            row.addWidget(act)
        close = button("Dismiss")
        close.clicked.connect(self.hide)
        row.addWidget(close)
