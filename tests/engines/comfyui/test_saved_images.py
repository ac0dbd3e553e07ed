"""The embedded ComfyUI's images are read where it saved them, and only from its own output and temp folders."""

from __future__ import annotations

from pathlib import Path

from engines.comfyui.engine import saved_image_path


def test_an_output_event_names_the_file_comfyui_saved(tmp_path: Path) -> None:
    base = tmp_path / "base"
    saved = base / "output" / "isengard" / "job_00001_.png"
    saved.parent.mkdir(parents=True)
    saved.write_bytes(b"\x89PNG")
    assert saved_image_path(base, {"filename": "job_00001_.png", "subfolder": "isengard", "type": "output"}) == saved
    preview = base / "temp" / "preview.png"
    preview.parent.mkdir()
    preview.write_bytes(b"\x89PNG")
    assert saved_image_path(base, {"filename": "preview.png", "type": "temp"}) == preview


def test_nothing_outside_comfyuis_folders_nor_a_missing_file_is_read(tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "output").mkdir(parents=True)
    (base / "input").mkdir()
    (base / "input" / "face.png").write_bytes(b"\x89PNG")
    (tmp_path / "secret.png").write_bytes(b"\x89PNG")
    assert saved_image_path(base, {"filename": "secret.png", "subfolder": "../..", "type": "output"}) is None
    assert saved_image_path(base, {"filename": "face.png", "type": "input"}) is None
    assert saved_image_path(base, {"filename": "gone.png", "type": "output"}) is None  # then asked over HTTP
    assert saved_image_path(base, {"subfolder": "", "type": "output"}) is None
