"""The first-run page: from an empty volume to everything a real FLUX.1-dev LoRA and image need.

Shown instead of the tabs when the volume has no production base model and the person has not finished or
skipped it (``settings.first_run_done``); Settings brings it back. It shows the GPU and which presets it can run,
the engines with Install, each catalogue model with Download (the token inline when the repository is gated) and
the download and disk it will take, and — on a machine without a GPU — "Try the fast-test demo".
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QScrollArea, QVBoxLayout, QWidget

from isengard_desktop.base.log import correlation
from isengard_desktop.base.mode import FAST_TEST
from isengard_desktop.context import AppContext
from isengard_desktop.ui.bridge import JobBridge, run_in_background
from isengard_desktop.ui.engine_install import engine_title, install_engine
from isengard_desktop.ui.model_download import ModelDownloadPanel
from isengard_desktop.ui.widgets import button, label

ENGINE_ROLES = {"aitoolkit": "trains LoRAs (the production default)", "comfyui": "generates images (the default)"}


def should_show(ctx: AppContext) -> bool:
    """The page opens the window until it is finished or skipped, unless a production base model is already here."""
    if ctx.settings.first_run_done:
        return False
    from isengard_desktop.core.models.inventory import production_model_ready

    try:
        return not production_model_ready(ctx.volume, ctx.extra_model_dirs())
    except Exception:  # a broken catalogue must not keep the window from opening; Settings shows the error
        return True


def _section(title: str) -> tuple[QFrame, QVBoxLayout]:
    frame = QFrame()
    box = QVBoxLayout(frame)
    box.setContentsMargins(0, 8, 0, 8)
    box.addWidget(label(f"<b>{title}</b>"))
    return frame, box


def _machine(gpus: list) -> tuple[list, dict | None]:
    """The GPUs and, for the largest, every preset's memory plan per engine (off the GUI thread)."""
    vram = max((g.vram_gb or 0) for g in gpus) if gpus else 0
    if not vram:
        return gpus, None
    from isengard_desktop.base.memory_plan import Card
    from isengard_desktop.core.training_plan import presets_on_card

    return gpus, presets_on_card(Card.nominal(vram))


