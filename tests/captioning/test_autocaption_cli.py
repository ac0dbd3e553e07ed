"""`isengard dataset autocaption` end to end: a real CLI process, its worker, the tiny Qwen3-VL, JSON on stdout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.captioning.conftest import PERSON_CAPTION, PHOTOS, TRIGGER, real_photos
from tests.cli.test_cli_end_to_end import isengard


def _volume_with_photos(tmp_path: Path) -> Path:
    volume = tmp_path / "vol"
    isengard(volume, "characters", "create", "Eileen", "--trigger", TRIGGER)
    isengard(volume, "dataset", "import", "Eileen", str(real_photos(tmp_path / "photos", PHOTOS[:3])))
    isengard(volume, "dataset", "caption", "1", PERSON_CAPTION)
    return volume


@pytest.mark.slow
def test_autocaption_json_reports_every_photo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISENGARD_MODE", "fast-test")
    volume = _volume_with_photos(tmp_path)
    out = json.loads(isengard(volume, "--json", "dataset", "autocaption", "Eileen").stdout)
    assert out["job"]["state"] == "succeeded" and out["job"]["kind"] == "caption"
    assert (out["stored"], out["kept"], out["trigger_word"]) == (2, 1, TRIGGER)
    by_id = {image["id"]: image for image in out["images"]}
    assert by_id[1] == {"id": 1, "caption": PERSON_CAPTION, "source": "person", "written_now": False}
    for image_id in (2, 3):
        assert by_id[image_id]["source"] == "auto" and by_id[image_id]["written_now"]
        assert by_id[image_id]["caption"].count(TRIGGER) == 1

    out = json.loads(isengard(volume, "--json", "dataset", "autocaption", "Eileen", "--overwrite").stdout)
    assert out["stored"] == 3 and out["kept"] == 0
    assert all(image["source"] == "auto" for image in out["images"])
    listed = json.loads(isengard(volume, "--json", "dataset", "list", "--character", "Eileen").stdout)
    assert all(item["own_caption"] and item["caption"].count(TRIGGER) == 1 for item in listed)


def test_production_without_the_model_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISENGARD_MODE", "production")
    volume = tmp_path / "vol"
    isengard(volume, "characters", "create", "Eileen", "--trigger", TRIGGER)
    proc = isengard(volume, "dataset", "autocaption", "Eileen", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "isengard models download qwen3-vl-4b-instruct" in proc.stderr
    assert not (volume / "jobs").exists() or not any(p.is_dir() for p in (volume / "jobs").iterdir())
