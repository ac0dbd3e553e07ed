"""One start for the window and the CLI (isengard_desktop/bootstrap.py): the volume is opened once, its log written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from isengard_desktop.storage.volume import Volume


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every ``Volume.open`` of the test (the real one runs: the folders are made and checked writable)."""
    roots: list[Path] = []
    real = Volume.open.__func__  # type: ignore[attr-defined]

    def counting(cls, root: Path) -> Volume:
        roots.append(Path(root))
        return real(cls, root)

    monkeypatch.setattr(Volume, "open", classmethod(counting))
    return roots


def test_the_cli_opens_the_volume_once(tmp_path: Path, opened: list[Path], monkeypatch, capsys) -> None:
    from isengard_desktop.cli.main import run_cli

    monkeypatch.setenv("ISENGARD_MODE", "fast-test")
    assert run_cli(["--volume", str(tmp_path / "vol"), "characters", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert opened == [(tmp_path / "vol").resolve()]
    assert any((tmp_path / "vol" / "logs").iterdir())  # the run logged into the volume


def test_the_window_opens_the_volume_once_with_the_mode_asked(tmp_path: Path, opened: list[Path], monkeypatch) -> None:
    from isengard_desktop.ui.app import _open_context

    monkeypatch.setenv("ISENGARD_MODE", "fast-test")
    ctx = _open_context(str(tmp_path / "vol"))
    try:
        assert opened == [(tmp_path / "vol").resolve()] and ctx.volume.root == (tmp_path / "vol").resolve()
        assert ctx.mode == "fast-test" and any(ctx.volume.logs_dir.iterdir())
    finally:
        ctx.close()
