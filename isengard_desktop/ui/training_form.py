"""The Training tab's set-up form: character, base model, preset, engine, the Advanced panel, pre-flight."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QPlainTextEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from isengard_desktop.base.errors import IsengardError
from isengard_desktop.base.mode import FAST_TEST
from isengard_desktop.context import AppContext
from isengard_desktop.core.presets import LIMITS, RESOLUTION_LIMITS, all_presets, load_preset
from isengard_desktop.ui.widgets import label


def fill_run_on(combo: QComboBox, ctx: AppContext, choices: list[tuple[str, str]] | None = None) -> None:
    """The "Run on" picker (Training and Generate): this computer, then each registered remote (``choices``, read
    now when not given); keeps the choice."""
    if choices is None:
        from isengard_desktop.core.remote.jobs import run_on_choices

        choices = run_on_choices(ctx.volume)
    chosen = combo.currentData()
    combo.blockSignals(True)
    combo.clear()
    for text, value in choices:
        combo.addItem(text, value)
    combo.setCurrentIndex(max(combo.findData(chosen), 0))
    combo.setToolTip("Where the job runs: this computer, or a remote GPU machine added in Settings → Remotes "
                     "(its photos and settings are sent there, the results come back here).")
    combo.blockSignals(False)


def chosen_remote(combo: QComboBox) -> str | None:
    """The remote a "Run on" picker names, or None for this computer."""
    from isengard_desktop.core.remote.jobs import is_remote

    value = combo.currentData()
    return value if is_remote(value) else None


def checking(combo: QComboBox, text: str) -> None:
    """``combo`` says what it is waiting for: one item with no data, not selectable (nothing can start on it)."""
    combo.blockSignals(True)
    combo.clear()
    combo.addItem(text)
    combo.model().item(0).setEnabled(False)
    combo.blockSignals(False)


def _spin(low: int, high: int, step: int = 1) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setSingleStep(step)
    return box


class TrainingForm(QWidget):
    changed = Signal()

    def __init__(self, ctx: AppContext, later: bool = False) -> None:
        """``later``: the engines, base models and remotes are read only when load_later() is called (the window
        does it after its first frame: importing and checking each engine cost that frame ~0.1 s, issue 14)."""
        super().__init__()
        self.ctx = ctx
        self.pending = later  # the lists are not read yet: the form says so, and nothing can start
        self.character = QComboBox()
        self.base_model = QComboBox()
        self.preset = QComboBox()
        for preset in all_presets():
            self.preset.addItem(preset.label, preset.name)
        self.preset.setCurrentIndex(1)
        self.preset_info = label("", "muted")
        self.engine = QComboBox()
        form = QFormLayout()
        form.addRow("Character", self.character)
        form.addRow("Base model", self.base_model)
        form.addRow("Preset", self.preset)
        form.addRow("", self.preset_info)
        form.addRow("Engine", self.engine)
        self.run_on = QComboBox()
        form.addRow("Run on", self.run_on)
        self.advanced = QGroupBox("Advanced (overrides the preset)")
        self.advanced.setCheckable(True)
        self.advanced.setChecked(False)
        self.advanced_body = QWidget()
        adv = QFormLayout(self.advanced_body)
        QVBoxLayout(self.advanced).addWidget(self.advanced_body)
        self.advanced_body.setVisible(False)
        self.advanced.toggled.connect(self.advanced_body.setVisible)
        # The ranges are core's checked limits (presets.LIMITS): the fields cannot hold what a run would refuse.
        self.steps = _spin(*LIMITS["steps"], 50)
        self.learning_rate = QDoubleSpinBox()
        self.learning_rate.setDecimals(6)
        self.learning_rate.setRange(*LIMITS["learning_rate"])
        self.learning_rate.setSingleStep(0.00005)
        self.rank, self.alpha = _spin(*LIMITS["rank"]), _spin(*LIMITS["alpha"])
        self.resolution = _spin(*RESOLUTION_LIMITS, 64)
        self.batch = _spin(*LIMITS["batch_size"])
        self.save_every, self.sample_every = _spin(*LIMITS["save_every"], 50), _spin(*LIMITS["sample_every"], 50)
        for text, widget in (("Steps", self.steps), ("Learning rate", self.learning_rate), ("Rank", self.rank),
                             ("Alpha", self.alpha), ("Batch", self.batch), ("Save every N steps", self.save_every),
                             ("Sample every N steps", self.sample_every)):
            widget.setToolTip(f"{text}: {widget.minimum():g} to {widget.maximum():g}")
        self.prompts = QPlainTextEdit()
        self.prompts.setPlaceholderText("One sample prompt per line (default: two prompts with the trigger word)")
        self.prompts.setFixedHeight(60)
        for text, widget in (("Steps", self.steps), ("Learning rate", self.learning_rate), ("Rank", self.rank),
                             ("Alpha", self.alpha), ("Resolution", self.resolution), ("Batch", self.batch),
                             ("Save every N steps", self.save_every), ("Sample every N steps", self.sample_every),
                             ("Sample prompts", self.prompts)):
            adv.addRow(text, widget)
        self.verdict = label("", "muted")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.advanced)
        layout.addWidget(self.verdict)
        self.preset.currentIndexChanged.connect(self._load_preset_values)
        for widget in (self.character, self.base_model, self.engine, self.run_on):
            widget.currentIndexChanged.connect(self.changed)
        self.engine.currentIndexChanged.connect(self._show_preset_info)
        self.advanced.toggled.connect(self.changed)
        self.refresh()
        self._load_preset_values()

    def refresh(self) -> None:
        current = self.character.currentData()
        self.character.blockSignals(True)
        self.character.clear()
        for person in self.ctx.characters.list():
            self.character.addItem(f"{person.name}  ({person.image_count} photos)", person.id)
        self.character.setCurrentIndex(max(self.character.findData(current), 0))
        self.character.blockSignals(False)
        if self.pending:
            checking(self.base_model, "checking base models…")
            checking(self.engine, "checking engines…")
            checking(self.run_on, "checking…")
        else:
            from isengard_desktop.core.engines import list_engines
            from isengard_desktop.core.training import base_models

            self._fill_base_models(base_models(self.ctx.volume, self.ctx.mode))
            self._fill_engines(list_engines(self.ctx.volume, "training"))
            fill_run_on(self.run_on, self.ctx)
        self._show_preset_info()
        self.changed.emit()

    def load_later(self, on_error=None) -> None:
        """Read the engines, base models and remotes off the event loop (a form made with ``later``); ``on_error``
        gets what went wrong (the form stays pending)."""
        from isengard_desktop.ui.bridge import run_in_background

        def lists(_progress, _cancelled):
            from isengard_desktop.core.engines import list_engines
            from isengard_desktop.core.remote.jobs import run_on_choices
            from isengard_desktop.core.training import base_models

            return (list_engines(self.ctx.volume, "training"), base_models(self.ctx.volume, self.ctx.mode),
                    run_on_choices(self.ctx.volume))

        def listed(result) -> None:
            engines, models, choices = result
            self.pending = False
            self._fill_base_models(models)
            self._fill_engines(engines)
            fill_run_on(self.run_on, self.ctx, choices)
            self._show_preset_info()
            self.changed.emit()

        if self.pending:
            run_in_background(self, lists, on_done=listed, on_error=on_error)

    def _fill_base_models(self, models) -> None:
        self.base_model.blockSignals(True)
        self.base_model.clear()
        for model in models:
            self.base_model.addItem(model.name + ("" if model.ready else " — not ready"), model)
        self.base_model.blockSignals(False)

    def _fill_engines(self, engines) -> None:
        chosen = self.engine.currentData()
        self.engine.blockSignals(True)
        self.engine.clear()
        for info in engines:
            ok = info.availability.available
            self.engine.addItem(info.title + ("" if ok else " — not available"), info.name)
            item = self.engine.model().item(self.engine.count() - 1)
            item.setEnabled(ok)
            item.setToolTip(info.availability.reason)
        ready = {info.name for info in engines if info.availability.available}
        if chosen not in ready:
            from isengard_desktop.core.engines import choose_engine

            try:  # the mode's preferred engine among those that can run here
                chosen = choose_engine("training", None, engines, self.ctx.mode)
            except IsengardError:
                chosen = None
        self.engine.setCurrentIndex(self.engine.findData(chosen) if chosen else -1)
        self.engine.blockSignals(False)

    def _load_preset_values(self) -> None:
        preset = load_preset(self.preset.currentData())
        values = preset.values(fast_test=self.ctx.mode == FAST_TEST)
        self.steps.setValue(values["steps"])
        self.learning_rate.setValue(values["learning_rate"])
        self.rank.setValue(values["rank"])
        self.alpha.setValue(values["alpha"])
        self.resolution.setValue(max(values["resolutions"]))
        self.batch.setValue(values["batch_size"])
        self.save_every.setValue(values["save_every"])
        self.sample_every.setValue(values["sample_every"])
        self._show_preset_info()
        self.changed.emit()

    def _show_preset_info(self) -> None:
        """The preset's description and the GPU memory it needs with the chosen engine (from the memory plan)."""
        name = self.preset.currentData()
        if name is None:
            return
        predicted = load_preset(name).predicted
        by_engine = predicted.get("vram_gb_by_engine", {})
        vram = by_engine.get(self.engine.currentData(), predicted.get("vram_gb", "?"))
        times = ", ".join(f"{gpu} {s:.1f} s/step" for gpu, s in predicted.get("seconds_per_step", {}).items() if s)
        if self.pending:  # the memory depends on the engine: no figure until it is known
            need = "The GPU memory it needs depends on the engine (checking the engines…)"
        else:
            need = f"Needs about {vram} GB of GPU memory with this engine"
        self.preset_info.setText(f"{load_preset(name).description}\n{need}; {times} (estimates).")
        self.preset_info.setToolTip(predicted.get("source", ""))

    def overrides(self) -> dict:
        if not self.advanced.isChecked():
            return {}
        preset = load_preset(self.preset.currentData())
        base = preset.values(fast_test=self.ctx.mode == FAST_TEST)
        # A resolution is a multiple of 16 (the spin box steps by 64 but a typed value can be anything).
        chosen = self.resolution.value() // 16 * 16
        resolutions = sorted({r for r in base["resolutions"] if r <= chosen} | {chosen})
        prompts = [line.strip() for line in self.prompts.toPlainText().splitlines() if line.strip()]
        return {"steps": self.steps.value(), "learning_rate": self.learning_rate.value(), "rank": self.rank.value(),
                "alpha": self.alpha.value(), "resolutions": resolutions, "batch_size": self.batch.value(),
                "save_every": self.save_every.value(), "sample_every": self.sample_every.value(),
                "sample_prompts": prompts or None}
