"""The Generate tab on the built-in engine (fast-test): a LoRA from the picker, progress, the gallery,
Reuse parameters, a gallery that survives a restart, and honest Advanced toggles."""

from __future__ import annotations

from pathlib import Path

from isengard_desktop.core.training import build_spec
from isengard_desktop.ui.gallery import RowRole
from tests.ui.test_training_and_jobs import prepare


def _train_lora(qtbot, window, ctx, photos: Path) -> None:
    prepare(qtbot, window, ctx, photos)
    character = ctx.characters.resolve("Ada Lovelace")
    spec, _check = build_spec(ctx.volume, ctx.dataset, character, ctx.mode, "quick",
                              {"steps": 4, "save_every": 4, "sample_every": 100})
    job = ctx.jobs.submit("training", "diffusers", spec.to_dict(), character.id)
    assert ctx.jobs.wait(job.id, timeout=120).state == "succeeded"


def _ready(qtbot, tab) -> None:
    qtbot.waitUntil(lambda: tab.form.engine.count() > 0 and tab.form.toggle_notes["upscale"].text() != "checking…",
                    timeout=20_000)


def test_generate_with_a_lora_into_the_gallery_and_reuse(qtbot, window, ctx, photos: Path):
    _train_lora(qtbot, window, ctx, photos)
    tab = window.generate
    tab.refresh()
    qtbot.waitUntil(lambda: bool(tab.form.options), timeout=20_000)
    _ready(qtbot, tab)
    index = [tab.form.engine.itemData(i) for i in range(tab.form.engine.count())].index("diffusers")
    tab.form.engine.setCurrentIndex(index)
    form = tab.form
    form.prompt.setPlainText("a photo of ohwx_ada smiling")
    qtbot.waitUntil(lambda: len(form.lora_rows) == 1, timeout=20_000)  # the LoRA just trained is offered
    row = form.lora_rows[0]
    row.strength.setValue(0.8)
    form.aspect_buttons["3:4"].click()
    form.steps.setValue(3)
    form.batch.setValue(2)
    form.roll_seed()
    seed = int(form.seed.text())
    tab.generate_button.click()
    assert not tab.generate_button.isEnabled() and tab.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: tab.status.text() == "Done.", timeout=120_000)
    assert tab.progress.value() == tab.progress.maximum() == 6
    assert tab.model.rowCount() == 2
    newest = tab.model.index(0).data(RowRole)
    assert newest.params["seed"] == seed + 1 and newest.params["aspect"] == "3:4"
    assert newest.params["loras"][0]["strength"] == 0.8
    assert f"Seed: {seed + 1}" in tab.details.text()  # the newest image is selected and described

    form.prompt.setPlainText("something else")
    form.random_seed.setChecked(True)
    for extra in list(form.lora_rows):
        form._remove_row(extra)
    tab.view.setCurrentIndex(tab.model.index(1))
    tab.reuse_button.click()
    assert form.prompt.toPlainText() == "a photo of ohwx_ada smiling"
    assert not form.random_seed.isChecked() and form.seed.text() == str(seed)
    assert form.aspect() == "3:4" and len(form.lora_rows) == 1 and form.lora_rows[0].strength.value() == 0.8

    from isengard_desktop.ui.generate_tab import GenerateTab  # a restart: the gallery comes from the volume

    again = GenerateTab(ctx, window.bridge)
    qtbot.addWidget(again)
    qtbot.waitUntil(lambda: again.model.rowCount() == 2, timeout=20_000)
    again.shutdown()


def test_advanced_toggles_say_why_they_are_off_and_bad_input_is_explained(qtbot, window, ctx):
    tab = window.generate
    _ready(qtbot, tab)
    names = [tab.form.engine.itemData(i) for i in range(tab.form.engine.count())]
    tab.form.engine.setCurrentIndex(names.index("diffusers"))
    qtbot.waitUntil(lambda: "ComfyUI" in tab.form.toggle_notes["upscale"].text(), timeout=20_000)
    for name, box in tab.form.toggles.items():
        assert not box.isEnabled(), name
        assert "does not offer this; choose ComfyUI (embedded) to use it" in tab.form.toggle_notes[name].text()
    assert "No trained LoRA yet" in tab.form.lora_note.text() and not tab.form.add_lora.isEnabled()
    tab.form.prompt.setPlainText("   ")
    tab.generate_button.click()
    assert "Write a prompt" in tab.status.text() and tab.generate_button.isEnabled()
    assert ctx.jobs.list(kind="generation") == []
