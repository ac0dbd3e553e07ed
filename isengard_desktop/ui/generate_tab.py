"""The Generate tab: the form, Generate / Cancel with progress, and the gallery of every result with its
parameters, "Reuse parameters" and "Open folder". Jobs run in the job manager; this tab only listens."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QScrollArea, QSplitter, QVBoxLayout, QWidget

from engines.interface import Availability
from isengard_desktop.base.errors import IsengardError
from isengard_desktop.base.log import correlation
from isengard_desktop.base.mode import FAST_TEST
from isengard_desktop.context import AppContext
from isengard_desktop.core import generation
from isengard_desktop.storage.jobs_repo import GenerationRow
from isengard_desktop.ui.bridge import JobBridge, run_in_background
from isengard_desktop.ui.gallery import GalleryModel, GalleryView, PathRole, RowRole
from isengard_desktop.ui.generate_form import GenerateForm
from isengard_desktop.ui.training_form import checking, chosen_remote, fill_run_on
from isengard_desktop.ui.widgets import button, label

PREVIEW_SIDE = 256
GALLERY_HINT = "Your images appear here, newest first."


def _engines(ctx: AppContext) -> list:
    from isengard_desktop.core.engines import list_engines

    return list_engines(ctx.volume, "image")


def _fast_test_model(ctx: AppContext, engine: str):
    """The base model ``engine`` declares for fast-test mode (making the engine is cheap: no torch, no I/O)."""
    from engines.interface import ImageEngine
    from isengard_desktop.core.engines import load

    generator = load(ctx.volume, engine)
    return generator.base_model(True) if isinstance(generator, ImageEngine) else None


def _readiness(ctx: AppContext, engine: str) -> dict[str, Availability]:
    from engines.interface import ImageEngine
    from isengard_desktop.core.engines import load

    generator = load(ctx.volume, engine)
    return generator.advanced_readiness() if isinstance(generator, ImageEngine) else {}


class GenerateTab(QWidget):
    def __init__(self, ctx: AppContext, bridge: JobBridge, later: bool = False) -> None:
        """``later``: built for the window's first frame, the tab reads its engines, LoRAs and gallery when
        load_later() is called, after that frame (its thread would slow the frame down); until then it says so
        and Generate waits."""
        super().__init__()
        self.ctx = ctx
        self.bridge = bridge
        self.job_id: str | None = None
        self._offer: int | None = None  # a character whose training just succeeded: offer its new LoRA
        outer = QVBoxLayout(self)
        header = QHBoxLayout()
        header.addWidget(label("Generate", "title", wrap=False))
        if ctx.mode == FAST_TEST:
            header.addWidget(label("  fast-test: tiny model on the CPU, images are noise", "hint", wrap=False))
        header.addStretch(1)
        outer.addLayout(header)

        self.form = GenerateForm(ctx.mode, fast_test_model=lambda engine: _fast_test_model(ctx, engine))
        self.generate_button = button("Generate", primary=True)
        self.cancel_button = button("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.status = label("", "muted")
        self.preview = QLabel()  # the image being made, while ComfyUI sends previews
        self.preview.setFixedSize(PREVIEW_SIDE, PREVIEW_SIDE)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.hide()
        actions = QHBoxLayout()
        actions.addWidget(self.generate_button, 1)
        actions.addWidget(self.cancel_button)
        # Only the form scrolls: Generate, Cancel, the progress bar and the status stay in view below it at
        # any window height (at 1240×800 the form alone is taller than the tab).
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.form)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # the form fits; only scroll down
        self.form_scroll = scroll
        left = QWidget()
        left_box = QVBoxLayout(left)
        left_box.setContentsMargins(0, 0, 0, 0)
        left_box.addWidget(scroll, 1)
        left_box.addLayout(actions)
        left_box.addWidget(self.progress)
        left_box.addWidget(self.status)
        left.setMinimumWidth(520)

        right = QWidget()
        gallery_box = QVBoxLayout(right)
        self.model = GalleryModel(self)
        self.view = GalleryView(self.model)
        self.details = label(GALLERY_HINT, "muted")
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.reuse_button = button("Reuse parameters")
        self.open_button = button("Open folder")
        for widget in (self.reuse_button, self.open_button):
            widget.setEnabled(False)
        detail_actions = QHBoxLayout()
        detail_actions.addStretch(1)
        detail_actions.addWidget(self.reuse_button)
        detail_actions.addWidget(self.open_button)
        gallery_box.addWidget(self.preview, alignment=Qt.AlignmentFlag.AlignHCenter)  # above the results
        gallery_box.addWidget(label("Gallery", "muted"))
        gallery_box.addWidget(self.view, 1)
        gallery_box.addWidget(self.details)
        gallery_box.addLayout(detail_actions)

        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([540, 700])
        outer.addWidget(splitter, 1)

        self.generate_button.clicked.connect(self.generate)
        self.cancel_button.clicked.connect(self.cancel)
        self.form.engine.currentIndexChanged.connect(self._engine_changed)
        self.form.check_again.clicked.connect(self._engine_changed)
        self.view.selectionModel().currentChanged.connect(self._selected)
        self.reuse_button.clicked.connect(self.reuse)
        self.open_button.clicked.connect(self.open_folder)
        bridge.event.connect(self._on_event)
        if later:  # what it is waiting for, never an empty gallery or engine list that looks final
            self.generate_button.setEnabled(False)
            self.status.setText("Reading the engines, your LoRAs and the gallery…")
            checking(self.form.engine, "checking engines…")
            checking(self.form.run_on, "checking…")
            self.details.setText("Reading the gallery…")
        else:
            self.refresh()

    def load_later(self) -> None:
        """What a tab built with ``later`` left for after the first frame."""
        self.refresh()

    # loading ---------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Engines, LoRAs and the gallery, read off the GUI thread."""

        def load(_progress, _cancelled):
            triggers = {person.id: person.trigger_word for person in self.ctx.characters.list()}
            return (_engines(self.ctx), generation.lora_options(self.ctx.volume, self.ctx.db), triggers,
                    generation.gallery(self.ctx.db, self.ctx.volume))

        run_in_background(self, load, on_done=self._loaded, on_error=self._show_error)

    def _loaded(self, result) -> None:
        engines, options, triggers, items = result
        if self.job_id is None and not self.generate_button.isEnabled():  # waiting for this (``later``)
            self.generate_button.setEnabled(True)
            self.status.setText("")
            self.details.setText(GALLERY_HINT)
        self.form.set_engines(engines, self.ctx.settings.default_image_engine)
        fill_run_on(self.form.run_on, self.ctx)
        self.form.set_lora_options(options, triggers, offer=self._offer)
        self._offer = None
        self.model.set_items(items)
        self._engine_changed()

    def _engine_changed(self, *_args) -> None:
        self.form.show_engine_note()
        engine = self.form.engine.currentData()
        if not engine:
            return
        self.form.set_readiness(None)
        run_in_background(self, lambda _p, _c: _readiness(self.ctx, engine), on_done=self._readiness_arrived)

    def _readiness_arrived(self, readiness: dict[str, Availability]) -> None:
        self.form.set_readiness(readiness)

    def refresh_engines(self) -> None:
        """An engine's server changed state (ComfyUI became ready, or was installed): engines and toggles again."""
        run_in_background(self, lambda _p, _c: _engines(self.ctx), on_done=self._engines_loaded,
                          on_error=self._show_error)

    def _engines_loaded(self, engines: list) -> None:
        self.form.set_engines(engines, self.ctx.settings.default_image_engine)
        self._engine_changed()

    # running ---------------------------------------------------------------------------------------
    def generate(self) -> None:
        engine = self.form.engine.currentData()
        values = self.form.values()
        remote = chosen_remote(self.form.run_on)
        try:
            prompt, loras = values.pop("prompt"), values.pop("loras")
            meta: dict = {}
            if remote:  # the built-in engine there, the LoRAs sent with the job (core/remote/jobs.py)
                from isengard_desktop.core.remote.jobs import remote_generation_request

                engine, request, meta["remote"] = remote_generation_request(
                    self.ctx, remote, None,
                    lambda mode, name: generation.build_request(self.ctx.volume, mode, name, prompt, loras, **values))
            else:
                availability = getattr(self.form, "engine_availability", {}).get(engine)
                if availability is not None and not availability.available:
                    raise IsengardError(availability.reason)
                request = generation.build_request(self.ctx.volume, self.ctx.mode, engine, prompt, loras, **values)
            with correlation("generate_clicked"):
                if not remote:
                    self.ctx.start_service(engine)
                job = self.ctx.jobs.submit("generation", engine, request.to_dict(),
                                           meta={"aspect": request.aspect, **meta})
        except IsengardError as exc:
            self._show_error(exc)
            return
        self.job_id = job.id
        self.progress.setRange(0, request.steps * request.batch_count)
        self.progress.setValue(0)
        where = f" on {remote} with the built-in engine" if remote else ""  # only it generates on a remote
        self.status.setText(f"Queued{where}: {request.batch_count} image(s), seed {request.seed}.")
        self.generate_button.setEnabled(False)
        self.cancel_button.setEnabled(True)

    def cancel(self) -> None:
        if self.job_id:
            try:
                self.ctx.jobs.cancel(self.job_id)
                self.status.setText("Cancelling after the current step…")
            except IsengardError as exc:
                self._show_error(exc)

    def _on_event(self, job_id: str, event: dict) -> None:
        if job_id != self.job_id:
            if event.get("event") == "state" and event.get("state") == "succeeded":
                self._training_succeeded(job_id)
            return
        kind = event.get("event")
        if kind == "progress":
            self.progress.setRange(0, int(event.get("total") or 0))
            self.progress.setValue(int(event.get("step") or 0))
            self.status.setText(f"Image {int(event.get('index', 0)) + 1} of {event.get('count', 1)} · "
                                f"step {event.get('step')}/{event.get('total')}")
        elif kind == "log":
            self.status.setText(str(event.get("message", "")))
        elif kind == "preview" and event.get("path"):
            pixmap = QPixmap(str(event["path"]))  # a small JPEG: cheap enough for the GUI thread
            if not pixmap.isNull():
                self.preview.setPixmap(pixmap.scaled(PREVIEW_SIDE, PREVIEW_SIDE, Qt.AspectRatioMode.KeepAspectRatio,
                                                     Qt.TransformationMode.SmoothTransformation))
                self.preview.show()
        elif kind == "image" and event.get("library_path"):
            self._add_image(event)
        elif kind == "state" and event.get("state") not in ("queued", "running"):
            self._finished(event.get("state", ""), event.get("error"))
        elif kind == "state" and event.get("state") == "running":
            self.status.setText("Starting…")

    def _training_succeeded(self, job_id: str) -> None:
        """A training run just made a LoRA: offer it, so the next Generate uses it without a click."""
        try:
            job = self.ctx.jobs.get(job_id)
        except IsengardError:
            return
        if job.kind == "training" and job.character_id is not None:
            self._offer = job.character_id
            self.refresh()

    def _add_image(self, event: dict) -> None:
        rows = generation.gallery(self.ctx.db, self.ctx.volume, limit=5)
        for row, path in rows:
            if row.id == event.get("generation_id"):
                self.model.prepend(row, path)
                self.view.setCurrentIndex(self.model.index(0))
                return

    def _finished(self, state: str, error: str | None) -> None:
        self.preview.hide()
        self.generate_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if state == "succeeded":
            self.progress.setValue(self.progress.maximum())
            self.status.setText("Done.")
        elif state == "cancelled":
            self.status.setText("Cancelled; the images finished before the cancel are in the gallery.")
        else:
            self.status.setText(f"Failed: {error or 'see the Jobs tab for its log.'}")
        self.job_id = None

    # gallery ---------------------------------------------------------------------------------------
    def _current(self) -> tuple[GenerationRow, Path] | None:
        index = self.view.currentIndex()
        if not index.isValid():
            return None
        return index.data(RowRole), index.data(PathRole)

    def _selected(self, *_args) -> None:
        current = self._current()
        for widget in (self.reuse_button, self.open_button):
            widget.setEnabled(current is not None)
        if current is None:
            return
        row, path = current
        self.details.setText(f"{path.name} · {row.engine}\n{row.parameters}")

    def reuse(self) -> None:
        current = self._current()
        if current is not None:
            self.form.load(current[0].params)
            self.status.setText(f"Parameters of {current[1].name} loaded; press Generate to make it again.")

    def open_folder(self) -> None:
        current = self._current()
        if current is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(current[1].parent)))

    def _show_error(self, exc: Exception) -> None:
        self.status.setText(str(exc))

    def shutdown(self) -> None:
        self.model.shutdown()
