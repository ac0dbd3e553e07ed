"""The first-run page as a new user meets it: it opens a new volume, the demo leads to the tabs and is not shown
again, Settings brings it back, and a gated base model is downloaded from it (token typed inline) from a loopback
hub, after which the model counts as ready."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from isengard_desktop.context import AppContext
from isengard_desktop.storage import settings as settings_store
from tests.models import tiny_catalogue as tiny


@pytest.fixture
def new_window(qtbot, ctx: AppContext, monkeypatch: pytest.MonkeyPatch):
    """The window on a volume nobody has set up yet (first_run_done is False)."""
    from isengard_desktop.ui.main_window import MainWindow

    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes))
    monkeypatch.delenv("ISENGARD_COMFYUI_DIR", raising=False)
    monkeypatch.delenv("ISENGARD_AITOOLKIT_DIR", raising=False)
    assert not ctx.settings.first_run_done
    win = MainWindow(ctx)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.confirm_quit = False
    win.close()


def test_a_new_volume_opens_on_the_first_run_page_and_the_demo_leads_to_the_tabs(qtbot, new_window, ctx):
    page = new_window.first_run
    assert new_window.stack.currentWidget() is page
    qtbot.waitUntil(lambda: "No NVIDIA GPU found" in page.gpu_label.text(), timeout=10_000)
    assert page.presets_grid.count() >= 9  # three presets: name, VRAM, verdict
    qtbot.waitUntil(lambda: page.engine_labels["comfyui"].text() == "not installed", timeout=30_000)
    assert page.install_buttons["aitoolkit"].isVisible()
    assert page.demo_button.isVisible()  # no GPU here: fast-test mode

    qtbot.mouseClick(page.demo_button, Qt.MouseButton.LeftButton)
    assert new_window.stack.currentWidget() is new_window.tabs
    assert settings_store.load(ctx.volume.settings_path).first_run_done

    # Settings → General → "Show the first-run page" brings it back.
    dialog = new_window.open_settings()
    qtbot.mouseClick(dialog.first_run_button, Qt.MouseButton.LeftButton)
    assert new_window.stack.currentWidget() is page
    qtbot.mouseClick(page.continue_button, Qt.MouseButton.LeftButton)
    assert new_window.stack.currentWidget() is new_window.tabs


def test_check_files_on_an_empty_volume_says_there_is_nothing_to_check(qtbot, new_window):
    (panel,) = new_window.first_run.model_panels
    qtbot.mouseClick(panel.verify_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.checked.text() != "", timeout=30_000)
    assert panel.checked.text() == "No file of this model is here yet: nothing to check."


def test_the_page_is_not_shown_again_once_done(qtbot, ctx, tmp_path):
    from isengard_desktop.ui.main_window import MainWindow

    ctx.settings.first_run_done = True
    settings_store.save(ctx.volume.settings_path, ctx.settings)
    again = AppContext.open(ctx.volume.root, "fast-test")
    try:
        win = MainWindow(again)
        qtbot.addWidget(win)
        assert win.first_run is None and win.stack.currentWidget() is win.tabs
        win.close()
    finally:
        again.close()


@pytest.fixture
def tiny_hub(fake_hub, test_keyring, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A gated tiny FLUX-shaped model on the loopback hub, and the app's catalogue pointing at it."""
    monkeypatch.setenv("ISENGARD_MODEL_CATALOGUE", str(tiny.write_catalogue(tmp_path)))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    tiny.publish(fake_hub, gated_token="hf_test_token")
    return fake_hub


def test_downloading_the_base_model_from_the_page_with_the_token_typed_inline(qtbot, tiny_hub, new_window, ctx):
    page = new_window.first_run
    (panel,) = page.model_panels
    assert panel.token_row.isVisible()  # gated, and no token stored yet
    qtbot.waitUntil(lambda: panel.plan_label.text().startswith("To download"), timeout=10_000)
    assert "missing" in panel.state_labels["training"].text()

    qtbot.keyClicks(panel.token, "hf_test_token")
    qtbot.mouseClick(panel.save_token_button, Qt.MouseButton.LeftButton)
    assert not panel.token_row.isVisible() and panel.token.text() == ""

    qtbot.mouseClick(panel.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.job_id is not None, timeout=10_000)
    job_id = panel.job_id
    qtbot.waitUntil(lambda: panel.job_id is None, timeout=120_000)
    assert ctx.jobs.get(job_id).state == "succeeded", ctx.jobs.get(job_id).error
    qtbot.waitUntil(lambda: panel.state_labels["training"].text().startswith("ready"), timeout=10_000)
    assert panel.state_labels["comfyui"].text().startswith("ready")
    assert "Everything ticked is here" in panel.plan_label.text()
    assert "base model is here" in page.footer_note.text()
    # Every file where the engines read it, byte-exact, and no partial file left behind.
    models = ctx.volume.models_dir
    assert (models / "Tiny-FLUX" / "vae" / "diffusion_pytorch_model.safetensors").read_bytes() == tiny.content("vae")
    assert not list(models.rglob("*.partial"))
    # Check files: every file of both layouts matches what the hub publishes.
    qtbot.mouseClick(panel.verify_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.checked.text() != "", timeout=30_000)
    assert "file(s) here match the sha256 the hub publishes" in panel.checked.text()
    assert not panel.message.isVisible()
    # The download is a job like any other: Jobs & logs lists it, finished.
    jobs = new_window.jobs
    jobs.reload()
    rows = [jobs.table.item(r, 0).text() for r in range(jobs.table.rowCount())]
    assert job_id in rows


def test_a_gated_model_without_access_is_explained_on_the_page(qtbot, tiny_hub, new_window, ctx):
    from isengard_desktop.core.secrets import set_hf_token

    set_hf_token("hf_someone_else")  # a token the hub knows nothing about
    tiny_hub.add_token("hf_someone_else", {})
    page = new_window.first_run
    (panel,) = page.model_panels
    panel.refresh()
    qtbot.waitUntil(lambda: panel.plan_label.text().startswith("To download"), timeout=10_000)
    qtbot.mouseClick(panel.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.message.isVisible(), timeout=60_000)
    text = panel.message.text()
    assert tiny.REPO in text and "Traceback" not in text
    assert not list(ctx.volume.models_dir.rglob("*.safetensors"))  # nothing was written


def test_with_a_24_gb_card_the_page_says_which_presets_fit(qtbot, ctx, desktop_3090):
    """A stand-in nvidia-smi on PATH answers as a real RTX 3090 does; the verdicts come from the memory plan."""
    from isengard_desktop.ui.main_window import MainWindow

    win = MainWindow(ctx)
    qtbot.addWidget(win)
    page = win.first_run
    qtbot.waitUntil(lambda: "RTX 3090 · 24.0 GB VRAM" in page.gpu_label.text(), timeout=10_000)
    cells = [page.presets_grid.itemAtPosition(1, c).widget().text() for c in range(3)]
    assert cells == ["Quick", "fits your card", cells[2]] and cells[2]  # AI-Toolkit's Quick fits 24 GB
    (panel,) = page.model_panels
    assert panel.variant.currentData() == "fp16"  # 24 GB: the full-precision T5 for ComfyUI
    win.close()
