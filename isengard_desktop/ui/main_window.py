"""The main window: five tabs (or, on a volume not set up yet, the first-run page) and a status bar with the mode,
the GPU and each engine's state."""

from __future__ import annotations

from PySide6.QtCore import QUrl
from PySide6.QtGui import QAction, QDesktopServices
from PySide6.QtWidgets import QLabel, QMainWindow, QMessageBox, QStackedWidget, QTabWidget, QWidget

from isengard_desktop import APP_NAME, __version__
from isengard_desktop.base.errors import IsengardError
from isengard_desktop.base.mode import FAST_TEST, describe_mode, detect_gpu
from isengard_desktop.context import AppContext
from isengard_desktop.ui.bridge import JobBridge, ThreadSignal, run_in_background
from isengard_desktop.ui.lazy_tabs import AfterFirstFrame, LazyTab, TabBook, import_steps, run_steps

SERVICE_TEXT = {"stopped": "stopped", "starting": "starting…", "ready": "ready", "failed": "failed"}


def engine_states(ctx: AppContext) -> tuple[str, str]:
    """The status bar's engine line and its tooltip: each engine the person installs (it declares an upstream),
    with the state of its server when it declares one (availability checks are cheap)."""
    from isengard_desktop.core.engines import list_engines

    parts, tips = [], []
    for info in list_engines(ctx.volume):
        if info.traits.upstream is None:
            continue
        title = info.traits.upstream.title
        service = ctx.service(info.name) if info.availability.available else None
        if not info.availability.available:
            text, tip = "not installed", info.availability.reason
        elif service is None:
            text, tip = "ready", f"{title} is ready."
        else:
            status = service.status()
            text = SERVICE_TEXT.get(status.state, status.state)
            tip = status.detail or f"{title} is {text}."
        parts.append(f"{title}: {text}")
        tips.append(tip)
    return " · ".join(parts), "\n".join(tips)  # File → Settings shows details and installs


