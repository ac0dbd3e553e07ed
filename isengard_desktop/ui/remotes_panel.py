"""Settings → Remotes: the remote GPU machines (SSH) a person added; add one, check it (GPU, VRAM, disk, OS,
Python, app version), install the app there, remove it. Every connection runs off the GUI thread."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from isengard_desktop.base.errors import IsengardError
from isengard_desktop.base.log import correlation
from isengard_desktop.context import AppContext
from isengard_desktop.core.remote import registry
from isengard_desktop.core.remote.ssh import DEFAULT_REMOTE_DIR, Remote
from isengard_desktop.ui.bridge import run_in_background
from isengard_desktop.ui.widgets import button, label


class RemotesPanel(QWidget):
    """The list of remotes, the form that adds one, and what the last check or install said."""

    def __init__(self, ctx: AppContext, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.busy = False
        layout = QVBoxLayout(self)
        layout.addWidget(label("Train and generate on a bigger machine you reach over SSH. The app uses your ssh "
                               "(its ~/.ssh/config, known hosts and agent); only the path of a key file is stored, "
                               "never a key or a password.", "muted"))
        listed = QGroupBox("Remote machines")
        box = QVBoxLayout(listed)
        self.list = QListWidget()
        self.list.setMinimumHeight(90)
        self.list.currentItemChanged.connect(lambda *_: self._update_buttons())
        box.addWidget(self.list)
        actions = QHBoxLayout()
        self.check_button = button("Check")
        self.check_button.setToolTip("Connect and report its GPU, VRAM, free disk, OS, Python and app version")
        self.check_button.clicked.connect(self.check_selected)
        self.bootstrap_button = button("Install the app there")
        self.bootstrap_button.setToolTip("Install this version of Isengard Desktop in the remote folder (a venv)")
        self.bootstrap_button.clicked.connect(self.bootstrap_selected)
        self.remove_button = button("Remove", danger=True)
        self.remove_button.clicked.connect(self.remove_selected)
        actions.addStretch(1)
        for widget in (self.check_button, self.bootstrap_button, self.remove_button):
            actions.addWidget(widget)
        box.addLayout(actions)
        self.report = label("", "muted")
        box.addWidget(self.report)
        layout.addWidget(listed)

        add = QGroupBox("Add a remote")
        form = QFormLayout(add)
        self.name = QLineEdit()
        self.name.setPlaceholderText("gpu-box")
        self.address = QLineEdit()
        self.address.setPlaceholderText("user@host or user@host:port (a Host of your ~/.ssh/config works too)")
        self.key = QLineEdit()
        self.key.setPlaceholderText("optional: a private key file; without it your agent and ssh config decide")
        choose = button("Choose…")
        choose.clicked.connect(self.choose_key)
        key_row = QHBoxLayout()
        key_row.addWidget(self.key, 1)
        key_row.addWidget(choose)
        self.folder = QLineEdit()
        self.folder.setPlaceholderText(DEFAULT_REMOTE_DIR)
        form.addRow("Name", self.name)
        form.addRow("SSH address", self.address)
        form.addRow("Key file", key_row)
        form.addRow("Folder there", self.folder)
        self.add_button = button("Add and check", primary=True)
        self.add_button.clicked.connect(self.add)
        self.add_error = label("", "error")
        form.addRow(self.add_error, self.add_button)
        layout.addWidget(add)
        layout.addStretch(1)
        self.refresh()

    # state ----------------------------------------------------------------------------------------------------
    def refresh(self, select: str | None = None) -> None:
        current = select or (self.selected().name if self.selected() else None)
        self.list.clear()
        for remote in registry.list_remotes(self.ctx.volume):
            item = QListWidgetItem(f"{remote.name}    {remote.address}    {remote.dir}")
            item.setData(256, remote)  # Qt.UserRole
            self.list.addItem(item)
            if remote.name == current:
                self.list.setCurrentItem(item)
        if self.list.currentItem() is None and self.list.count():
            self.list.setCurrentRow(0)
        if not self.list.count():
            self.report.setText("No remote machines yet: add one below.")
        self._update_buttons()

    def selected(self) -> Remote | None:
        item = self.list.currentItem()
        return item.data(256) if item is not None else None

    def _update_buttons(self) -> None:
        has = self.selected() is not None
        for widget in (self.check_button, self.bootstrap_button, self.remove_button):
            widget.setEnabled(has and not self.busy)
        self.add_button.setEnabled(not self.busy)

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        self._update_buttons()

    def _show(self, lines: list[str], style: str = "muted") -> None:
        self.report.setObjectName(style)  # the style sheet colours QLabel#muted / QLabel#error
        self.report.style().unpolish(self.report)
        self.report.style().polish(self.report)
        self.report.setText("\n".join(lines))

    # actions --------------------------------------------------------------------------------------------------
    def choose_key(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a private key file", str(Path.home() / ".ssh"))
        if path:
            self.key.setText(path)

    def add(self) -> None:
        try:
            remote = registry.make_remote(self.name.text(), self.address.text(), self.key.text(), self.folder.text())
            registry.add_remote(self.ctx.volume, remote, self.ctx.settings)
        except IsengardError as exc:
            self.add_error.setText(str(exc))
            return
        self.add_error.setText("")
        for field in (self.name, self.address, self.key, self.folder):
            field.clear()
        self.refresh(select=remote.name)
        self.check_selected()

    def remove_selected(self) -> None:
        remote = self.selected()
        if remote is None:
            return
        registry.remove_remote(self.ctx.volume, remote.name, self.ctx.settings)
        self.refresh()
        self._show([f"Removed {remote.name}; its folder {remote.dir} there is left as it is."])

    def check_selected(self) -> None:
        remote = self.selected()
        if remote is None or self.busy:
            return
        from isengard_desktop.core.remote.check import check_remote

        self._set_busy(True)
        self._show([f"Checking {remote.name} ({remote.address})…"])
        with correlation("remote_check", remote=remote.name):
            run_in_background(self, lambda _p, _c: check_remote(remote),
                              on_done=lambda report: self._done([f"{remote.name}:", *report.lines()]),
                              on_error=self._failed)

    def bootstrap_selected(self) -> None:
        remote = self.selected()
        if remote is None or self.busy:
            return
        from isengard_desktop.core.remote.bootstrap import ensure_bootstrapped

        self._set_busy(True)
        self._show([f"Installing Isengard Desktop on {remote.name}…"])
        with correlation("remote_bootstrap", remote=remote.name):
            run_in_background(self, lambda progress, _c: ensure_bootstrapped(remote, progress),
                              on_progress=lambda text: self._show([str(text)]),
                              on_done=lambda install: self._done(
                                  [f"{remote.name}: Isengard Desktop {install.version} in {install.folder}",
                                   *install.report.lines()[:1]]),
                              on_error=self._failed)

    def _done(self, lines: list[str]) -> None:
        self._set_busy(False)
        self._show(lines)

    def _failed(self, exc: BaseException) -> None:
        self._set_busy(False)
        text = str(exc) if isinstance(exc, IsengardError) else f"Unexpected error ({type(exc).__name__}); see the log."
        self._show([text], "error")


class RemoteComfyUIBox(QGroupBox):
    """Settings → Engines: use a ComfyUI that runs elsewhere, by URL (with an auth header kept in the keyring),
    instead of the embedded one; or go back to the embedded one."""

    def __init__(self, ctx: AppContext, parent=None) -> None:
        super().__init__("Remote ComfyUI (instead of the embedded one)", parent)
        self.ctx = ctx
        form = QFormLayout(self)
        self.url = QLineEdit(ctx.settings.comfyui_url)
        self.url.setPlaceholderText("http://gpu-box:8188 — empty: the embedded ComfyUI on this machine")
        self.header = QLineEdit()
        self.header.setEchoMode(QLineEdit.EchoMode.Password)
        self.header.setPlaceholderText("optional, e.g. Authorization: Bearer … (kept in the system keyring)")
        form.addRow("URL", self.url)
        form.addRow("Auth header", self.header)
        row = QHBoxLayout()
        self.state = label("", "muted")
        self.use_button = button("Use this ComfyUI")
        self.use_button.clicked.connect(self.use_remote)
        self.embedded_button = button("Use the embedded one")
        self.embedded_button.clicked.connect(self.use_embedded)
        row.addWidget(self.state, 1)
        row.addWidget(self.use_button)
        row.addWidget(self.embedded_button)
        form.addRow(row)
        form.addRow(label("LoRAs go to that ComfyUI over SSH when its host is one of your remotes (Settings → "
                          "Remotes); otherwise copy them into its models/loras folder yourself.", "muted"))
        self._show_current()

    def _show_current(self) -> None:
        from isengard_desktop.core.secrets import get_comfyui_auth

        url = self.ctx.settings.comfyui_url
        header = " with its auth header" if url and get_comfyui_auth() else ""
        self.state.setObjectName("muted")
        self.state.setText(f"Using the ComfyUI at {url}{header}." if url else "Using the embedded ComfyUI.")
        self.embedded_button.setEnabled(bool(url))

    def use_remote(self) -> None:
        from isengard_desktop.core.secrets import set_comfyui_auth

        try:
            url = registry.check_comfyui_url(self.url.text())
            if self.header.text().strip():
                set_comfyui_auth(self.header.text())
        except IsengardError as exc:
            self.state.setObjectName("error")
            self.state.setText(str(exc))
            self.state.style().polish(self.state)
            return
        self.header.clear()
        self._save(url)

    def use_embedded(self) -> None:
        from isengard_desktop.core.secrets import set_comfyui_auth

        try:
            set_comfyui_auth("")
        except IsengardError:
            pass  # no keyring: nothing was stored there either
        self.url.clear()
        self._save("")

    def _save(self, url: str) -> None:
        """Store the choice and restart the comfyui service, which reads it at its start."""
        from isengard_desktop.storage import settings as settings_store

        settings_store.update(self.ctx.volume.settings_path, self.ctx.settings, comfyui_url=url)
        with correlation("comfyui_url_changed", remote=bool(url)):
            self.ctx.restart_service("comfyui")
        self._show_current()
