"""The Generate tab's form: engine, prompt, LoRAs with strengths, aspect preset, steps, guidance, seed,
batch count and the Advanced toggles, each toggle showing whether it can run here and, if not, why."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QRegularExpression, Qt, Signal
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engines.flux_base import TINY_MODEL
from engines.interface import ASPECT_PRESETS, Availability, BaseModel, Toggle
from engines.registry import EngineInfo
from isengard_desktop.core import generation
from isengard_desktop.ui.widgets import button, label

PLACEHOLDER = "a portrait photo of {who} in a sunlit garden, 85 mm"


class LoraRow(QWidget):
    """One LoRA: which (a character's trained LoRA) and how strongly."""

    removed = Signal(object)

    def __init__(self, options: list[generation.LoraOption]) -> None:
        super().__init__()
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.combo = QComboBox()
        # A long label (character, date, engine) must not widen the form past its panel.
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(18)
        for option in options:
            self.combo.addItem(option.label, option)
            self.combo.setItemData(self.combo.count() - 1, f"{option.path.name}\nbase model: {option.base_model}",
                                   Qt.ItemDataRole.ToolTipRole)
        self.strength = QDoubleSpinBox()
        self.strength.setRange(-2.0, 2.0)
        self.strength.setSingleStep(0.05)
        self.strength.setValue(1.0)
        self.strength.setToolTip("0 = no effect, 1 = as trained")
        remove = QPushButton("Remove")
        remove.setToolTip("Generate without this LoRA")
        remove.clicked.connect(lambda: self.removed.emit(self))
        row.addWidget(self.combo, 1)
        row.addWidget(self.strength)
        row.addWidget(remove)

    def value(self) -> tuple[generation.LoraOption, float]:
        return self.combo.currentData(), self.strength.value()


class GenerateForm(QWidget):
    def __init__(self, mode: str, toggles: list[Toggle] | None = None,
                 fast_test_model: Callable[[str], BaseModel | None] | None = None) -> None:
        """``toggles``: the Advanced toggles to offer, by default every one an image engine declares.
        ``fast_test_model``: the base model an engine declares for fast-test mode (the tab asks the engine)."""
        super().__init__()
        self.mode = mode
        self.fast_test_model = fast_test_model
        if toggles is None:
            from engines.registry import toggles as declared

            toggles = declared()
        self.options: list[generation.LoraOption] = []
        self.triggers: dict[int, str] = {}  # character id -> trigger word, for the prompt's placeholder
        self.readiness: dict[str, Availability] = {}
        self.toggle_files: dict[str, str] = {}
        outer = QVBoxLayout(self)
        form = QFormLayout()
        self.engine = QComboBox()
        self.engine_note = label("", "muted")
        form.addRow("Engine", self.engine)
        form.addRow("", self.engine_note)
        self.run_on = QComboBox()  # filled by the tab (ui/training_form.py fill_run_on): this computer or a remote
        form.addRow("Run on", self.run_on)
        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText(PLACEHOLDER.format(who="a person"))
        self.prompt.setFixedHeight(90)
        form.addRow("Prompt", self.prompt)

        self.lora_box = QVBoxLayout()
        self.lora_rows: list[LoraRow] = []
        self.add_lora = button("+ Add a character's LoRA")
        self.add_lora.clicked.connect(lambda: self.add_lora_row())
        self.lora_note = label("", "muted")
        loras = QVBoxLayout()
        loras.addLayout(self.lora_box)
        loras.addWidget(self.add_lora)
        loras.addWidget(self.lora_note)
        form.addRow("LoRAs", loras)

        aspects = QHBoxLayout()
        self.aspect_group = QButtonGroup(self)
        self.aspect_buttons: dict[str, QPushButton] = {}
        for name, (width, height) in ASPECT_PRESETS.items():
            choice = QPushButton(name)
            choice.setCheckable(True)
            choice.setToolTip(f"{width}×{height}")
            choice.setObjectName("aspect")
            choice.setMinimumSize(44, 30)
            self.aspect_group.addButton(choice)
            self.aspect_buttons[name] = choice
            aspects.addWidget(choice)
        self.aspect_buttons["1:1"].setChecked(True)
        form.addRow("Aspect", aspects)

        self.steps = QSpinBox()
        self.steps.setRange(*generation.LIMITS["steps"])
        self.steps.setValue(generation.FAST_TEST_STEPS if mode == "fast-test" else generation.DEFAULTS["steps"])
        self.guidance = QDoubleSpinBox()
        self.guidance.setRange(*generation.LIMITS["guidance"])
        self.guidance.setSingleStep(0.5)
        self.guidance.setValue(generation.DEFAULTS["guidance"])
        numbers = QHBoxLayout()
        numbers.addWidget(self.steps)
        numbers.addWidget(label("Guidance", wrap=False))
        numbers.addWidget(self.guidance)
        form.addRow("Steps", numbers)

        seed_row = QHBoxLayout()
        self.random_seed = QCheckBox("Random")
        self.random_seed.setChecked(True)
        self.seed = QLineEdit()
        self.seed.setValidator(QRegularExpressionValidator(QRegularExpression(r"\d{1,10}"), self.seed))
        self.seed.setPlaceholderText("random each time")
        self.seed.setEnabled(False)
        dice = QPushButton("Dice")
        dice.setToolTip("Roll a new seed and keep it (for variations of one picture)")
        dice.clicked.connect(self.roll_seed)
        self.random_seed.toggled.connect(lambda on: self.seed.setEnabled(not on))
        seed_row.addWidget(self.random_seed)
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(dice)
        form.addRow("Seed", seed_row)
        self.batch = QSpinBox()
        self.batch.setRange(*generation.LIMITS["batch_count"])
        form.addRow("Images", self.batch)
        outer.addLayout(form)

        self.advanced = QGroupBox("Advanced")
        advanced = QVBoxLayout(self.advanced)
        self.toggles: dict[str, QCheckBox] = {}
        self.toggle_notes: dict[str, Any] = {}
        self.toggle_pickers: dict[str, QPushButton] = {}
        for toggle in toggles:
            name, title, needs = toggle.name, toggle.title, toggle.asks_for
            line = QHBoxLayout()
            box = QCheckBox(title)
            box.setEnabled(False)
            self.toggles[name] = box
            line.addWidget(box)
            if needs:
                picker = QPushButton(f"Choose {needs}…")
                picker.setEnabled(False)
                picker.clicked.connect(lambda _=False, n=name, w=needs: self._pick_file(n, w))
                box.toggled.connect(picker.setEnabled)
                self.toggle_pickers[name] = picker
                line.addWidget(picker)
            line.addStretch(1)
            advanced.addLayout(line)
            note = label("checking…", "muted")
            self.toggle_notes[name] = note
            advanced.addWidget(note)
        self.check_again = button("Check again")
        self.check_again.setToolTip("Look again for the models and node packs the toggles need")
        advanced.addWidget(self.check_again, alignment=Qt.AlignmentFlag.AlignRight)
        outer.addWidget(self.advanced)

    # engines and readiness -------------------------------------------------------------------------
    def set_engines(self, infos: list[EngineInfo], preferred: str) -> None:
        current = self.engine.currentData() or preferred
        engines = {info.name: info.availability for info in infos}
        self.engine_titles = {info.name: info.title for info in infos}
        self.engine_toggles = {info.name: info.traits.toggle_names for info in infos}
        self.engine.blockSignals(True)
        self.engine.clear()
        for info in infos:
            name, availability = info.name, info.availability
            suffix = "" if availability.available else " — not ready"
            self.engine.addItem(info.title + suffix, name)
            index = self.engine.count() - 1
            self.engine.setItemData(index, availability.reason or "Ready.", 3)  # 3 = ToolTipRole
        names = [self.engine.itemData(i) for i in range(self.engine.count())]
        ready = [n for n in names if engines[n].available]
        chosen = current if current in ready else (preferred if preferred in ready else (ready or names or [""])[0])
        if chosen in names:
            self.engine.setCurrentIndex(names.index(chosen))
        self.engine.blockSignals(False)
        self.engine_availability = engines
        self.show_engine_note()

    def show_engine_note(self) -> None:
        name = self.engine.currentData()
        availability = getattr(self, "engine_availability", {}).get(name)
        self.engine_note.setText("" if availability is None or availability.available else availability.reason)
        self.show_lora_note()

    def show_lora_note(self) -> None:
        if not self.options:
            self.lora_note.setText("No trained LoRA yet: train a character on the Training tab.")
        else:
            self.lora_note.setText(self._fast_test_mismatch())

    def _fast_test_mismatch(self) -> str:
        """In fast-test mode the LoRAs trained here are tiny-FLUX LoRAs: a sentence when the chosen engine's declared
        fast-test model is another one (ComfyUI's tiny SD1.5-shaped checkpoint: ComfyUI fixes FLUX's widths)."""
        engine = self.engine.currentData()
        if self.mode != "fast-test" or not engine or self.fast_test_model is None:
            return ""
        model = self.fast_test_model(engine)
        if model is None or model.id == TINY_MODEL:
            return ""
        titles = getattr(self, "engine_titles", {})
        fitting = [titles[name] for name in titles if getattr(self.fast_test_model(name), "id", "") == TINY_MODEL]
        instead = f"; use them with {' or '.join(fitting)}" if fitting else ""
        return (f"Fast-test: {titles.get(engine, engine)} uses the {model.name}, which the tiny FLUX LoRAs trained "
                f"here do not fit{instead}.")

    def set_readiness(self, readiness: dict[str, Availability] | None) -> None:
        """Each toggle's verdict for the chosen engine; None means "checking again", which keeps what the person
        ticked (ComfyUI's state changes and "Check again" used to untick every toggle). A toggle the engine does not
        declare says which engine offers it."""
        self.readiness = readiness or {}
        engine = self.engine.currentData()
        titles = getattr(self, "engine_titles", {})
        offers = getattr(self, "engine_toggles", {})
        for name, box in self.toggles.items():
            if readiness is not None and name not in offers.get(engine, ()):
                others = [titles[n] for n, names in offers.items() if name in names]
                state = Availability(False, f"The {titles.get(engine, engine)} engine does not offer this"
                                            + (f"; choose {' or '.join(others)} to use it." if others else "."))
            else:
                state = (readiness or {}).get(name, Availability(False, "Checking…"))
            box.setEnabled(state.available)
            if not state.available and readiness is not None:
                box.setChecked(False)
            self.toggle_notes[name].setText(state.reason or "Ready.")  # a ready toggle says which model it uses

    def set_lora_options(self, options: list[generation.LoraOption], triggers: dict[int, str] | None = None,
                         offer: int | None = None) -> None:
        """The LoRAs the picker offers (newest first). The person's choices are kept while their files exist;
        ``offer``, a character just trained, gets a row with its newest LoRA (replacing an older one of theirs)."""
        kept = [row.value() for row in self.lora_rows if row.combo.currentData() is not None]
        for row in list(self.lora_rows):
            self._remove_row(row)
        self.options = options
        if triggers is not None:
            self.triggers = triggers
        by_path = {option.path: option for option in options}
        newest = next((option for option in options if offer is not None and option.character_id == offer), None)
        for option, strength in kept:
            if option.path in by_path and (newest is None or option.character_id != newest.character_id):
                self.add_lora_row(by_path[option.path], strength)
        if newest is not None:
            self.add_lora_row(newest)
        self.add_lora.setEnabled(bool(options))
        self.show_lora_note()
        self.update_placeholder()

    def update_placeholder(self) -> None:
        """An example prompt with a trigger word that exists here: the first chosen LoRA's character, else the
        newest LoRA's, else any character's; a neutral example when there is no character at all."""
        chosen = [row.combo.currentData() for row in self.lora_rows if row.combo.currentData() is not None]
        candidates = [option.character_id for option in chosen + self.options] + list(self.triggers)
        who = next((self.triggers[cid] for cid in candidates if cid in self.triggers), "a person")
        self.prompt.setPlaceholderText(PLACEHOLDER.format(who=who))

    def add_lora_row(self, option: generation.LoraOption | None = None, strength: float = 1.0) -> LoraRow:
        row = LoraRow(self.options)
        if option is not None:
            for i in range(row.combo.count()):
                if row.combo.itemData(i).path == option.path:
                    row.combo.setCurrentIndex(i)
        row.strength.setValue(strength)
        row.removed.connect(self._remove_row)
        row.combo.currentIndexChanged.connect(self.update_placeholder)
        self.lora_rows.append(row)
        self.lora_box.addWidget(row)
        self.update_placeholder()
        return row

    def _remove_row(self, row: LoraRow) -> None:
        self.lora_rows.remove(row)
        row.setParent(None)
        row.deleteLater()
        self.update_placeholder()

    def _pick_file(self, toggle: str, what: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, f"Choose the {what}", str(Path.home()),
                                              "Images (*.png *.jpg *.jpeg *.webp)")
        if path:
            self.toggle_files[toggle] = path
            self.toggle_pickers[toggle].setText(Path(path).name)

    def roll_seed(self) -> None:
        self.random_seed.setChecked(False)
        self.seed.setText(str(generation.random_seed()))

    # values ----------------------------------------------------------------------------------------
    def aspect(self) -> str:
        checked = self.aspect_group.checkedButton()
        return checked.text() if checked else "1:1"

    def values(self) -> dict[str, Any]:
        """What the person chose, for ``generation.build_request``."""
        advanced: dict[str, dict[str, Any]] = {}
        for name, box in self.toggles.items():
            if box.isChecked():
                options: dict[str, Any] = {}
                if name in self.toggle_files:
                    options["image"] = self.toggle_files[name]
                advanced[name] = options
        seed = None if self.random_seed.isChecked() or not self.seed.text() else int(self.seed.text())
        return {
            "prompt": self.prompt.toPlainText(),
            "loras": [row.value() for row in self.lora_rows if row.combo.currentData() is not None],
            "aspect": self.aspect(),
            "steps": self.steps.value(),
            "guidance": self.guidance.value(),
            "seed": seed,
            "batch_count": self.batch.value(),
            "advanced": advanced,
        }

    def load(self, params: dict[str, Any]) -> None:
        """Fill the form from a past generation's parameters ("Reuse parameters")."""
        self.prompt.setPlainText(params.get("prompt") or "")
        aspect = params.get("aspect") or "1:1"
        if aspect in self.aspect_buttons:
            self.aspect_buttons[aspect].setChecked(True)
        self.steps.setValue(int(params.get("steps") or self.steps.value()))
        self.guidance.setValue(float(params.get("guidance") or self.guidance.value()))
        if params.get("seed") is not None:
            self.random_seed.setChecked(False)
            self.seed.setText(str(params["seed"]))
        self.batch.setValue(1)
        for row in list(self.lora_rows):
            self._remove_row(row)
        by_path = {str(option.path): option for option in self.options}
        for lora in params.get("loras") or []:
            option = by_path.get(str(lora.get("path")))
            if option is not None:
                self.add_lora_row(option, float(lora.get("strength", 1.0)))