class MainWindow(QMainWindow):
    characters, dataset, training, generate, jobs = LazyTab(), LazyTab(), LazyTab(), LazyTab(), LazyTab()

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self._after_frame_done = self._closing = self._offer_jobs_asked = False
        self.setWindowTitle(f"{APP_NAME} — {ctx.volume.root}")
        self.resize(1240, 800)
        # Follows the job manager from _follow_jobs (not needed for the first frame); owned by the window, so no
        # reader thread dropping a reference can destroy it off the GUI thread (E38).
        self.bridge = JobBridge(parent=self)
        self._trained_job: str | None = None  # the newest training that succeeded while Generate was not built yet
        self.bridge.event.connect(self._note_training)
        self.tabs = QTabWidget()
        # Only the tab the window reopens on is built now, and only what its first frame needs (lazy_tabs.py).
        self.book = TabBook(self.tabs, self._make_tab, ctx.settings.last_tab)
        self.tabs.currentChanged.connect(self._remember_tab)  # after the book's: the new tab is built first
        self.stack = QStackedWidget()
        self.stack.addWidget(self.tabs)
        self.setCentralWidget(self.stack)
        self.first_run = None
        if not ctx.settings.first_run_done:  # the page's module (and what it imports) only when it may show
            from isengard_desktop.ui import first_run

            if first_run.should_show(ctx):
                self.show_first_run()
        self._build_menu()
        self._build_status_bar()
        self._first_frame = AfterFirstFrame(self, self._after_first_frame)

    def _make_tab(self, name: str, for_first_frame: bool) -> QWidget:
        """The tab ``name``, wired to the others: what one changes, the others show. Its module is imported here,
        when it is first needed: importing them all cost the first frame."""
        if name != "characters" and not for_first_frame:  # they show or start jobs (the first frame's: after it)
            self._follow_jobs()
        if name == "characters":
            from isengard_desktop.ui.characters_tab import CharactersTab

            tab = CharactersTab(self.ctx)
            tab.changed.connect(lambda: self.book.refresh("dataset", "training"))
        elif name == "dataset":
            from isengard_desktop.ui.dataset_tab import DatasetTab

            tab = DatasetTab(self.ctx, self.bridge, later=for_first_frame)  # its photos are read after the frame
            tab.changed.connect(lambda: self.book.refresh("characters", "training"))
        elif name == "training":
            from isengard_desktop.ui.training_tab import TrainingTab

            # Built for the first frame: engines, base models, past runs and the verdict come after it.
            tab = TrainingTab(self.ctx, self.bridge, later=for_first_frame)
            tab.lora_finished.connect(lambda: self.book.refresh("characters", "generate"))
        elif name == "generate":
            from isengard_desktop.ui.generate_tab import GenerateTab

            tab = GenerateTab(self.ctx, self.bridge, later=for_first_frame)
            if self._trained_job is not None:  # what it would have seen built: it offers the LoRA just trained
                tab._training_succeeded(self._trained_job)
        else:
            from isengard_desktop.ui.jobs_tab import JobsTab

            tab = JobsTab(self.ctx, self.bridge)
        return tab

    def _note_training(self, job_id: str, event: dict) -> None:
        if "generate" in self.book.built or event.get("event") != "state" or event.get("state") != "succeeded":
            return
        try:
            if self.ctx.jobs.get(job_id).kind == "training":
                self._trained_job = job_id
        except IsengardError:  # a job gone from the list: nothing to offer
            pass

    def _follow_jobs(self) -> None:
        """Make the job manager and follow its events: before anything can start a job (a tab that starts jobs is
        built, a page or dialog that downloads is opened, the first frame is shown)."""
        self.bridge.attach(self.ctx.jobs)

    def offer_interrupted_jobs(self) -> None:
        """At start-up: jobs that were running when the app closed are offered for resume on the Training tab,
        which is built for it only when there is such a job. Asked before the first frame, it runs after it."""
        if not self._after_frame_done:
            self._offer_jobs_asked = True
            return
        if self._closing:
            return
        from isengard_desktop.jobs.remote_job import reattachable

        self._follow_jobs()

        recovered = [job for job in self.ctx.jobs.recover() if job.kind == "training"]
        if recovered or "training" in self.book.built or any(reattachable(job) for job in self.ctx.jobs.list()):
            self.training.offer_interrupted_jobs(recovered)

    def _after_first_frame(self) -> None:
        """What the first frame does not need (issue 14): the job manager, engine states, the GPU, ComfyUI,
        interrupted jobs, what the first tab left for later (lazy_tabs.py). One step per turn of the event loop:
        together they would stall it (E6). The chart library loads once the Training tab is shown (training_tab.py).
        """
        if self._after_frame_done:
            return
        self._after_frame_done = True
        # The first tab's threads (load_later) start after the steps that list engines on this thread: running
        # beside them, they doubled those steps (a 15-22 ms step became a 30 ms stall).
        run_steps(self, [*import_steps(), self._follow_jobs, self._show_engine_states, self._ask_gpu,
                         self._start_services, self._offer_if_asked, self.book.load_first_later],
                  lambda: self._closing)

    def _show_engine_states(self) -> None:
        text, tip = engine_states(self.ctx)
        self.engines_label.setText(text)
        self.engines_label.setToolTip(tip)

    def _ask_gpu(self) -> None:
        # nvidia-smi can take a second: ask off the GUI thread.
        run_in_background(self, lambda _p, _c: detect_gpu(), on_done=lambda info: self.gpu_label.setText(
            f"GPU: {info.summary}"))

    def _offer_if_asked(self) -> None:
        if self._offer_jobs_asked:
            self.offer_interrupted_jobs()

    def _remember_tab(self, index: int) -> None:
        from isengard_desktop.storage import settings as settings_store

        title = self.tabs.tabText(index)
        self.ctx.settings.last_tab = title
        try:  # only this setting: a CLI command may have changed others while the window was open (E40)
            settings_store.update(self.ctx.volume.settings_path, self.ctx.settings, last_tab=title)
        except Exception as exc:  # a full or read-only volume: forgetting the tab is fine, an error box is not
            import structlog

            structlog.get_logger(__name__).warning("last_tab_not_saved", error=str(exc))

    def show_first_run(self) -> None:
        """Show the first-run page (at start on a volume not set up yet, or from Settings)."""
        from isengard_desktop.ui.first_run import FirstRunPage

        if self.first_run is None:
            self._follow_jobs()  # the page downloads models and installs engines as jobs
            self.first_run = FirstRunPage(self.ctx, self.bridge)
            self.first_run.finished.connect(self._first_run_finished)
            self.stack.addWidget(self.first_run)
        else:
            self.first_run.refresh()
        self.stack.setCurrentWidget(self.first_run)

    def _first_run_finished(self, how: str) -> None:
        self.stack.setCurrentWidget(self.tabs)
        self.tabs.setCurrentWidget(self.characters)
        self.book.refresh("training")
        if "generate" in self.book.built:
            self.book.built["generate"].refresh_engines()

    def _start_services(self) -> None:
        """Start the servers engines declare (the embedded ComfyUI) in the background when they are installed; the
        status bar follows them."""
        from isengard_desktop.core.engines import list_engines

        # An engine server's state changes arrive on its threads; closed in closeEvent, so none is handed on while
        # the window goes (E38).
        self._service_relay = ThreadSignal(self)
        self._service_relay.fired.connect(self._service_changed)
        unsubscribes = []
        for info in list_engines(self.ctx.volume):
            service = self.ctx.service(info.name)
            if service is None:
                continue
            unsubscribes.append(service.subscribe(self._service_relay.emit))
            if info.availability.available:
                service.start()
        self._unsubscribe_service = lambda: [self._service_relay.close(), *(stop() for stop in unsubscribes)]

    def _build_menu(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        add = QAction("Add photos…", self)
        add.triggered.connect(self._import_from_menu)
        file_menu.addAction(add)
        open_volume = QAction("Open volume folder", self)
        open_volume.triggered.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.ctx.volume.root))))
        file_menu.addAction(open_volume)
        settings = QAction("Settings…", self)
        settings.triggered.connect(self.open_settings)
        file_menu.addAction(settings)
        file_menu.addSeparator()
        quit_action = QAction("Quit", self)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        help_menu = self.menuBar().addMenu("&Help")
        about = QAction("About", self)
        about.triggered.connect(lambda: QMessageBox.about(self, APP_NAME, (
            f"{APP_NAME} {__version__}\n\nVolume: {self.ctx.volume.root}\n{describe_mode(self.ctx.mode)}")))
        help_menu.addAction(about)

    def open_settings(self):
        from isengard_desktop.ui.settings_dialog import SettingsDialog

        self._follow_jobs()  # the dialog downloads models as jobs
        dialog = SettingsDialog(self.ctx, self.bridge, self)
        dialog.first_run_requested.connect(self.show_first_run)
        dialog.open()
        return dialog

    def _import_from_menu(self) -> None:
        characters = self.ctx.characters.list()
        if not characters:
            QMessageBox.information(self, "No character yet", "Create a character first, then add photos to it.")
            return
        self.tabs.setCurrentWidget(self.characters)
        self.characters.choose_files(characters[0].id if len(characters) == 1 else self._ask_character(characters))

    def _ask_character(self, characters) -> int:
        from PySide6.QtWidgets import QInputDialog

        names = [c.name for c in characters]
        name, ok = QInputDialog.getItem(self, "Add photos", "Add photos to:", names, 0, False)
        return characters[names.index(name)].id if ok else characters[0].id

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        mode = QLabel("⚡ Fast-test mode" if self.ctx.mode == FAST_TEST else "Production mode")
        mode.setToolTip(describe_mode(self.ctx.mode))
        if self.ctx.mode == FAST_TEST:
            mode.setStyleSheet("color:#d9b36c;")
        self.gpu_label = QLabel("GPU: checking…")
        self.engines_label = engines = QLabel("Engines: checking…")  # filled in after the first frame
        bar.addWidget(mode)
        detail = "tiny model, samples are noise" if self.ctx.mode == FAST_TEST else "real engines and base models"
        bar.addWidget(QLabel(detail), 1)
        bar.addPermanentWidget(self.gpu_label)
        bar.addPermanentWidget(engines)

    def _service_changed(self, status) -> None:
        text, tip = engine_states(self.ctx)
        self.engines_label.setText(text)
        self.engines_label.setToolTip(tip)
        if status.state in ("ready", "failed", "stopped") and "generate" in self.book.built:
            self.book.built["generate"].refresh_engines()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        running = self.ctx.jobs.running_jobs()
        if running and getattr(self, "confirm_quit", True):
            answer = QMessageBox.question(
                self, "A job is running",
                "A job is running. Quit anyway? Training saves a checkpoint first, and you can resume it next time.")
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        self._after_frame_done = self._closing = True  # nothing deferred starts once the window is closing
        self.ctx.jobs.shutdown(wait=60)
        self.bridge.close()
        for name in ("dataset", "generate"):
            if name in self.book.built:
                self.book.built[name].shutdown()
        if getattr(self, "_unsubscribe_service", None):
            self._unsubscribe_service()
        super().closeEvent(event)
