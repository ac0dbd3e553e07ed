"""What got in a newcomer's way (issue 15), driven as a person does: Generate's buttons in view at the default
size, the LoRA just trained offered with its own trigger word, past runs of the chosen character following
their progress, import summaries in good English, and a Dataset grid whose first row is not cut off."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QPoint, Qt

from tests.ui.test_characters_and_dataset import rows_become


def click(qtbot, widget) -> None:
    qtbot.mouseClick(widget, Qt.MouseButton.LeftButton)


def open_tab(qtbot, window, tab) -> None:
    bar = window.tabs.tabBar()
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.tabRect(window.tabs.indexOf(tab)).center())
    assert window.tabs.currentWidget() is tab


def fully_visible(widget) -> bool:
    """Shown and not clipped by a scroll area or the window's edge."""
    return widget.isVisible() and widget.visibleRegion().boundingRect() == widget.rect()


def import_into(qtbot, window, character_id: int, paths: list[Path]):
    with qtbot.waitSignal(window.characters.import_finished, timeout=60_000) as finished:
        window.characters.import_paths(character_id, paths)
    return finished.args[0]


def start_run(qtbot, window, character_id: int, steps: int) -> str:
    tab = window.training
    tab.refresh()
    tab.form.character.setCurrentIndex(tab.form.character.findData(character_id))
    tab.form.advanced.setChecked(True)
    tab.form.steps.setValue(steps)
    tab.form.save_every.setValue(steps)
    tab.form.sample_every.setValue(steps)
    assert tab.start_button.isEnabled(), tab.form.verdict.text()
    click(qtbot, tab.start_button)
    assert tab.job_id is not None
    return tab.job_id


@pytest.fixture
def styled(qapp):
    """The app's own style sheet, as the window has it (its paddings make the form taller than the tab)."""
    from isengard_desktop.base.resources import resource_path

    qapp.setStyleSheet(resource_path("style.qss").read_text())
    yield
    qapp.setStyleSheet("")


def test_generate_and_cancel_and_progress_stay_in_view_at_the_default_size(qtbot, styled, window):
    assert (window.width(), window.height()) == (1240, 800)
    tab = window.generate
    open_tab(qtbot, window, tab)
    qtbot.waitUntil(lambda: tab.form.engine.count() > 0, timeout=20_000)
    scrollbar = tab.form_scroll.verticalScrollBar()
    qtbot.waitUntil(lambda: scrollbar.maximum() > 0, timeout=5_000)  # the form is taller than its room: it scrolls
    for position in (scrollbar.minimum(), scrollbar.maximum()):
        scrollbar.setValue(position)
        for widget in (tab.generate_button, tab.cancel_button, tab.progress):
            assert fully_visible(widget), (widget, position)


@pytest.mark.slow  # a tiny training run, ~20 s here
def test_after_training_generate_offers_the_new_lora_with_its_trigger_word(qtbot, window, ctx, photos):
    form = window.generate.form
    assert "ohwx" not in form.prompt.placeholderText()  # no character yet: no made-up trigger word
    assert "a person" in form.prompt.placeholderText()
    grace = ctx.characters.create("Grace Hopper", "gr4ce_h")
    ada = ctx.characters.create("Ada Lovelace", "lvl_ada")
    import_into(qtbot, window, ada.id, [photos])
    job_id = start_run(qtbot, window, ada.id, steps=4)
    qtbot.waitUntil(lambda: ctx.jobs.get(job_id).state in ("succeeded", "failed"), timeout=120_000)
    assert ctx.jobs.get(job_id).state == "succeeded", ctx.jobs.get(job_id).error

    tab = window.generate
    open_tab(qtbot, window, tab)  # no "+ Add a character's LoRA": the new LoRA is already chosen
    qtbot.waitUntil(lambda: len(form.lora_rows) == 1, timeout=20_000)
    offered = form.lora_rows[0].combo.currentData()
    assert offered.character_id == ada.id and offered.path.name.startswith("ada_lovelace-")
    assert "lvl_ada" in form.prompt.placeholderText() and grace.trigger_word not in form.prompt.placeholderText()

    form.engine.setCurrentIndex(form.engine.findData("comfyui"))  # listed, even where it is not installed
    assert "do not fit; use them with Built-in (diffusers)" in form.lora_note.text()  # the engines declare it
    form.engine.setCurrentIndex(form.engine.findData("diffusers"))
    assert form.lora_note.text() == ""
    qtbot.keyClicks(form.prompt, "a photo of lvl_ada")
    form.steps.setValue(2)
    qtbot.waitUntil(lambda: tab.form.toggle_notes["upscale"].text() != "checking…", timeout=20_000)
    form.engine.setCurrentIndex(form.engine.findData("diffusers"))
    click(qtbot, tab.generate_button)
    qtbot.waitUntil(lambda: tab.status.text() == "Done.", timeout=120_000)
    newest = ctx.jobs.list(kind="generation")[0]
    assert [Path(lora["path"]).name for lora in newest.params["spec"]["loras"]] == [offered.path.name]


