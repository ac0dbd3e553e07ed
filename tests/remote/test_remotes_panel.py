"""Settings → Remotes, as a person uses it: type a remote into the form, Add and check (off the GUI thread), see
the report, a wrong key said in one sentence, Remove. Against the real sshd on loopback."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before the first QApplication

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402

from isengard_desktop.context import AppContext  # noqa: E402
from isengard_desktop.core.remote import registry  # noqa: E402
from tests.remote.conftest import SshdServer  # noqa: E402


@pytest.fixture
def dialog(qtbot, ctx: AppContext, monkeypatch: pytest.MonkeyPatch):
    from isengard_desktop.ui.bridge import JobBridge
    from isengard_desktop.ui.settings_dialog import SettingsDialog

    monkeypatch.delenv("ISENGARD_COMFYUI_DIR", raising=False)
    bridge = JobBridge(ctx.jobs)
    dlg = SettingsDialog(ctx, bridge)
    qtbot.addWidget(dlg)
    dlg.show()
    titles = [dlg.pages.tabText(i) for i in range(dlg.pages.count())]
    dlg.pages.setCurrentIndex(titles.index("Remotes"))
    yield dlg
    dlg.close()


def test_add_check_and_remove_a_remote_through_the_form(qtbot, dialog, ctx: AppContext, ssh_env: SshdServer,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    panel = dialog.remotes
    assert panel.isVisible() and "No remote machines yet" in panel.report.text()
    assert not panel.check_button.isEnabled()
    qtbot.keyClicks(panel.name, "loop")
    qtbot.keyClicks(panel.address, f"{ssh_env.user}@127.0.0.1:{ssh_env.port}")
    qtbot.keyClicks(panel.key, str(ssh_env.client_key))
    folder = str(ssh_env.remote_root / "panel")
    qtbot.keyClicks(panel.folder, folder)
    qtbot.mouseClick(panel.add_button, Qt.MouseButton.LeftButton)
    # The click returns at once: the check runs in the background, the buttons wait for it.
    assert panel.report.text().startswith("Checking loop (")
    assert not panel.check_button.isEnabled()
    qtbot.waitUntil(lambda: not panel.busy, timeout=30000)
    text = panel.report.text()
    assert text.startswith("loop:") and "GPU: none (nvidia-smi not found): CPU only" in text
    assert f"in {folder}" in text and "App: not installed" in text and panel.report.objectName() == "muted"
    assert [r.name for r in registry.list_remotes(ctx.volume)] == ["loop"]
    assert ctx.settings.remotes[0]["port"] == ssh_env.port  # the window's own settings know it too
    assert panel.list.count() == 1 and panel.name.text() == ""

    # A bad address is refused in the form, nothing stored.
    qtbot.keyClicks(panel.name, "bad")
    qtbot.keyClicks(panel.address, "root@host:99999")
    qtbot.mouseClick(panel.add_button, Qt.MouseButton.LeftButton)
    assert "not a number from 1 to 65535" in panel.add_error.text() and panel.list.count() == 1

    # A wrong key: the check says so in one sentence, in the error colour.
    panel.name.clear()
    panel.address.clear()
    qtbot.keyClicks(panel.name, "wrongkey")
    qtbot.keyClicks(panel.address, f"{ssh_env.user}@127.0.0.1:{ssh_env.port}")
    qtbot.keyClicks(panel.key, str(ssh_env.wrong_key))
    qtbot.mouseClick(panel.add_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.busy, timeout=30000)
    assert "permission denied" in panel.report.text() and panel.report.objectName() == "error"
    assert panel.selected().name == "wrongkey"

    qtbot.mouseClick(panel.remove_button, Qt.MouseButton.LeftButton)
    assert [r.name for r in registry.list_remotes(ctx.volume)] == ["loop"]
    assert panel.report.text().startswith("Removed wrongkey;")
    # Check again on the one left, by its button.
    qtbot.mouseClick(panel.check_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.busy, timeout=30000)
    assert panel.report.text().startswith("loop:")


def test_engines_page_switches_to_a_comfyui_by_url_and_back(qtbot, dialog, ctx: AppContext,
                                                            test_keyring: Path) -> None:
    import json

    from isengard_desktop.core.secrets import get_comfyui_auth

    box = dialog.remote_comfyui
    assert box.state.text() == "Using the embedded ComfyUI." and not box.embedded_button.isEnabled()
    qtbot.keyClicks(box.url, "gpu-box:8188")
    qtbot.mouseClick(box.use_button, Qt.MouseButton.LeftButton)
    assert "is not a ComfyUI address" in box.state.text() and ctx.settings.comfyui_url == ""
    box.url.clear()
    qtbot.keyClicks(box.url, "http://gpu-box:8188/")
    qtbot.keyClicks(box.header, "Authorization: Bearer s3cret")
    qtbot.mouseClick(box.use_button, Qt.MouseButton.LeftButton)
    assert box.state.text() == "Using the ComfyUI at http://gpu-box:8188 with its auth header."
    assert box.header.text() == "" and get_comfyui_auth() == ("Authorization", "Bearer s3cret")
    stored = json.loads(ctx.volume.settings_path.read_text())
    assert stored["comfyui_url"] == "http://gpu-box:8188" and "s3cret" not in ctx.volume.settings_path.read_text()
    qtbot.mouseClick(box.embedded_button, Qt.MouseButton.LeftButton)
    assert box.state.text() == "Using the embedded ComfyUI." and get_comfyui_auth() is None
    assert json.loads(ctx.volume.settings_path.read_text())["comfyui_url"] == ""