class FirstRunPage(QWidget):
    """Signals ``finished("demo" | "continue")`` when the person leaves it."""

    finished = Signal(str)

    def __init__(self, ctx: AppContext, bridge: JobBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx, self.bridge = ctx, bridge
        outer = QVBoxLayout(self)
        outer.setContentsMargins(24, 18, 24, 12)
        outer.addWidget(label("Welcome to Isengard Desktop", "title"))
        outer.addWidget(label("Three steps to your first LoRA: check the machine, install the engines, download the "
                              "base model. Everything goes into the volume folder "
                              f"{ctx.volume.root}.", "muted"))
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        body = QWidget()
        self.body = QVBoxLayout(body)
        scroll.setWidget(body)
        outer.addWidget(scroll, 1)

        machine, self.machine_box = _section("1 · Your machine")
        self.gpu_label = label("Looking for a GPU…")
        self.machine_box.addWidget(self.gpu_label)
        self.presets_grid = QGridLayout()
        self.presets_grid.setHorizontalSpacing(28)
        self.presets_grid.setColumnStretch(3, 1)  # the three columns stay together at the left
        self.machine_box.addLayout(self.presets_grid)
        self.body.addWidget(machine)

        engines, engines_box = _section("2 · Engines")
        engines_box.addWidget(label("The built-in engine (diffusers) is always ready. The upstream engines each get "
                                    "their own environment inside the volume; installing takes a few minutes.",
                                    "muted"))
        self.engine_labels: dict[str, object] = {}
        self.install_buttons: dict[str, object] = {}
        from isengard_desktop.core.engines_status import pins

        for name in pins()["engines"]:
            row = QHBoxLayout()
            row.addWidget(label(f"<b>{engine_title(name)}</b> — {ENGINE_ROLES.get(name, '')}"), 1)
            state = label("checking…", "muted", wrap=False)
            self.engine_labels[name] = state
            row.addWidget(state)
            install = button("Install")
            install.clicked.connect(lambda _=False, n=name: self.install(n))
            self.install_buttons[name] = install
            row.addWidget(install)
            engines_box.addLayout(row)
        self.body.addWidget(engines)

        models, self.models_box = _section("3 · Base model")
        self.models_box.addWidget(label(
            "Files already on this machine (the Hugging Face cache, a ComfyUI models folder added in Settings) are "
            "found and linked, never copied or downloaded twice. A download that stops resumes where it was.", "muted"))
        self.model_panels: list[ModelDownloadPanel] = []
        self.body.addWidget(models)
        self.body.addStretch(1)

        footer = QHBoxLayout()
        self.footer_note = label("", "muted")
        footer.addWidget(self.footer_note, 1)
        self.demo_button = button("Try the fast-test demo", primary=True)
        self.demo_button.setToolTip("A tiny random model built on this machine: the whole flow works; images are "
                                    "noise.")
        self.demo_button.clicked.connect(lambda: self._finish("demo"))
        footer.addWidget(self.demo_button)
        self.continue_button = button("Continue to the app")
        self.continue_button.clicked.connect(lambda: self._finish("continue"))
        footer.addWidget(self.continue_button)
        outer.addLayout(footer)
        self.demo_button.setVisible(ctx.mode == FAST_TEST)
        if ctx.mode == FAST_TEST:
            self.footer_note.setText("No CUDA GPU here: the app runs in fast-test mode. You can still download the "
                                     "model for a GPU machine, or try everything now on a tiny model.")
        self._build_models()
        self.refresh()

    # building ----------------------------------------------------------------------------------------------
    def _build_models(self) -> None:
        from isengard_desktop.base import catalogue

        try:
            models = catalogue.load()
        except Exception as exc:  # shown, never a traceback
            self.models_box.addWidget(label(f"The model catalogue could not be read: {exc}", "error"))
            return
        for model in models:
            if model.role != "base":  # the face embedder, the captioner: optional, offered in Settings → Models
                continue
            panel = ModelDownloadPanel(self.ctx, self.bridge, model)
            panel.changed.connect(self._model_changed)
            self.model_panels.append(panel)
            self.models_box.addWidget(panel)

    def refresh(self) -> None:
        from isengard_desktop.base.mode import query_gpus
        from isengard_desktop.core.engines_status import pins, status

        root = self.ctx.volume.root
        run_in_background(self, lambda _p, _c: _machine(query_gpus()), on_done=self._show_machine)
        run_in_background(self, lambda _p, _c: [status(name, root) for name in pins()["engines"]],
                          on_done=self._show_engines)

    def _show_machine(self, machine) -> None:
        from isengard_desktop.core.presets import all_presets

        gpus, plans = machine
        if gpus:
            lines = [f"{g.name} · {g.vram_gb or '?'} GB VRAM · driver {g.driver_version} · compute {g.cc}"
                     for g in gpus]
            self.gpu_label.setText("GPU: " + "; ".join(lines))
            vram = max((g.vram_gb or 0) for g in gpus) or None
        else:
            self.gpu_label.setText("No NVIDIA GPU found. Training FLUX.1-dev needs one (24 GB for AI-Toolkit; 12 GB "
                                   "for the built-in engine's 4-bit Quick preset); fast-test mode runs the whole app "
                                   "on the CPU with a tiny model.")
            vram = None
        for panel in self.model_panels:
            panel.prefer_for_vram(vram)
        while self.presets_grid.count():
            item = self.presets_grid.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        for column, title in enumerate(("Preset", "AI-Toolkit", "Built-in engine")):
            self.presets_grid.addWidget(label(f"<b>{title}</b>", "muted", wrap=False), 0, column)
        for row, preset in enumerate(all_presets(), start=1):
            self.presets_grid.addWidget(label(preset.label, wrap=False), row, 0)
            needs = preset.predicted.get("vram_gb_by_engine", {})
            for column, engine in enumerate(("aitoolkit", "diffusers"), start=1):
                text, style = self._preset_verdict(needs.get(engine), plans[engine][preset.name] if plans else None)
                self.presets_grid.addWidget(label(text, style, wrap=False), row, column)

    @staticmethod
    def _preset_verdict(need_gb, plan) -> tuple[str, str]:
        """One cell: the VRAM a preset needs without a card; with one, the memory plan's verdict on it."""
        if plan is None:
            return (f"about {need_gb} GB VRAM" if need_gb else "–"), "muted"
        if plan.verdict == "fits":
            return "fits your card", "hint"
        if plan.verdict == "adjusted":
            return "fits, with lower-memory settings", "hint"
        return (f"needs about {plan.needs_gb:.0f} GB" if plan.needs_gb else "does not fit"), "error"

    def _show_engines(self, report) -> None:
        for item in report:
            ok = item.installed and item.environment_ok and item.matches_pin
            self.engine_labels[item.name].setText("installed" if ok else ("needs repair" if item.installed
                                                                            else "not installed"))
            self.engine_labels[item.name].setToolTip(item.detail)
            self.install_buttons[item.name].setText("Repair" if item.installed and not ok else "Install")
            self.install_buttons[item.name].setVisible(not ok)

    # actions -----------------------------------------------------------------------------------------------
    def install(self, name: str) -> None:
        install_engine(self, self.ctx, name, on_finished=lambda _ok: self.refresh())

    def _model_changed(self) -> None:
        from isengard_desktop.core.models.inventory import production_model_ready

        if production_model_ready(self.ctx.volume, self.ctx.extra_model_dirs()):
            self.continue_button.setProperty("primary", True)
            self.continue_button.style().polish(self.continue_button)
            self.footer_note.setText("The base model is here. Continue to create a character and train.")

    def _finish(self, how: str) -> None:
        from isengard_desktop.storage import settings as settings_store

        with correlation("first_run_finished", how=how):
            settings_store.update(self.ctx.volume.settings_path, self.ctx.settings, first_run_done=True)
        self.finished.emit(how)
