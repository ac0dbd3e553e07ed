"""The Training and Jobs tabs through a whole tiny run on the built-in engine (fast-test mode)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from PySide6.QtCore import Qt

from isengard_desktop.jobs import protocol

LEFT = Qt.MouseButton.LeftButton


def prepare(qtbot, window, ctx, photos: Path) -> None:
    character = ctx.characters.create("Ada Lovelace", "ohwx_ada")
    with qtbot.waitSignal(window.characters.import_finished, timeout=60_000):
        window.characters.import_paths(character.id, [photos])
    window.training.refresh()


def set_advanced(tab, steps: int, every: int) -> None:
    form = tab.form
    form.advanced.setChecked(True)
    form.steps.setValue(steps)
    form.save_every.setValue(every)
    form.sample_every.setValue(every)


def click_start(qtbot, window, tab) -> str:
    """Press Start training on the Training tab, as a person does; returns the job it started."""
    window.tabs.setCurrentWidget(tab)
    before = tab.job_id
    qtbot.mouseClick(tab.start_button, LEFT)
    assert tab.job_id and tab.job_id != before, tab.form.verdict.text()
    return tab.job_id


def wait_state(qtbot, ctx, job_id: str, states: tuple[str, ...]) -> None:
    qtbot.waitUntil(lambda: ctx.jobs.get(job_id).state in states, timeout=120_000)


def test_a_whole_tiny_run_from_the_training_tab(qtbot, window, ctx, photos: Path):
    prepare(qtbot, window, ctx, photos)
    tab = window.training
    set_advanced(tab, steps=12, every=6)
    assert tab.start_button.isEnabled(), tab.form.verdict.text()
    assert "Ready" in tab.form.verdict.text()
    job_id = click_start(qtbot, window, tab)
    wait_state(qtbot, ctx, job_id, ("succeeded", "failed"))
    qtbot.waitUntil(lambda: "LoRA saved" in tab.result.text(), timeout=10_000)
    assert tab.progress.value() == 12 and tab.progress.maximum() == 12
    assert len(tab.chart.steps) == 12 and tab.chart.losses[-1] > 0
    assert tab.samples.count() >= 2 and tab.samples.item(0).text() == "step 12"  # newest first
    assert any(job_id in tab.runs.item(i).text() and "LoRA" in tab.runs.item(i).text() for i in range(tab.runs.count()))
    qtbot.waitUntil(lambda: "1 LoRA" in next(iter(window.characters.cards.values())).character.lora_state)

    jobs = window.jobs
    jobs.reload()
    jobs.table.selectRow(0)
    text = jobs.log_view.toPlainText()
    assert "worker_started" in text and "training_finished" in text
    assert ctx.jobs.get(job_id).correlation_id in jobs.status.text()
    jobs.level.setCurrentText("error")
    assert "worker_started" not in jobs.log_view.toPlainText()


def test_cancel_and_resume_from_the_tab(qtbot, window, ctx, photos: Path):
    prepare(qtbot, window, ctx, photos)
    tab = window.training
    set_advanced(tab, steps=3000, every=1000)
    job_id = click_start(qtbot, window, tab)
    qtbot.waitUntil(lambda: ctx.jobs.get(job_id).progress.get("step", 0) > 0 or tab.progress.value() > 0,
                    timeout=60_000)
    assert tab.cancel_button.isEnabled()
    qtbot.mouseClick(tab.cancel_button, LEFT)
    wait_state(qtbot, ctx, job_id, ("cancelled",))
    qtbot.waitUntil(tab.resume_button.isEnabled, timeout=10_000)
    assert list((ctx.jobs.job_dir(ctx.jobs.get(job_id)) / "checkpoints").iterdir()), "cancel saves a checkpoint"
    qtbot.mouseClick(tab.resume_button, LEFT)
    wait_state(qtbot, ctx, job_id, ("succeeded", "failed"))
    assert ctx.jobs.get(job_id).state == "succeeded"


def test_debug_bundle_has_the_job_log_and_no_secret(qtbot, window, ctx, photos: Path, tmp_path: Path):
    prepare(qtbot, window, ctx, photos)
    tab = window.training
    set_advanced(tab, steps=4, every=4)
    job_id = click_start(qtbot, window, tab)
    wait_state(qtbot, ctx, job_id, ("succeeded", "failed"))
    job_log = ctx.jobs.job_dir(ctx.jobs.get(job_id)) / protocol.LOG_FILE
    with open(job_log, "a", encoding="utf-8") as handle:
        handle.write('{"event": "oops", "detail": "token hf_abcdefghijklmnopqrstuvwxyz leaked"}\n')
    comfyui_log = ctx.volume.logs_dir / "comfyui.log"
    comfyui_log.write_text("x" * 3_000_000 + "\nFailed to load hf_abcdefghijklmnopqrstuvwxyz.safetensors\n")
    window.jobs.reload()
    window.jobs.table.selectRow(0)
    bundle = window.jobs.export_bundle(tmp_path / "bundle.zip")
    with zipfile.ZipFile(bundle) as archive:
        names = archive.namelist()
        assert "environment.json" in names and "job/job.log" in names
        assert not any(name.endswith((".pt", ".safetensors")) for name in names)
        content = archive.read("job/job.log").decode()
        comfyui = archive.read("logs/comfyui.log").decode()
    assert len(comfyui) < 2_200_000 and comfyui.rstrip().endswith("[redacted].safetensors")
    assert "hf_abcdefghijklmnopqrstuvwxyz" not in content and "[redacted]" in content


def test_the_preset_says_the_gpu_memory_of_the_chosen_engine(qtbot, window, ctx):
    form = window.training.form
    form.refresh()
    form.preset.setFocus()
    while form.preset.currentData() != "quick":  # as a person does: arrow keys on the preset box
        qtbot.keyClick(form.preset, Qt.Key.Key_Up)
    assert form.engine.currentData() == "diffusers"  # the engine that runs here without an install
    assert "Needs about 12 GB of GPU memory with this engine" in form.preset_info.text()
    qtbot.keyClick(form.preset, Qt.Key.Key_Down)  # Balanced
    assert "Needs about 16 GB" in form.preset_info.text()
