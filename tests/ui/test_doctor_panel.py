"""The doctor page: rows for every check, "Run checks again" re-runs them off the GUI thread, and a check's
button either does its work or asks the window for it through action_requested."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from isengard_desktop.base.nvidia import parse_nvidia_smi
from isengard_desktop.ui.doctor_panel import DoctorPanel

FIXTURES = Path(__file__).parent.parent / "core" / "fixtures" / "gpus"


def names(panel: DoctorPanel) -> list[str]:
    return [row["name"].text() for row in panel.rows]


@pytest.fixture(autouse=True)
def no_dev_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    """The panel's rows, not the engines' health checks (tests/core/test_doctor.py): those import torch in each
    installed engine's environment, ~10 s of CPU per run of the checks."""
    for variable in ("ISENGARD_COMFYUI_DIR", "ISENGARD_COMFYUI_PYTHON", "ISENGARD_AITOOLKIT_DIR",
                     "ISENGARD_AITOOLKIT_PYTHON"):
        monkeypatch.delenv(variable, raising=False)


def test_rows_and_run_again(qtbot, ctx) -> None:
    panel = DoctorPanel(ctx, online=False, gpus=[], run_now=False)
    qtbot.addWidget(panel)
    panel.show()
    assert panel.rows == []
    with qtbot.waitSignal(panel.checks_done, timeout=60000):
        qtbot.mouseClick(panel.again, Qt.MouseButton.LeftButton)
        assert not panel.again.isEnabled()  # while the checks run off the GUI thread
        assert panel.summary.text().startswith("Checking")
    assert {"Volume folder", "GPU", "PyTorch (app)", "ComfyUI network"} <= set(names(panel))
    assert panel.summary.text() == "Everything needed works."
    assert panel.again.isEnabled()

    # ComfyUI now listens on every interface: running the checks again shows it, in red, with its fix.
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("0.0.0.0", 0))
    server.listen()
    state = ctx.volume.root / "engines" / "comfyui" / "run" / "server.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"state": "ready", "pid": os.getpid(), "port": server.getsockname()[1]}))
    try:
        with qtbot.waitSignal(panel.checks_done, timeout=60000):
            qtbot.mouseClick(panel.again, Qt.MouseButton.LeftButton)
    finally:
        server.close()
    row = next(r for r in panel.rows if r["name"].text() == "ComfyUI network")
    assert row["mark"].toolTip() == "fail" and "e05555" in row["mark"].styleSheet()
    assert "0.0.0.0" in row["detail"].text() and "Fix: Stop ComfyUI" in row["detail"].text()
    assert panel.summary.text().startswith("1 problem to fix")
    # The window's ComfyUI service is not running in this test: the panel asks the window to stop it.
    assert row["button"].text() == "Stop comfyui"
    with qtbot.waitSignal(panel.action_requested, timeout=2000) as asked:
        qtbot.mouseClick(row["button"], Qt.MouseButton.LeftButton)
    assert asked.args == ["stop_engine:comfyui"]


def test_buttons_of_a_gpu_machine(qtbot, ctx) -> None:
    gpus = parse_nvidia_smi((FIXTURES / "rtx5090.txt").read_text())
    panel = DoctorPanel(ctx, online=False, gpus=gpus, run_now=False)
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.checks_done, timeout=60000):
        panel.run()
    torch_row = next(r for r in panel.rows if r["name"].text() == "PyTorch (app)")
    assert torch_row["check"].status == "fail" and torch_row["button"].text() == "Copy the command"
    qtbot.mouseClick(torch_row["button"], Qt.MouseButton.LeftButton)
    copied = QGuiApplication.clipboard().text()
    assert "torch==2.13.0+cu130 --index-url https://download.pytorch.org/whl/cu130" in copied
    assert panel.summary.text().startswith("The command is on the clipboard")
    token_rows = [r for r in panel.rows if r["name"].text() == "Hugging Face token"]
    assert token_rows and token_rows[0]["check"].action == "set_token"
