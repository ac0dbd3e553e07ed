"""The Training tab: set up a run, start it, watch it live (progress, ETA, loss chart, samples, machine
load), cancel and resume it, and look back at past runs and their LoRAs."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QListView,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from isengard_desktop.base.errors import IsengardError
from isengard_desktop.base.log import correlation
from isengard_desktop.base.mode import FAST_TEST
from isengard_desktop.context import AppContext
from isengard_desktop.core.units import human_duration
from isengard_desktop.ui.bridge import JobBridge, run_in_background
from isengard_desktop.ui.loss_chart import LossChart
from isengard_desktop.ui.training_form import TrainingForm, chosen_remote
from isengard_desktop.ui.widgets import Banner, button, label


def machine_text(event: dict) -> str:
    if "gpu_util" in event:
        vram = f"{event['vram_used_mb'] / 1024:.1f}/{event['vram_total_mb'] / 1024:.1f}"
        return f"GPU {event['gpu_util']}% · VRAM {vram} GB · {event['temp_c']} °C"
    return f"No GPU · CPU {event.get('cpu_percent', 0):.0f}% · RAM {event.get('ram_used_mb', 0) / 1024:.1f}/" \
           f"{event.get('ram_total_mb', 0) / 1024:.1f} GB"


PHOTO_VERDICT_TTL_S = 3.0  # the dataset verdict is re-read when the pre-flight is redrawn after this long


class TrainingTab(QWidget):
    lora_finished = Signal()

    def __init__(self, ctx: AppContext, bridge: JobBridge, later: bool = False) -> None:
        """``later``: built for the window's first frame, the tab reads the engines, base models (TrainingForm),
        past runs and the verdict when load_later() is called, after that frame; until then it says it is
        checking, and Start stays disabled."""
        super().__init__()
        self.ctx = ctx
        self.bridge = bridge
        self.later = later
        self.job_id: str | None = None
        self._photo_verdict: dict[int, tuple[float, list[str]]] = {}  # character -> (when, pre-flight lines)
        self._photo_asking: set[int] = set()
        outer = QVBoxLayout(self)
        header = QHBoxLayout()
        header.addWidget(label("Training", "title", wrap=False))
        if ctx.mode == FAST_TEST:
            header.addWidget(label("  fast-test: tiny model on the CPU, samples are noise", "hint", wrap=False))
        header.addStretch(1)
        outer.addLayout(header)
        self.banner_area = QVBoxLayout()
        outer.addLayout(self.banner_area)

        left_content = QWidget()
        left_box = QVBoxLayout(left_content)
        left = QScrollArea()  # the Advanced panel can be taller than a laptop screen
        left.setWidgetResizable(True)
        left.setWidget(left_content)
        left.setMinimumWidth(440)
        self.form = TrainingForm(ctx, later)
        self.start_button = button("Start training", primary=True)
        left_box.addWidget(self.form)
        left_box.addWidget(self.start_button)
        left_box.addWidget(label("Past runs", "muted"))
        self.runs = QListWidget()
        self._run_items: dict[str, QListWidgetItem] = {}  # job id -> its row, so progress events can update it
        left_box.addWidget(self.runs, 1)

        right = QWidget()
        live = QVBoxLayout(right)
        self.run_title = label("No run yet. Pick a character and press Start.", "muted")
        self.progress = QProgressBar()
        self.stats = label("", wrap=False)
        self.machine = label("", "muted", wrap=False)
        row = QHBoxLayout()
        self.cancel_button = button("Cancel")
        self.cancel_button.setToolTip("Saves a checkpoint first, so you can resume later.")
        self.resume_button = button("Resume", primary=True)
        row.addWidget(self.stats, 1)
        row.addWidget(self.cancel_button)
        row.addWidget(self.resume_button)
        self.chart = LossChart()
        self.samples = QListWidget()
        self.samples.setViewMode(QListView.ViewMode.IconMode)
        self.samples.setIconSize(QSize(128, 128))
        self.samples.setResizeMode(QListView.ResizeMode.Adjust)
        self.samples.setFixedHeight(190)
        self.result = label("", "muted")
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        for widget in (self.run_title, self.progress):
            live.addWidget(widget)
        live.addLayout(row)
        live.addWidget(self.machine)
        live.addWidget(self.chart, 1)
        live.addWidget(label("Samples by step", "muted"))
        live.addWidget(self.samples)
        live.addWidget(self.result)

        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([420, 800])
        outer.addWidget(splitter, 1)

        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button.clicked.connect(lambda: self.resume(self.job_id))
        self.runs.currentItemChanged.connect(self._run_selected)
        self.form.changed.connect(self.update_verdict)
        self.form.character.currentIndexChanged.connect(self._reload_runs)  # past runs are the chosen character's
        bridge.event.connect(self._on_event)
        self.refresh()

    # set-up ------------------------------------------------------------------------------------
    def refresh(self) -> None:
        self.form.refresh()
        if self.later:
            self.runs.clear()
            self.runs.addItem(QListWidgetItem("Loading past runs…"))  # no job id: selecting it shows nothing
            self.start_button.setEnabled(False)
            self.cancel_button.setEnabled(False)
            self.resume_button.setEnabled(False)
            return
        self._reload_runs()
        self._update_buttons()

    def load_later(self) -> None:
        """What a tab built for the first frame left for after it: past runs now (the job manager exists by now),
        the engines and base models from a thread, then the verdict."""
        self.later = False
        self._reload_runs()
        self._update_buttons()
        self.form.load_later(on_error=lambda exc: self.form.verdict.setText(f"✖ {exc}"))

    def _character(self):
        character_id = self.form.character.currentData()
        return self.ctx.characters.get(character_id) if character_id is not None else None

    def update_verdict(self) -> tuple | None:
        """The pre-flight verdict, drawn again; returns (spec, check) when the run could be built."""
        built = self._verdict()
        self._preload_chart()
        return built

    def _preload_chart(self) -> None:
        """The chart library loads once the tab is on screen and has read what it shows, well before a person can
        press Start: not in the window's first seconds otherwise, and not beside the tab's own threads (the
        photo verdict's imports numpy too): together they stalled the window 30-70 ms (E6)."""
        if self.isVisible() and not (self.later or self.form.pending or self._photo_asking):
            from isengard_desktop.ui.loss_chart import preload

            preload(self)

    def _verdict(self) -> tuple | None:
        if self.later or self.form.pending:
            self.form.verdict.setText("Checking the engines and base models…")
            self.start_button.setEnabled(False)
            return None
        character = self._character()
        if character is None:
            self.form.verdict.setText("Create a character and add photos first (Characters tab).")
            self.start_button.setEnabled(False)
            return None
        remote = chosen_remote(self.form.run_on)
        try:
            if remote:  # built for the remote: its mode and base model, not this computer's (core/remote/jobs.py)
                from isengard_desktop.core.remote.jobs import remote_training_spec

                _engine, spec, check, _meta = remote_training_spec(
                    self.ctx, character, remote, self.form.engine.currentData(), self.form.preset.currentData(),
                    self.form.overrides())
            else:
                from isengard_desktop.core.training import build_spec

                spec, check = build_spec(self.ctx.volume, self.ctx.dataset, character, self.ctx.mode,
                                         self.form.preset.currentData(), self.form.overrides(),
                                         self.form.base_model.currentData())
        except IsengardError as exc:
            self.form.verdict.setText(f"✖ {exc}")
            self.start_button.setEnabled(False)
            return None
        lines = [f"✖ {p}" for p in check.problems] + [f"• {w}" for w in check.warnings]
        if check.ok:
            lines.insert(0, f"✔ Ready: {len(spec.dataset)} photos, {spec.steps} steps, rank {spec.rank}.")
        memory = None if remote else self._memory_plan(spec)  # this computer's card says nothing of the remote's
        if memory is not None:
            from isengard_desktop.core.training_plan import describe

            lines += describe(memory)
            if not memory.ok:  # the same verdict the engine would reach after minutes of loading
                check.problems.append(memory.reason)
        lines += self._photo_lines(character.id)  # Check photos' verdict: a warning, never a refusal
        self.form.verdict.setText("\n".join(lines))
        # One job at a time per machine: this computer's GPU lane, or the chosen remote's lane.
        from isengard_desktop.jobs.remote_job import LANE_PREFIX

        lane = f"{LANE_PREFIX}{remote}" if remote else "gpu"
        self.start_button.setEnabled(check.ok and self.form.engine.currentData() is not None
                                     and not self.ctx.jobs.running_jobs(lane=lane))
        return spec, check

    def _memory_plan(self, spec):
        """The GPU memory plan of this run on this machine's card (production mode, a planned engine), or None."""
        from isengard_desktop.base.gpu_cards import cached_cards, local_cards
        from isengard_desktop.base.spec_plan import PLANNED_ENGINES, plan_for_spec

        engine = self.form.engine.currentData()
        if self.ctx.mode == FAST_TEST or engine not in PLANNED_ENGINES:
            return None
        cards, stale = cached_cards()
        if stale and not getattr(self, "_asking_gpu", False):
            # nvidia-smi takes ~100 ms: never on the event loop. The verdict is drawn again when it answers.
            self._asking_gpu = True
            run_in_background(self, lambda _p, _c: local_cards(fresh=True), on_done=self._gpu_answered)
        if not cards:
            return None
        card = cards[0]  # the card a job trains on (CUDA's device 0)
        try:
            return plan_for_spec(spec, engine, card)
        except IsengardError:  # an unreadable model catalogue: the doctor reports it; no plan then
            return None

    def _photo_lines(self, character_id: int) -> list[str]:
        """The dataset verdict of Check photos for the pre-flight, rebuilt off the event loop (a large dataset's report
        takes longer than the 50 ms the loop may stall); the verdict is drawn again when it answers."""
        import time

        cached = self._photo_verdict.get(character_id)
        if (cached is None or time.monotonic() - cached[0] > PHOTO_VERDICT_TTL_S) \
                and character_id not in self._photo_asking:
            from isengard_desktop.core.photo_check.service import PhotoCheckService

            self._photo_asking.add(character_id)
            run_in_background(self, lambda _p, _c: PhotoCheckService(self.ctx).preflight_lines(character_id),
                              on_done=lambda lines: self._photo_answered(character_id, lines),
                              on_error=lambda _exc: self._photo_failed(character_id))
        return cached[1] if cached else []

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        # Photos may have been checked, imported or deleted since the pre-flight was drawn.
        super().showEvent(event)
        if self._character() is not None:
            self.update_verdict()
        self._preload_chart()

    def _photo_answered(self, character_id: int, lines: list[str]) -> None:
        import time

        self._photo_asking.discard(character_id)
        self._photo_verdict[character_id] = (time.monotonic(), lines)
        if self._character() is not None and self._character().id == character_id:
            self.update_verdict()

    def _photo_failed(self, character_id: int) -> None:
        self._photo_asking.discard(character_id)  # the pre-flight goes without it
        self._preload_chart()

    def _gpu_answered(self, _cards) -> None:
        self._asking_gpu = False
        self.update_verdict()

    def start(self) -> str | None:
        built = self.update_verdict()
        if not built or not built[1].ok:
            return None
        spec, _check = built
        character = self._character()
        meta = {"preset": self.form.preset.currentData()}
        remote = chosen_remote(self.form.run_on)
        if remote:
            meta["remote"] = {"name": remote}
        with correlation("training_start", character_id=character.id):
            job = self.ctx.jobs.submit("training", self.form.engine.currentData(), spec.to_dict(), character.id,
                                       meta=meta)
        self.show_job(job.id)
        self._reload_runs()
        return job.id

    def cancel(self) -> None:
        if self.job_id:
            with correlation("training_cancel", job_id=self.job_id):
                try:
                    self.ctx.jobs.cancel(self.job_id)
                except IsengardError as exc:
                    self.result.setText(str(exc))
            self.run_title.setText(self.run_title.text() + " — stopping, saving a checkpoint…")

    def resume(self, job_id: str | None) -> None:
        if not job_id:
            return
        with correlation("training_resume", job_id=job_id):
            try:
                self.ctx.jobs.resume(job_id)
            except IsengardError as exc:
                self.result.setText(str(exc))
                return
        self.show_job(job_id)

    def offer_interrupted_jobs(self, recovered: list | None = None) -> None:
        """At start-up: jobs that were running when the app closed (``recovered``: the job manager's recover(),
        asked here when not given) are offered for resume."""
        from isengard_desktop.jobs.remote_job import reattachable

        for job in self.ctx.jobs.recover() if recovered is None else recovered:
            if job.kind != "training":
                continue
            banner = Banner(f"A training run ({job.id}) was interrupted when the app closed. Resume it from its last "
                            "checkpoint?", "Resume", lambda _=False, jid=job.id: self.resume(jid))
            self.banner_area.addWidget(banner)
        for job in self.ctx.jobs.list():
            if reattachable(job):  # it went on on its remote while the app was closed: follow it again
                try:
                    self.ctx.jobs.resume(job.id)
                except IsengardError as exc:
                    self.result.setText(str(exc))
        self._reload_runs()

    # showing a run -----------------------------------------------------------------------------
    def _reload_runs(self, *_args) -> None:
        """The chosen character's runs, newest first (every run when no character exists any more)."""
        if self.later:  # the runs are read after the first frame (load_later)
            return
        character_id = self.form.character.currentData()
        self.runs.blockSignals(True)
        self.runs.clear()
        self._run_items = {}
        for job in self.ctx.jobs.list(kind="training"):
            if character_id is not None and job.character_id != character_id:
                continue
            item = QListWidgetItem(self._run_text(job, job.progress.get("step", 0)))
            item.setData(Qt.ItemDataRole.UserRole, job.id)
            self.runs.addItem(item)
            self._run_items[job.id] = item
            if job.id == self.job_id:
                self.runs.setCurrentItem(item)
        self.runs.blockSignals(False)

    @staticmethod
    def _run_text(job, step) -> str:
        total = job.params.get("spec", {}).get("steps", "?")
        lora = job.result.get("lora")
        return (f"{job.id} · {job.params.get('preset', '')} · {job.state} · {step}/{total}"
                + ("\n  LoRA: " + Path(lora).name if lora else ""))

    def _run_progressed(self, job_id: str, event: dict) -> None:
        """A running job's row follows its progress events (the database keeps them only twice a second)."""
        item = self._run_items.get(job_id)
        if item is not None and "step" in event:
            text = item.text()
            head, _, tail = text.partition("\n")
            head = head.rsplit(" · ", 1)[0] + f" · {event['step']}/{event.get('total', '?')}"
            item.setText(head + ("\n" + tail if tail else ""))

    def _run_selected(self, item: QListWidgetItem | None) -> None:
        if item is not None:
            self.show_job(item.data(Qt.ItemDataRole.UserRole))

    def show_job(self, job_id: str) -> None:
        """Show a run: replay its events so far (chart, samples), then follow it live."""
        self.job_id = job_id
        job = self.ctx.jobs.get(job_id)
        self.samples.clear()
        steps, losses = [], []
        for event in self.ctx.jobs.events(job_id):
            if event["event"] == "progress" and event.get("loss") is not None:
                while steps and steps[-1] >= event["step"]:  # a resumed run repeats steps after its checkpoint
                    steps.pop()
                    losses.pop()
                steps.append(event["step"])
                losses.append(event["loss"])
            elif event["event"] == "sample":
                self._add_sample(event)
        self.chart.set_points(steps, losses)
        total = job.params.get("spec", {}).get("steps", 0)
        self.progress.setRange(0, max(int(total), 1))
        self.progress.setValue(int(job.progress.get("step", 0)))
        self._show_progress(job.progress)
        self._show_state(job)
        self._update_buttons()

    def _show_state(self, job) -> None:
        character = self.ctx.characters.get(job.character_id).name if job.character_id else "?"
        self.run_title.setText(f"{character} · {job.params.get('preset', '')} · {job.engine} · {job.state}")
        text = ""
        if job.state == "succeeded" and job.result.get("lora"):
            text = f"LoRA saved: {job.result['lora']}"
        elif job.error:
            text = job.error
        self.result.setText(text)

    def _show_progress(self, event: dict) -> None:
        if not event:
            self.stats.setText("")
            return
        loss = event.get("loss")
        self.stats.setText(f"step {event.get('step', 0)}/{event.get('total', '?')} · "
                           f"{event.get('it_per_s', 0):.2f} it/s · ETA {human_duration(event.get('eta_s'))}"
                           + (f" · loss {loss:.4f}" if loss is not None else ""))

    def _add_sample(self, event: dict) -> None:
        pixmap = QPixmap(event["path"])
        if pixmap.isNull():
            return
        item = QListWidgetItem(QIcon(pixmap), f"step {event['step']}")
        item.setToolTip(event.get("prompt", ""))
        self.samples.insertItem(0, item)  # newest first

    def _on_event(self, job_id: str, event: dict) -> None:
        if event.get("event") == "progress":
            self._run_progressed(job_id, event)
        if job_id != self.job_id:
            if event.get("event") == "state":
                self._reload_runs()
            return
        kind = event.get("event")
        if kind == "progress":
            self.progress.setRange(0, max(int(event["total"]), 1))
            self.progress.setValue(int(event["step"]))
            self._show_progress(event)
            if event.get("loss") is not None:
                self.chart.add_point(int(event["step"]), float(event["loss"]))
        elif kind == "sample":
            self._add_sample(event)
        elif kind == "gpu":
            self.machine.setText(machine_text(event))
        elif kind == "state":
            job = self.ctx.jobs.get(job_id)
            self._show_state(job)
            self._reload_runs()  # its row says running, then how it ended
            if event.get("state") not in ("queued", "running"):
                self.show_job(job_id)  # the full curve from the events file
                if event.get("state") == "succeeded":
                    self.lora_finished.emit()
            self._update_buttons()
            self.update_verdict()

    def _update_buttons(self) -> None:
        from isengard_desktop.storage.jobs_repo import RESUMABLE_STATES

        job = self.ctx.jobs.get(self.job_id) if self.job_id else None
        self.cancel_button.setEnabled(bool(job and job.state in ("queued", "running")))
        self.resume_button.setEnabled(bool(job and job.state in RESUMABLE_STATES))