@pytest.mark.slow  # a tiny training run, ~20 s here
def test_past_runs_are_the_chosen_characters_and_follow_the_running_job(qtbot, window, ctx, photos):
    ada = ctx.characters.create("Ada Lovelace", "lvl_ada")
    bob = ctx.characters.create("Bob", "ohwx_bob")
    import_into(qtbot, window, ada.id, [photos])
    import_into(qtbot, window, bob.id, [photos / "face 0.png", photos / "face 1.png"])
    tab = window.training
    open_tab(qtbot, window, tab)
    ada_run = start_run(qtbot, window, ada.id, steps=4)
    qtbot.waitUntil(lambda: ctx.jobs.get(ada_run).state == "succeeded", timeout=120_000)

    bob_run = start_run(qtbot, window, bob.id, steps=3000)
    qtbot.waitUntil(lambda: tab.progress.value() >= 5, timeout=60_000)
    rows = [tab.runs.item(i).text() for i in range(tab.runs.count())]
    assert len(rows) == 1 and rows[0].startswith(bob_run)  # Ada's run is not under Bob
    # The row says what the bar says, while the run goes on (it stayed at 0/N before).
    assert f"running · {tab.progress.value()}/3000" in tab.runs.item(0).text()

    tab.form.character.setCurrentIndex(tab.form.character.findData(ada.id))
    rows = [tab.runs.item(i).text() for i in range(tab.runs.count())]
    assert len(rows) == 1 and rows[0].startswith(ada_run) and "LoRA:" in rows[0]

    tab.form.character.setCurrentIndex(tab.form.character.findData(bob.id))
    tab.show_job(bob_run)
    click(qtbot, tab.cancel_button)
    qtbot.waitUntil(lambda: ctx.jobs.get(bob_run).state == "cancelled", timeout=60_000)
    qtbot.waitUntil(lambda: "cancelled" in tab.runs.item(0).text(), timeout=10_000)


def test_import_summary_speaks_in_singular_and_plural(qtbot, window, ctx, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.new("RGB", (640, 700), (200, 90, 40)).save(folder / "big.png")
    Image.new("RGB", (120, 100), (20, 90, 140)).save(folder / "small.png")
    ada = ctx.characters.create("Ada Lovelace", "lvl_ada")
    import_into(qtbot, window, ada.id, [folder])
    text = window.characters.last_summary.text()
    assert "2 photos added." in text
    assert "1 is smaller than 512 px and is flagged as too small for training." in text
    import_into(qtbot, window, ada.id, [folder / "big.png"])
    text = window.characters.last_summary.text()
    assert "0 photos added." in text and "1 was already there and was skipped." in text
    import_into(qtbot, window, ada.id, [folder])
    assert "2 were already there and were skipped." in window.characters.last_summary.text()


def test_the_dataset_grids_first_row_is_not_cut_off(qtbot, window, ctx, photos):
    ada = ctx.characters.create("Ada Lovelace", "lvl_ada")
    import_into(qtbot, window, ada.id, [photos])
    tab = window.dataset
    open_tab(qtbot, window, tab)
    rows_become(qtbot, tab, 9)
    view = tab.view
    first = view.visualRect(tab.model.index(0))
    corner = view.viewport().mapTo(view, first.topLeft())
    inside = view.contentsRect().topLeft()
    # As far from the frame's top as from its left side (it touched the rounded top edge before).
    assert corner - inside == QPoint(corner.x() - inside.x(), corner.x() - inside.x())
    assert corner.y() - inside.y() >= 4


def test_the_window_reopens_on_the_tab_it_was_left_on(qtbot, window, ctx) -> None:
    from isengard_desktop.storage import settings as settings_store
    from isengard_desktop.ui.main_window import MainWindow

    open_tab(qtbot, window, window.generate)
    window.close()
    assert settings_store.load(ctx.volume.settings_path).last_tab == "Generate"
    again = MainWindow(ctx)
    qtbot.addWidget(again)
    again.show()
    assert again.tabs.currentWidget() is again.generate
    again.close()
