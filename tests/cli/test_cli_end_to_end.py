"""The CLI end to end in a temporary volume: real subprocesses, JSON on stdout, errors on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

# The command a person runs: the console script `pip install -e '.[test]'` puts beside the venv's python.
INSTALLED = Path(sys.executable).parent / "isengard"


def isengard(volume: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    assert INSTALLED.is_file(), f"{INSTALLED} is missing: install the project with pip install -e '.[test]'"
    proc = subprocess.run(
        [str(INSTALLED), "--volume", str(volume), *args],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"isengard {args} failed ({proc.returncode}): {proc.stderr}")
    return proc


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "my photos"
    (folder / "holiday").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (640 + i, 800), (40 * i, 90, 160)).save(folder / f"ada {i}.jpg", quality=90)
    Image.new("RGB", (300, 200), "white").save(folder / "holiday" / "small.png")
    (folder / "notes.jpg").write_text("not a picture")
    return folder


def test_the_installed_command_runs(tmp_path: Path) -> None:
    from isengard_desktop import __version__

    shown = isengard(tmp_path / "vol", "--version")
    assert shown.stdout.strip() == f"isengard {__version__}"
    assert json.loads(isengard(tmp_path / "vol", "characters", "list", "--json").stdout) == []


def test_create_list_show_and_duplicate_trigger(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    created = json.loads(isengard(volume, "characters", "create", "Ada Lovelace", "--trigger", "ohwx_ada",
                                  "--description", "mathematician", "--json").stdout)
    assert created["id"] >= 1 and created["trigger_word"] == "ohwx_ada" and created["lora_state"] == "No LoRA yet"
    listed = json.loads(isengard(volume, "characters", "list", "--json").stdout)
    assert [c["name"] for c in listed] == ["Ada Lovelace"]
    shown = json.loads(isengard(volume, "characters", "show", str(created["id"]), "--json").stdout)
    assert shown["description"] == "mathematician"

    again = isengard(volume, "characters", "create", "Someone", "--trigger", "OHWX_ADA", check=False)
    assert again.returncode != 0
    assert "already used by 'Ada Lovelace'" in again.stderr and again.stdout == ""


def test_import_reports_each_file_and_exit_code_zero(tmp_path: Path, photos: Path) -> None:
    volume = tmp_path / "vol"
    isengard(volume, "characters", "create", "Ada", "--trigger", "ohwx_ada")
    first = isengard(volume, "dataset", "import", "Ada", str(photos), "--json")
    report = json.loads(first.stdout)  # stdout is pure JSON: no log line mixed in
    assert len(report["imported"]) == 4
    assert [Path(r["file"]).name for r in report["refused"]] == ["notes.jpg"]
    assert "not an image" in report["refused"][0]["reason"]
    assert any(item["too_small"] for item in report["imported"])

    second = json.loads(isengard(volume, "dataset", "import", "Ada", str(photos / "ada 0.jpg"), "--json").stdout)
    assert second["imported"] == [] and len(second["duplicates"]) == 1

    images = json.loads(isengard(volume, "dataset", "list", "--character", "Ada", "--json").stdout)
    assert len(images) == 4 and all(image["caption"] == "a photo of ohwx_ada" for image in images)
    assert all(Path(image["path"]).is_file() for image in images)


def test_caption_and_delete_need_confirmation(tmp_path: Path, photos: Path) -> None:
    volume = tmp_path / "vol"
    isengard(volume, "characters", "create", "Ada", "--trigger", "ohwx_ada")
    isengard(volume, "dataset", "import", "Ada", str(photos))
    images = json.loads(isengard(volume, "dataset", "list", "--json").stdout)
    target = images[0]
    isengard(volume, "dataset", "caption", str(target["id"]), "ohwx_ada reading a book")
    captioned = json.loads(isengard(volume, "dataset", "list", "--captioned", "yes", "--json").stdout)
    assert [(i["id"], i["caption"]) for i in captioned] == [(target["id"], "ohwx_ada reading a book")]

    refused = isengard(volume, "dataset", "delete", str(target["id"]), check=False)
    assert refused.returncode != 0 and "--yes" in refused.stderr
    assert Path(target["path"]).exists()

    isengard(volume, "dataset", "delete", str(target["id"]), "--yes")
    assert not Path(target["path"]).exists()
    trashed = list((volume / "trash").rglob(Path(target["path"]).name))
    assert len(trashed) == 1, "the deleted photo must be in the trash, not gone"
    assert len(json.loads(isengard(volume, "dataset", "list", "--json").stdout)) == len(images) - 1


def test_errors_are_one_sentence_on_stderr(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    missing = isengard(volume, "dataset", "import", "Nobody", str(tmp_path), check=False)
    assert missing.returncode == 1
    assert missing.stderr.startswith("isengard: There is no character called 'Nobody'")
    assert "Traceback" not in missing.stderr

    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    bad_volume = isengard(blocked / "vol", "characters", "list", check=False)
    assert bad_volume.returncode == 1 and "cannot be written" in bad_volume.stderr


def test_newer_database_is_refused(tmp_path: Path) -> None:
    import sqlite3

    volume = tmp_path / "vol"
    isengard(volume, "characters", "list")
    with sqlite3.connect(volume / "isengard.db") as conn:
        conn.execute("INSERT INTO schema_version VALUES (999, '0999_future.sql', 'x')")
    proc = isengard(volume, "characters", "list", check=False)
    assert proc.returncode == 1 and "newer version" in proc.stderr


def test_engines_status_against_the_pins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    volume = tmp_path / "vol"
    monkeypatch.delenv("ISENGARD_AITOOLKIT_DIR", raising=False)
    report = {e["name"]: e for e in json.loads(isengard(volume, "engines", "status", "--json").stdout)}
    assert set(report) == {"aitoolkit", "comfyui"} and not report["aitoolkit"]["installed"]
    assert report["aitoolkit"]["pinned_commit"] == "4d5a649a"

    checkout = tmp_path / "ai-toolkit"
    checkout.mkdir()
    (checkout / ".isengard-commit").write_text("0123abcd\n")
    monkeypatch.setenv("ISENGARD_AITOOLKIT_DIR", str(checkout))
    monkeypatch.setenv("ISENGARD_AITOOLKIT_PYTHON", str(tmp_path / "no-python"))
    report = {e["name"]: e for e in json.loads(isengard(volume, "engines", "status", "--json").stdout)}
    aitk = report["aitoolkit"]
    assert aitk["installed"] and not aitk["matches_pin"] and not aitk["environment_ok"]
    assert "0123abcd" in aitk["detail"] and "cannot import torch" in aitk["detail"]


def test_generate_prints_the_saved_images_and_refuses_an_unknown_lora(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    out = json.loads(isengard(volume, "generate", "--prompt", "a photo of a lighthouse", "--engine", "diffusers",
                              "--seed", "3", "--steps", "2", "--batch", "2", "--aspect", "16:9", "--json").stdout)
    assert out["state"] == "succeeded" and out["seed"] == 3 and len(out["images"]) == 2
    assert all(Path(path).is_file() and Path(path).parent.parent == volume / "outputs" for path in out["images"])
    plain = isengard(volume, "generate", "--prompt", "a photo", "--engine", "diffusers", "--steps", "1")
    assert plain.stdout.strip().endswith(".png")  # without --json: one saved path per line
    refused = isengard(volume, "generate", "--prompt", "a photo", "--lora", "Nobody:0.8", "--engine", "diffusers",
                       check=False)
    assert refused.returncode == 1 and "'Nobody' has no trained LoRA" in refused.stderr
