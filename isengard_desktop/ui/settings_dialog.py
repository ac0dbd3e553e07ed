"""Settings: the volume folder, the mode, the Hugging Face token, the first-run page; upstream engines (state,
install / repair) and extra model folders (e.g. an existing ComfyUI models/ folder); base models (download, state);
the doctor (every check of the machine with its fix)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from isengard_desktop.base.errors import IsengardError
from isengard_desktop.base.log import correlation
from isengard_desktop.base.mode import describe_mode
from isengard_desktop.context import AppContext
from isengard_desktop.ui.bridge import JobBridge, run_in_background
from isengard_desktop.ui.engine_install import install_engine
from isengard_desktop.ui.model_download import ModelDownloadPanel
from isengard_desktop.ui.widgets import button, label


class SettingsDialog(QDialog):
    """Four pages: General (volume, mode, token, first run), Engines (and extra model folders), Models, Doctor."""

    first_run_requested = Signal()

    def __init__(self, ctx: AppContext, bridge: JobBridge, parent=None) -> None:
        super().__init__(parent)
        self.ctx, self.bridge = ctx, bridge
        self.setWindowTitle("Settings")
        self.setMinimumSize(760, 560)
        layout = QVBoxLayout(self)
        self.pages = QTabWidget()
        layout.addWidget(self.pages, 1)
        self.pages.addTab(self._general_page(), "General")
        self.pages.addTab(self._engines_page(), "Engines")
        self.pages.addTab(self._models_page(), "Models")
        from isengard_desktop.ui.remotes_panel import RemotesPanel

        self.remotes = RemotesPanel(ctx)
        self.pages.addTab(self.remotes, "Remotes")
        self.doctor = None
        self.pages.addTab(QWidget(), "Doctor")  # built when first shown: its checks start processes
        self.pages.currentChanged.connect(self._page_shown)
        close = button("Close")
        close.clicked.connect(self.accept)
        layout.addWidget(close, alignment=Qt.AlignmentFlag.AlignRight)
        self.refresh()

    # pages -------------------------------------------------------------------------------------------------
    def _general_page(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        volume = QGroupBox("Volume folder")
        box = QHBoxLayout(volume)
        box.addWidget(label(str(self.ctx.volume.root)), 1)
        change = button("Change…")
        change.clicked.connect(self.change_volume)
        box.addWidget(change)
        layout.addWidget(volume)
        layout.addWidget(label(describe_mode(self.ctx.mode), "muted"))

        token = QGroupBox("Hugging Face token (for gated models such as FLUX.1-dev)")
        form = QHBoxLayout(token)
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_state = label("", "muted", wrap=False)
        save = button("Save in keyring")
        save.clicked.connect(self.save_token)
        form.addWidget(self.token, 1)
        form.addWidget(save)
        form.addWidget(self.token_state)
        layout.addWidget(token)

        first_run = QGroupBox("Getting started")
        row = QHBoxLayout(first_run)
        row.addWidget(label("The first-run page: your GPU and what it can run, the engines and the base model.",
                            "muted"), 1)
        self.first_run_button = button("Show the first-run page")
        self.first_run_button.clicked.connect(self._show_first_run)
        row.addWidget(self.first_run_button)
        layout.addWidget(first_run)
        layout.addStretch(1)
        return page

    def _engines_page(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        engines = QGroupBox("Engines")
        self.engine_rows = QFormLayout(engines)
        self.engine_labels: dict[str, object] = {}
        from isengard_desktop.core.engines_status import pins

        for name, pin in pins()["engines"].items():
            row = QHBoxLayout()
            text = label(f"pin {pin['commit']} · checking…", "muted")
            self.engine_labels[name] = text
            row.addWidget(text, 1)
            action = button("Install / repair")
            action.clicked.connect(lambda _=False, n=name: self.install(n))
            row.addWidget(action)
            self.engine_rows.addRow(name, row)
        layout.addWidget(engines)
        from isengard_desktop.ui.remotes_panel import RemoteComfyUIBox

        self.remote_comfyui = RemoteComfyUIBox(self.ctx)
        layout.addWidget(self.remote_comfyui)

        models = QGroupBox("Extra model folders (e.g. the models folder of a ComfyUI you already have)")
        models_box = QVBoxLayout(models)
        self.model_dirs = QListWidget()
        self.model_dirs.setMaximumHeight(80)
        self.model_dirs.addItems(self.ctx.settings.extra_model_dirs)
        models_box.addWidget(self.model_dirs)
        model_actions = QHBoxLayout()
        add_dir = button("Add folder…")
        add_dir.clicked.connect(self.add_model_dir)
        remove_dir = button("Remove")
        remove_dir.clicked.connect(self.remove_model_dir)
        model_actions.addWidget(label("ComfyUI reads checkpoints, LoRAs, VAEs… from here too, and the model manager "
                                      "links base-model files found here instead of downloading them.", "muted"), 1)
        model_actions.addWidget(add_dir)
        model_actions.addWidget(remove_dir)
        models_box.addLayout(model_actions)
        layout.addWidget(models)
        layout.addStretch(1)
        return page

    def _models_page(self) -> QWidget:
        from isengard_desktop.base import catalogue

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addWidget(label("Base models from the catalogue, with the files each engine reads. Downloads run as "
                               "jobs (see Jobs & logs), resume where they stopped and are checked against the "
                               "hub's sha256.", "muted"))
        self.model_panels = []
        try:
            models = catalogue.load()
        except IsengardError as exc:
            layout.addWidget(label(str(exc), "error"))
            models = []
        for model in models:
            panel = ModelDownloadPanel(self.ctx, self.bridge, model)
            self.model_panels.append(panel)
            layout.addWidget(panel)
        layout.addStretch(1)
        scroll.setWidget(page)
        return scroll

    def _page_shown(self, index: int) -> None:
        if self.pages.tabText(index) != "Doctor" or self.doctor is not None:
            return
        from isengard_desktop.ui.doctor_panel import DoctorPanel

        self.doctor = DoctorPanel(self.ctx)
        self.doctor.action_requested.connect(self._doctor_action)
        self.pages.removeTab(index)
        self.pages.insertTab(index, self.doctor, "Doctor")
        self.pages.setCurrentIndex(index)

    def _doctor_action(self, action: str) -> None:
        """Buttons of the doctor's checks that need the rest of the app."""
        kind, _, rest = action.partition(":")
        if kind == "install_engine":
            self.install(rest)
        elif kind in ("download_model", "verify_model"):
            self.pages.setCurrentIndex(2)
        elif kind in ("set_token", "open_settings"):
            self.pages.setCurrentIndex(0)
            self.token.setFocus()
        elif kind == "first_run":
            self._show_first_run()

    def _show_first_run(self) -> None:
        self.first_run_requested.emit()
        self.accept()

    def refresh(self) -> None:
        from isengard_desktop.core.engines_status import pins, status
        from isengard_desktop.core.secrets import has_hf_token

        root = self.ctx.volume.root
        # Checking an environment starts its python (seconds): off the GUI thread.
        run_in_background(self, lambda _p, _c: [status(name, root) for name in pins()["engines"]],
                          on_done=self._show_status)
        self.token_state.setText("stored" if has_hf_token() else "not set")

    def _show_status(self, report) -> None:
        for item in report:
            self.engine_labels[item.name].setText(f"pin {item.pinned_commit} · {item.detail}")

    def change_volume(self) -> None:
        from isengard_desktop.storage.volume import remember_volume_root

        folder = QFileDialog.getExistingDirectory(self, "Choose the volume folder", str(self.ctx.volume.root))
        if folder:
            remember_volume_root(Path(folder))
            QMessageBox.information(self, "Volume folder", f"Isengard Desktop will use {folder} from its next start.")

    def add_model_dir(self, folder: str | None = None) -> None:
        folder = folder or QFileDialog.getExistingDirectory(self, "Choose a models folder", str(Path.home()))
        if not folder or folder in self.ctx.settings.extra_model_dirs:
            return
        if not Path(folder).is_dir():
            QMessageBox.warning(self, "Not a folder", f"{folder} is not a folder.")
            return
        self._save_model_dirs([*self.ctx.settings.extra_model_dirs, folder])

    def remove_model_dir(self) -> None:
        item = self.model_dirs.currentItem()
        if item is not None:
            self._save_model_dirs([d for d in self.ctx.settings.extra_model_dirs if d != item.text()])

    def _save_model_dirs(self, folders: list[str]) -> None:
        """Store the folders and restart the engines' servers (in the background) so that they list their models."""
        from isengard_desktop.storage import settings as settings_store

        settings_store.update(self.ctx.volume.settings_path, self.ctx.settings, extra_model_dirs=folders)
        self.model_dirs.clear()
        self.model_dirs.addItems(folders)
        with correlation("extra_model_dirs_changed", count=len(folders)):
            for engine in list(self.ctx.services):  # every engine server the app runs (ComfyUI) lists them
                self.ctx.restart_service(engine)

    def save_token(self) -> None:
        from isengard_desktop.core.secrets import set_hf_token

        with correlation("hf_token_save"):
            try:
                set_hf_token(self.token.text())
            except IsengardError as exc:
                QMessageBox.warning(self, "Token not saved", str(exc))
                return
        self.token.clear()
        self.refresh()

    def install(self, name: str) -> None:
        install_engine(self, self.ctx, name, on_finished=lambda _ok: self.refresh())
