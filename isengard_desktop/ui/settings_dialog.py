"""Settings: the volume folder, the mode, upstream engines (state, install / repair), extra model folders
(e.g. an existing ComfyUI models/ folder), the Hugging Face token."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QProgressDialog,
    QVBoxLayout,
)

from isengard_desktop.context import AppContext
from isengard_desktop.core.log import correlation
from isengard_desktop.core.mode import describe_mode
from isengard_desktop.errors import IsengardError
from isengard_desktop.ui.bridge import run_in_background
from isengard_desktop.ui.widgets import button, label


class SettingsDialog(QDialog):
    def __init__(self, ctx: AppContext, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setWindowTitle("Settings")
        self.setMinimumWidth(640)
        layout = QVBoxLayout(self)

        volume = QGroupBox("Volume folder")
        box = QHBoxLayout(volume)
        box.addWidget(label(str(ctx.volume.root)), 1)
        change = button("Change…")
        change.clicked.connect(self.change_volume)
        box.addWidget(change)
        layout.addWidget(volume)
        layout.addWidget(label(describe_mode(ctx.mode), "muted"))

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

        models = QGroupBox("Extra model folders (e.g. the models folder of a ComfyUI you already have)")
        models_box = QVBoxLayout(models)
        self.model_dirs = QListWidget()
        self.model_dirs.setMaximumHeight(80)
        self.model_dirs.addItems(ctx.settings.extra_model_dirs)
        models_box.addWidget(self.model_dirs)
        model_actions = QHBoxLayout()
        add_dir = button("Add folder…")
        add_dir.clicked.connect(self.add_model_dir)
        remove_dir = button("Remove")
        remove_dir.clicked.connect(self.remove_model_dir)
        model_actions.addWidget(label("ComfyUI reads checkpoints, LoRAs, VAEs… from here too, without copying them.",
                                      "muted"), 1)
        model_actions.addWidget(add_dir)
        model_actions.addWidget(remove_dir)
        models_box.addLayout(model_actions)
        layout.addWidget(models)

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
        layout.addWidget(label("Models: downloading base models from the app is not built yet. For training and the "
                               "built-in generator put the FLUX.1-dev diffusers folder in "
                               f"{ctx.volume.models_dir / 'FLUX.1-dev'}; for ComfyUI put flux1-dev.safetensors in "
                               "models/diffusion_models, clip_l and t5xxl in models/text_encoders and ae.safetensors "
                               "in models/vae (or add your ComfyUI models folder above).", "muted"))
        close = button("Close")
        close.clicked.connect(self.accept)
        layout.addWidget(close, alignment=Qt.AlignmentFlag.AlignRight)
        self.refresh()

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
        """Store the folders and restart ComfyUI (in the background) so that it lists their models."""
        from isengard_desktop.storage import settings as settings_store

        self.ctx.settings.extra_model_dirs = folders
        settings_store.save(self.ctx.volume.settings_path, self.ctx.settings)
        self.model_dirs.clear()
        self.model_dirs.addItems(folders)
        with correlation("extra_model_dirs_changed", count=len(folders)):
            self.ctx.restart_service("comfyui")

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
        from isengard_desktop.core.engines_install import install

        dialog = QProgressDialog(f"Installing {name}…", "", 0, 6, self)
        dialog.setCancelButton(None)  # a half-built environment is thrown away anyway; nothing to cancel into
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.show()

        def on_progress(value) -> None:
            done, total, what = value
            dialog.setMaximum(total)
            dialog.setValue(done)
            dialog.setLabelText(what)

        def on_done(record) -> None:
            dialog.close()
            QMessageBox.information(self, "Installed", f"{name} is installed at {record['commit'][:12]}.")
            self.refresh()
            self.ctx.restart_service(name)  # ComfyUI starts (again) from the new install

        def on_error(exc) -> None:
            dialog.close()
            QMessageBox.warning(self, "Install failed", str(exc))

        root = self.ctx.volume.root
        with correlation("engine_install", engine=name):
            run_in_background(self, lambda report, _c: install(name, root, None, lambda *a: report(a)),
                              on_progress, on_done, on_error)
