"""Installing an engine: a source without the pinned commit is refused, and the previous install survives."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from isengard_desktop.core.engines_install import InstallError, install


def test_wrong_source_keeps_the_previous_install(tmp_path: Path) -> None:
    repo = tmp_path / "not-ai-toolkit"
    repo.mkdir()
    for command in (["init", "-q"], ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty",
                                     "-m", "unrelated"]):
        subprocess.run(["git", "-C", str(repo), *command], check=True)
    volume = tmp_path / "volume"
    previous = volume / "engines" / "aitoolkit" / "src"
    previous.mkdir(parents=True)
    (previous / "run.py").write_text("# the working install\n")

    with pytest.raises(InstallError, match="does not contain the pinned commit 4d5a649a"):
        install("aitoolkit", volume, source=repo)
    assert (previous / "run.py").read_text() == "# the working install\n"
    assert sorted(p.name for p in (volume / "engines").iterdir()) == ["aitoolkit", "aitoolkit-install.log"]


def test_unknown_engines_and_wrong_sources_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="no engine called 'nope'"):
        install("nope", tmp_path)
    repo = tmp_path / "empty"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    with pytest.raises(InstallError, match="does not contain the pinned commit a125cd84 of comfyui"):
        install("comfyui", tmp_path / "volume", source=repo)


def test_failed_update_restores_the_pin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a copy of the pins: the checkout's tracked vendor/VENDOR_PINS.json is never written by a test."""
    from isengard_desktop.core import engines_status
    from isengard_desktop.core.engines_install import update

    tracked = engines_status.pins_path()
    tracked_before = tracked.read_bytes()
    copy = tmp_path / "VENDOR_PINS.json"
    copy.write_bytes(tracked_before)
    monkeypatch.setattr(engines_status, "pins_path", lambda: copy)
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    # The message names deadbeef: the install really ran against the moved pin in the copy...
    with pytest.raises(InstallError, match="does not contain the pinned commit deadbeef"):
        update("aitoolkit", "deadbeef", tmp_path / "volume", source=repo)
    # ...and the copy is back to the old pin, byte for byte.
    assert copy.read_bytes() == tracked_before
    assert tracked.read_bytes() == tracked_before
