"""The whole story on the embedded ComfyUI: the window starts it (status bar: starting, then ready), Generate
makes images into the gallery, and closing the window stops it. Needs a real ComfyUI (skipped otherwise);
without one, the status bar says how to install it."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, Qt

from engines.comfyui.paths import locate
from isengard_desktop.ui.gallery import PathRole

LOCATED = locate() if os.environ.get("ISENGARD_COMFYUI_DIR") else "ISENGARD_COMFYUI_DIR is not set"
CACHE = Path(os.environ.get("ISENGARD_TEST_CACHE", Path.home() / ".cache" / "isengard-tests"))


def test_without_comfyui_the_status_bar_says_how_to_install_it(qtbot, window) -> None:
    # The engine states are filled in right after the first frame (issue 14: nothing the frame does not need).
    qtbot.waitUntil(lambda: "ComfyUI: not installed" in window.engines_label.text(), timeout=5_000)
    assert "isengard engines install comfyui" in window.engines_label.toolTip()


@pytest.mark.skipif(isinstance(LOCATED, str),
                    reason=f"needs a real ComfyUI: set ISENGARD_COMFYUI_DIR and ISENGARD_COMFYUI_PYTHON ({LOCATED})")
def test_the_window_runs_comfyui_generates_and_stops_it(qtbot, ctx) -> None:
    from engines.comfyui.fast_test_models import FILES, ensure
    from isengard_desktop.ui.main_window import MainWindow

    checkout, python = LOCATED  # type: ignore[misc]
    (ctx.volume.models_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    os.link(ensure(CACHE, checkout, python)["checkpoint"], ctx.volume.models_dir / FILES["checkpoint"])
    window = MainWindow(ctx)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: "ComfyUI: ready" in window.engines_label.text(), timeout=120_000)
    tab = window.generate
    qtbot.waitUntil(lambda: "comfyui" in [tab.form.engine.itemData(i) for i in range(tab.form.engine.count())],
                    timeout=20_000)
    names = [tab.form.engine.itemData(i) for i in range(tab.form.engine.count())]
    tab.form.engine.setCurrentIndex(names.index("comfyui"))
    # Fast-test: the toggles run on tiny models the worker builds at their first use (IP-Adapter is FLUX-only).
    qtbot.waitUntil(tab.form.toggles["upscale"].isEnabled, timeout=20_000)
    assert "fast-test" in tab.form.toggle_notes["upscale"].text()
    box = tab.form.toggles["upscale"]
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))  # on the tick box
    assert tab.form.toggles["upscale"].isChecked()
    tab.form.prompt.setPlainText("a lighthouse at dusk")
    tab.form.steps.setValue(4)
    tab.form.batch.setValue(2)
    qtbot.mouseClick(tab.generate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tab.status.text() == "Done.", timeout=180_000)
    assert tab.model.rowCount() == 2 and "Engine: comfyui" in tab.details.text()
    with Image.open(tab.model.index(0).data(PathRole)) as image:
        assert image.size == (128, 128)  # 64 px from the tiny checkpoint, doubled by the tiny ESRGAN
    server = ctx.service("comfyui")
    pid = int(__import__("json").loads((ctx.volume.root / "engines" / "comfyui" / "run" / "server.json")
                                       .read_text())["pid"])
    window.close()
    ctx.close()
    assert server.status().state == "stopped"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
