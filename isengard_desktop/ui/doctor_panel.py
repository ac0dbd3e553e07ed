"""The doctor page of Settings: every check of the machine with its status, what was found, the fix, and a button
where a button can fix it.

The checks run off the GUI thread (an environment's python importing torch takes seconds). Buttons the panel can
handle itself (stopping an exposed ComfyUI, copying a command) it handles; the others are emitted as
``action_requested(key)`` for the window to wire (install an engine, download a model, set the token).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QScrollArea, QVBoxLayout, QWidget

from isengard_desktop.ui.bridge import run_in_background
from isengard_desktop.ui.widgets import button, label

COLOURS = {"ok": "#5cb85c", "warn": "#e0a040", "fail": "#e05555"}
MARKS = {"ok": "✔", "warn": "▲", "fail": "✖"}


def action_text(action: str) -> str:
    kind, _, rest = action.partition(":")
    return {
        "install_engine": f"Install {rest}",
        "download_model": "Download",
        "verify_model": "Verify",
        "set_token": "Set token",
        "open_settings": "Choose folder",
        "stop_engine": f"Stop {rest}",
        "install_torch": "Copy the command",
        "first_run": "Open first-run page",
    }.get(kind, kind.replace("_", " ").capitalize())


class DoctorPanel(QWidget):
    action_requested = Signal(str)
    checks_done = Signal(object)  # the list of Check, once shown

    def __init__(self, ctx, online: bool = True, gpus: list | None = None, run_now: bool = True) -> None:
        super().__init__()
        self.ctx, self.online, self.gpus = ctx, online, gpus
        self.checks: list = []
        self.rows: list[dict] = []
        self._running = False
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.summary = label("The checks have not run yet.", "muted")
        self.again = button("Run checks again", primary=True)
        self.again.clicked.connect(self.run)
        top.addWidget(self.summary, 1)
        top.addWidget(self.again)
        layout.addLayout(top)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.body = QWidget()
        self.grid = QGridLayout(self.body)
        self.grid.setColumnStretch(2, 1)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignTop)
        scroll.setWidget(self.body)
        layout.addWidget(scroll, 1)
        if run_now:
            self.run()

    def run(self) -> None:
        if self._running:
            return
        from isengard_desktop.core.doctor import run_checks

        self._running = True
        self.again.setEnabled(False)
        self.summary.setText("Checking the machine, the engines and the models…")
        ctx, online, gpus = self.ctx, self.online, self.gpus
        run_in_background(self, lambda _progress, _cancelled: run_checks(ctx, online, gpus=gpus),
                          on_done=self._show, on_error=self._failed)

    def _failed(self, exc: Exception) -> None:
        self._running = False
        self.again.setEnabled(True)
        self.summary.setText(f"The checks could not run: {exc}")

    def _clear(self) -> None:
        while self.grid.count():
            item = self.grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.rows = []

    def _show(self, checks: list) -> None:
        from isengard_desktop.core.doctor import summary

        self._running = False
        self.again.setEnabled(True)
        self.checks = checks
        self._clear()
        for row, check in enumerate(checks):
            mark = label(MARKS.get(check.status, "?"), wrap=False)
            mark.setStyleSheet(f"color: {COLOURS.get(check.status, '#8b93a1')}; font-weight: bold;")
            mark.setToolTip(check.status)
            name = label(check.name, wrap=False)
            name.setStyleSheet("font-weight: bold;")
            text = check.detail if check.status == "ok" else f"{check.detail}\nFix: {check.fix}"
            detail = label(text)
            detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.grid.addWidget(mark, row, 0, Qt.AlignmentFlag.AlignTop)
            self.grid.addWidget(name, row, 1, Qt.AlignmentFlag.AlignTop)
            self.grid.addWidget(detail, row, 2)
            widgets = {"check": check, "mark": mark, "name": name, "detail": detail, "button": None}
            if check.action and check.status != "ok":
                act = button(action_text(check.action))
                act.clicked.connect(lambda _=False, c=check: self._act(c))
                self.grid.addWidget(act, row, 3, Qt.AlignmentFlag.AlignTop)
                widgets["button"] = act
            self.rows.append(widgets)
        self.summary.setText(summary(checks)["text"])
        self.checks_done.emit(checks)

    def _act(self, check) -> None:
        kind, _, rest = check.action.partition(":")
        if kind == "install_torch":
            # The fix sentence quotes the command between backticks: put the first one on the clipboard.
            parts = check.fix.split("`")
            QGuiApplication.clipboard().setText(parts[1] if len(parts) > 2 else check.fix)
            self.summary.setText("The command is on the clipboard: paste it in a terminal, then run the checks again.")
        elif kind == "stop_engine" and rest in self.ctx.services and self.ctx.services[rest] is not None:
            service = self.ctx.services[rest]
            run_in_background(self, lambda _p, _c: service.stop(), on_done=lambda _r: self.run())
        else:
            self.action_requested.emit(check.action)
