"""One base model of the catalogue as a panel: what each engine needs, what is already here, Download / Cancel
with live progress, the Hugging Face token inline when the repository is gated.

The first-run page and Settings → Models both show these panels. Planning (which files are missing, what can be
linked from the Hugging Face cache or an existing ComfyUI folder, the free space) runs off the GUI thread; the
download itself is a job of the job manager (kind ``download``), so it shows in Jobs & logs, survives a restart of
the window and resumes from the bytes already on disk.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLineEdit,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from isengard_desktop.base.errors import IsengardError
from isengard_desktop.base.log import correlation
from isengard_desktop.context import AppContext
from isengard_desktop.core.units import human_bytes, transfer_text
from isengard_desktop.ui.bridge import JobBridge, run_in_background
from isengard_desktop.ui.widgets import button, label

# The ways a catalogue model is laid out on disk, as a person would name them.
TARGETS = (
    ("training", ("diffusers", "aitoolkit"), "Training and the built-in generator (diffusers layout, AI-Toolkit)"),
    ("comfyui", ("comfyui",), "ComfyUI generation (single files)"),
    ("captions", ("captioner",), "Automatic captions (Dataset tab, Caption all)"),
    ("identity", ("photo_check",), "Identity check (Dataset tab, Check photos: someone else?)"),
)
STATE_TEXT = {"verified": "ready (verified)", "present": "ready", "partial": "partly downloaded", "missing": "missing"}
ACTIVE = ("queued", "running")


class ModelDownloadPanel(QFrame):
    """Download one catalogue model for the engines the person ticks."""

    changed = Signal()  # a download ended (the page re-checks what is ready)

    def __init__(self, ctx: AppContext, bridge: JobBridge, model, vram_gb: float | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("card")
        self.ctx, self.bridge, self.model = ctx, bridge, model
        self.job_id: str | None = None
        self.plan = None
        layout = QVBoxLayout(self)
        head = QHBoxLayout()
        head.addWidget(label(f"<b>{model.title}</b>", wrap=False))
        head.addStretch(1)
        licence = label(f'<a href="{model.licence_url}" style="color:#d9b36c;">licence and model page</a>', wrap=False)
        licence.setOpenExternalLinks(True)
        head.addWidget(licence)
        layout.addLayout(head)
        if model.description:
            layout.addWidget(label(model.description, "muted"))

        self.targets: dict[str, QCheckBox] = {}
        self.state_labels: dict[str, object] = {}
        engines = set(model.engines())
        for key, names, text in TARGETS:
            if not engines.intersection(names):
                continue
            row = QHBoxLayout()
            box = QCheckBox(text)
            box.setChecked(True)
            box.toggled.connect(self.refresh)
            self.targets[key] = box
            row.addWidget(box, 1)
            state = label("checking…", "muted", wrap=False)
            self.state_labels[key] = state
            row.addWidget(state)
            layout.addLayout(row)
        self.variant = QComboBox()
        variants = model.variants("comfyui") if "comfyui" in engines else []
        for name in variants:
            self.variant.addItem(name, name)
        if variants:
            self.prefer_for_vram(vram_gb)
            self.variant.currentIndexChanged.connect(self.refresh)
            row = QHBoxLayout()
            row.addWidget(label("ComfyUI's T5 text encoder: fp8 for cards under 24 GB, fp16 above", "muted"), 1)
            row.addWidget(self.variant)
            layout.addLayout(row)

        self.token_row = QWidget()
        self.token_row.setObjectName("plain")
        token_box = QHBoxLayout(self.token_row)
        token_box.setContentsMargins(0, 0, 0, 0)
        token_box.addWidget(label("This model is gated: accept its licence on its page, then paste a Hugging Face "
                                  "token (read access).", "hint"), 1)
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("hf_…")
        self.token.setMinimumWidth(200)
        token_box.addWidget(self.token)
        self.save_token_button = button("Save token")
        self.save_token_button.clicked.connect(self.save_token)
        token_box.addWidget(self.save_token_button)
        layout.addWidget(self.token_row)

        self.plan_label = label("", "muted")
        layout.addWidget(self.plan_label)
        self.checked = label("", "hint")  # the result of Check files
        layout.addWidget(self.checked)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.hide()
        layout.addWidget(self.progress)
        self.message = label("", "error")
        self.message.hide()
        layout.addWidget(self.message)
        actions = QHBoxLayout()
        actions.addStretch(1)
        self.cancel_button = button("Cancel download")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.hide()
        actions.addWidget(self.cancel_button)
        self.verify_button = button("Check files")
        self.verify_button.setToolTip("Compare every file already here with the sha256 the hub publishes.")
        self.verify_button.clicked.connect(self.verify)
        actions.addWidget(self.verify_button)
        self.download_button = button("Download", primary=True)
        self.download_button.clicked.connect(self.download)
        actions.addWidget(self.download_button)
        layout.addLayout(actions)

        bridge.event.connect(self._on_event)
        self._reattach()
        self.refresh()

    def prefer_for_vram(self, vram_gb: float | None) -> None:
        """Under 24 GB of VRAM the fp8 T5 leaves room for the transformer; with more, fp16 is more faithful."""
        index = self.variant.findData("fp8" if vram_gb is not None and vram_gb < 24 else "fp16")
        if index >= 0:
            self.variant.setCurrentIndex(index)

    # what is here and what is missing ---------------------------------------------------------------------
    def engines(self) -> list[str]:
        names: list[str] = []
        for key, engine_names, _text in TARGETS:
            if key in self.targets and self.targets[key].isChecked():
                names.extend(n for n in engine_names if n in self.model.engines())
        return names

    def refresh(self) -> None:
        from isengard_desktop.core.models import inventory, planning
        from isengard_desktop.core.secrets import has_hf_token

        self.token_row.setVisible(bool(self.model.gated and not has_hf_token()))
        volume, extra = self.ctx.volume, self.ctx.extra_model_dirs()
        model_id, engines, variant = self.model.id, self.engines(), self.variant.currentData()

        def work(_progress, _cancelled):
            statuses = inventory.status(volume, extra, model_id, variant)
            # A quick total: a file found elsewhere is hashed only when the download is asked for.
            plan = (planning.plan_download(volume, extra, model_id, engines, variant, verify_reuse=False)
                    if engines else None)
            return statuses[0] if statuses else None, plan

        run_in_background(self, work, on_done=self._show_plan, on_error=self._show_error)

    def _show_plan(self, result) -> None:
        status, plan = result
        self.plan = plan
        if status is not None:
            for key, engine_names, _text in TARGETS:
                if key not in self.state_labels:
                    continue
                states = [status.engines[n] for n in engine_names if n in status.engines]
                worst = max(states, key=lambda s: list(STATE_TEXT).index(s.state)) if states else None
                text = STATE_TEXT.get(worst.state, worst.state) if worst else "–"
                if worst is not None and worst.state in ("missing", "partial"):
                    text += f" · {human_bytes(worst.missing_bytes)} to get"
                self.state_labels[key].setText(text)
        if self.job_id is not None:
            return
        if plan is None:
            self.plan_label.setText("Tick what you want to download.")
            self.download_button.setEnabled(False)
            return
        if not plan.spec["files"] and not plan.spec["links"]:
            self.plan_label.setText("Everything ticked is here.")
            self.download_button.setEnabled(False)
            return
        reused = f" · {len(plan.reused)} file(s) found on this machine are linked, not copied" if plan.reused else ""
        text = (f"To download: {human_bytes(plan.download_bytes)}{reused} · free on the volume: "
                f"{human_bytes(plan.free_bytes)}")
        if not plan.enough_space:
            text += " — not enough space: free some disk or choose a volume folder on a bigger disk (Settings)."
        self.plan_label.setText(text)
        self.plan_label.setObjectName("muted" if plan.enough_space else "error")
        self.plan_label.style().unpolish(self.plan_label)  # the style sheet colours by object name
        self.plan_label.style().polish(self.plan_label)
        self.download_button.setEnabled(plan.enough_space)

    def _show_error(self, exc) -> None:
        self._say(str(exc) if isinstance(exc, IsengardError) else f"The model's state could not be read ({exc}).")

    def _say(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))

    # token ---------------------------------------------------------------------------------------------------
    def save_token(self) -> None:
        from isengard_desktop.core.secrets import set_hf_token

        with correlation("hf_token_save"):
            try:
                set_hf_token(self.token.text())
            except IsengardError as exc:
                self._say(str(exc))
                return
        self.token.clear()
        self._say("")
        self.refresh()

    # downloading -------------------------------------------------------------------------------------------
    def download(self) -> None:
        """Plan again with the files found elsewhere checked (hashed once), then queue the download job."""
        from isengard_desktop.core.models import planning

        if self.plan is None:
            return
        self._say("")
        self.download_button.setEnabled(False)
        self.plan_label.setText("Checking the files already on this machine…")
        volume, extra, model_id, engines, variant = (self.ctx.volume, self.ctx.extra_model_dirs(), self.model.id,
                                                     self.engines(), self.variant.currentData())
        jobs = self.ctx.jobs

        def work(progress, cancelled):
            with correlation("model_download", model=model_id):
                plan = planning.plan_download(volume, extra, model_id, engines, variant, verify_reuse=True,
                                              on_progress=lambda done, total, _p: progress(
                                                  {"step": done, "total": total, "phase": "verify"}),
                                              should_stop=cancelled)
                if not plan.enough_space:
                    return plan
                return jobs.submit("download", "hub", plan.spec)

        def done(result) -> None:
            if isinstance(result, planning.DownloadPlan):
                self._show_plan((None, result))
            else:
                self._follow(result.id)

        def failed(exc) -> None:
            self.download_button.setEnabled(True)
            self._show_error(exc)

        run_in_background(self, work, self._show_transfer, done, failed)

    def verify(self) -> None:
        """Hash the files already here (minutes for 30 GB) off the GUI thread, with progress."""
        from isengard_desktop.core.models import inventory

        volume, extra, model_id = self.ctx.volume, self.ctx.extra_model_dirs(), self.model.id
        self.verify_button.setEnabled(False)
        self.progress.show()
        self.checked.setText("")
        self._say("")

        def work(progress, cancelled):
            return inventory.verify(volume, extra, model_id, on_progress=lambda done, total, _path: progress(
                {"step": done, "total": total, "phase": "verify"}), should_stop=cancelled)

        def done(statuses) -> None:
            self.verify_button.setEnabled(True)
            self.progress.hide()
            files = [f for s in statuses for e in s.engines.values() for f in e.files]
            problems = list(dict.fromkeys(f.problem for f in files if f.problem))
            checked = {f.where for f in files if f.state == "verified" and f.where is not None}
            self._say(" ".join(problems))
            if problems:
                self.checked.setText("")
            elif checked:
                self.checked.setText(f"{len(checked)} file(s) here match the sha256 the hub publishes.")
            else:
                self.checked.setText("No file of this model is here yet: nothing to check.")
            self.refresh()

        def failed(exc) -> None:
            self.verify_button.setEnabled(True)
            self.progress.hide()
            self._show_error(exc)

        run_in_background(self, work, self._show_transfer, done, failed)

    def _show_transfer(self, event: dict) -> None:
        if event.get("total"):
            self.progress.setValue(int(1000 * event["step"] / event["total"]))
            self.plan_label.setText(transfer_text(event))

    def cancel(self) -> None:
        if self.job_id is not None:
            try:
                self.ctx.jobs.cancel(self.job_id)
            except IsengardError as exc:
                self._say(str(exc))

    def _reattach(self) -> None:
        """A download of this model still queued or running (this window's, or a CLI's) is followed again."""
        for job in self.ctx.jobs.list(kind="download"):
            if job.state in ACTIVE and job.params.get("spec", {}).get("model") == self.model.id:
                self._follow(job.id)
                return

    def _follow(self, job_id: str) -> None:
        self.job_id = job_id
        self.download_button.hide()
        self.cancel_button.show()
        self.progress.show()
        self.progress.setValue(0)
        self.plan_label.setText("Starting the download…")

    def _on_event(self, job_id: str, event: dict) -> None:
        if job_id != self.job_id:
            return
        kind = event.get("event")
        if kind == "progress":
            self._show_transfer(event)
        elif kind == "error":
            self._say(event.get("message", "The download failed."))
        elif kind == "state" and event.get("state") not in ACTIVE:
            state = event.get("state")
            self.job_id = None
            self.cancel_button.hide()
            self.download_button.show()
            self.progress.setVisible(state != "succeeded")
            if state == "cancelled":
                self._say("Download paused: what was downloaded is kept, and Download continues from there.")
            elif state == "failed" and event.get("error"):
                self._say(event["error"])
            self.refresh()
            self.changed.emit()
