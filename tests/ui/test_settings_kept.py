"""A window open for hours never undoes what a command changed meanwhile: each settings change rewrites only its
own setting, read afresh from the volume, and the window sees the command's change too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from isengard_desktop.storage import settings as settings_store


def test_a_remote_added_from_the_terminal_survives_a_change_made_in_the_window(qtbot, window, ctx, tmp_path):
    dialog = window.open_settings()  # the window holds its settings in memory from here on
    added = subprocess.run(
        [sys.executable, "-m", "isengard_desktop", "--volume", str(ctx.volume.root), "remotes", "add", "gpubox",
         "--ssh", "ada@gpu.example:2222", "--no-check"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "ISENGARD_MODE": "fast-test"})
    assert added.returncode == 0, added.stderr
    folder = tmp_path / "ComfyUI" / "models"
    folder.mkdir(parents=True)
    dialog.add_model_dir(str(folder))  # what the folder picker hands over
    stored = settings_store.load(ctx.volume.settings_path)
    assert stored.extra_model_dirs == [str(folder)]
    assert [remote["name"] for remote in stored.remotes] == ["gpubox"]  # the terminal's change is still there
    assert [remote["name"] for remote in ctx.settings.remotes] == ["gpubox"]  # and the window knows it now
    dialog.accept()


def test_an_unknown_setting_is_refused_and_the_file_is_left_alone(tmp_path: Path):
    path = tmp_path / "settings.json"
    settings_store.update(path, comfyui_url="http://gpu.example:8188")
    before = path.read_bytes()
    try:
        settings_store.update(path, comfy_url="typo")
    except TypeError as exc:
        assert "comfy_url" in str(exc)
    else:
        raise AssertionError("a misspelt setting was accepted")
    assert path.read_bytes() == before
