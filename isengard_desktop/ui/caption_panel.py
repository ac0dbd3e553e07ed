"""The Dataset tab's "Caption all": write the chosen character's captions with the vision-language model.

A row of the Dataset tab: the button, the choice to leave the person's fixed traits out (the default) and to replace
captions a person wrote, progress with photos per second, Cancel, and what happened. The captions are written by a
job (core/autocaption.py) in a worker process on the GPU lane; this widget only submits it and follows its events.
Where the captioning model is missing (production mode), the row says so and offers its download instead of a button
that would fail.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QProgressBar, QWidget

from isengard_desktop.base.errors import IsengardError
from isengard_desktop.base.log import correlation
from isengard_desktop.context import AppContext
from isengard_desktop.core import autocaption
from isengard_desktop.ui.bridge import run_in_background
from isengard_desktop.ui.widgets import button, label

ACTIVE = ("queued", "running")
CHOOSE = "Choose a character to caption its photos."


class CaptionPanel(QWidget):
    written = Signal()  # a caption job ended: its captions are stored (the grid reloads once, not per caption)

    def __init__(self, ctx: AppContext, bridge, character: QComboBox) -> None:
        super().__init__()
        self.setObjectName("plain")
        self.ctx, self.character = ctx, character
        self.job_id: str | None = None
        self.download_job: str | None = None
        self.readiness: autocaption.Readiness | None = None
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.caption_button = button("Caption all", primary=True)
        self.caption_button.setToolTip("Write a caption for each of the character's photos with a vision-language "
                                       "model; the trigger word is in each")
        self.omit_traits = QCheckBox("Leave out face, hair, age")
        self.omit_traits.setChecked(True)
        self.omit_traits.setToolTip("Recommended for a likeness: the trigger word learns what never changes (face, "
                                    "hair, eye and skin colour, age, build); captions describe the rest")
        self.overwrite = QCheckBox("Replace my captions")
        self.overwrite.setToolTip("Also replace the captions you wrote yourself (kept otherwise)")
        self.progress = QProgressBar()
        self.progress.setFixedWidth(200)
        self.progress.hide()
        self.cancel_button = button("Cancel")
        self.cancel_button.hide()
        self.download_button = button("Download model", primary=True)
        self.download_button.hide()
        self.status = label("", "muted")
        for widget in (self.caption_button, self.omit_traits, self.overwrite, self.progress, self.cancel_button,
                       self.download_button):
            row.addWidget(widget)
        row.addWidget(self.status, 1)

        self.caption_button.clicked.connect(self.caption_all)
        self.cancel_button.clicked.connect(self.cancel)
        self.download_button.clicked.connect(self.download)
        self.character.currentIndexChanged.connect(self._update)
        if bridge is not None:
            bridge.event.connect(self._on_event)
        self.check_ready()

    # readiness ---------------------------------------------------------------------------------------------
    def check_ready(self) -> None:
        """Whether the captioning model is here (a few stat calls, off the GUI thread)."""
        ctx = self.ctx
        run_in_background(self, lambda _p, _c: autocaption.readiness(ctx), on_done=self._ready,
                          on_error=lambda exc: self._ready(autocaption.Readiness(False, str(exc), None)))

    def _ready(self, readiness: autocaption.Readiness) -> None:
        self.readiness = readiness
        self._update()

    def _update(self, *_args) -> None:
        busy = self.job_id is not None or self.download_job is not None
        ready = self.readiness is not None and self.readiness.ready
        chosen = self.character.currentData() is not None
        self.caption_button.setVisible(ready or self.readiness is None)
        self.caption_button.setEnabled(ready and chosen and not busy)
        self.omit_traits.setEnabled(not busy)
        self.overwrite.setEnabled(not busy)
        self.download_button.setVisible(self.readiness is not None and not ready)
        self.download_button.setEnabled(not busy)
        if busy:
            return
        if self.readiness is not None and not ready:
            self.status.setText(f"Not ready: {self.readiness.reason}")
        elif not chosen:
            self.status.setText(CHOOSE)
        elif self.status.text() in (CHOOSE, ""):
            self.status.setText(self.readiness.reason if self.readiness else "")

    # captioning --------------------------------------------------------------------------------------------
    def caption_all(self) -> str | None:
        character_id = self.character.currentData()
        if character_id is None:
            return None
        try:
            with correlation("autocaption", character_id=character_id):
                job = autocaption.submit(self.ctx, character_id, overwrite=self.overwrite.isChecked(),
                                         keep_traits=not self.omit_traits.isChecked())
        except IsengardError as exc:
            self.status.setText(str(exc))
            return None
        kept = job.params.get("kept_person_captions", 0)
        self._follow(job.id, len(job.params["spec"]["images"]),
                     "Loading the captioning model…" + (f" ({kept} caption(s) you wrote are kept)" if kept else ""))
        return job.id

    def _follow(self, job_id: str, total: int, text: str) -> None:
        self.job_id = job_id
        self.progress.setRange(0, 0)  # busy until the model is loaded and the first photo is done
        self.progress.setFormat(f"%v / {total} photos")
        self.progress.show()
        self.cancel_button.show()
        self.cancel_button.setEnabled(True)
        self.status.setText(text)
        self._update()

    def cancel(self) -> None:
        job_id = self.job_id or self.download_job
        if job_id is None:
            return
        try:
            self.ctx.jobs.cancel(job_id)
        except IsengardError as exc:  # it ended meanwhile
            self.status.setText(str(exc))
            return
        self.cancel_button.setEnabled(False)
        self.status.setText("Stopping… the captions written so far are kept." if self.job_id else "Stopping…")

    def _on_event(self, job_id: str, event: dict) -> None:
        if job_id not in (self.job_id, self.download_job):
            return
        kind = event.get("event")
        if kind == "progress" and event.get("total"):
            total, step = int(event["total"]), int(event.get("step", 0))
            if job_id == self.download_job:
                self.progress.setRange(0, 1000)
                self.progress.setValue(int(1000 * step / total))
                self.progress.setFormat(f"{100 * step / total:.0f} %")
                return
            self.progress.setRange(0, total)
            self.progress.setValue(step)
            rate = event.get("it_per_s")
            self.progress.setFormat(f"%v / %m photos{f' · {rate:.2f}/s' if rate else ''}")
            if step:
                self.status.setText("Captioning…")
        elif kind == "state" and event.get("state") not in ACTIVE:
            self._finished(job_id, str(event.get("state")), event.get("error"))

    def _finished(self, job_id: str, state: str, error: str | None) -> None:
        self.progress.hide()
        self.cancel_button.hide()
        if job_id == self.download_job:
            self.download_job = None
            self.status.setText("The captioning model is ready." if state == "succeeded" else
                                error or f"The download ended {state}; Download model continues it.")
            self.check_ready()
            return
        self.job_id = None
        job = self.ctx.jobs.get(job_id)
        stored = job.result.get("captions_stored", 0)
        kept = job.params.get("kept_person_captions", 0) + job.result.get("captions_kept", 0)
        text = f"{stored} caption(s) written" + (f", {kept} you wrote kept" if kept else "")
        if state == "succeeded":
            self.status.setText(f"{text}.")
        elif state == "cancelled":
            self.status.setText(f"Cancelled: {text}.")
        else:
            self.status.setText(error or f"Captioning ended {state}; see Jobs & logs.")
        self._update()
        self.written.emit()

    # the model ---------------------------------------------------------------------------------------------
    def download(self) -> None:
        """Queue the captioning model's download (planned off the GUI thread) and follow it here."""
        ctx = self.ctx
        self.download_button.setEnabled(False)
        self.status.setText("Planning the download…")

        def started(job) -> None:
            self.download_job = job.id
            self.progress.setRange(0, 0)
            self.progress.show()
            self.cancel_button.show()
            self.cancel_button.setEnabled(True)
            self.status.setText("Downloading the captioning model (see Jobs & logs)…")
            self._update()

        def failed(exc) -> None:
            self.status.setText(str(exc) if isinstance(exc, IsengardError) else f"The download could not start: {exc}")
            self._update()

        run_in_background(self, lambda _p, _c: autocaption.download(ctx), on_done=started, on_error=failed)
