"""The face embedder comes through the model manager: `isengard models download sface` (a loopback hub serving the
tiny embedder's bytes at SFace's place, the catalogue entry's sha256 swapped for them), after which a production
check computes identity with it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from isengard_desktop.base import catalogue
from isengard_desktop.core.photo_check.tiny_embedder import model_bytes
from tests.cli.test_cli_end_to_end import isengard
from tests.models.fake_hub import FakeHub
from tests.photo_check import real_photos


@pytest.mark.slow
def test_download_sface_then_identity_is_checked(tmp_path: Path, fake_hub: FakeHub, test_keyring: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = model_bytes()
    entry = next(m for m in json.loads(catalogue.catalogue_path().read_text())["models"] if m["id"] == "sface")
    hub_file = entry["files"]["sface"]
    hub_file.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    test_catalogue = tmp_path / "catalogue.json"
    test_catalogue.write_text(json.dumps({"schema_version": catalogue.SCHEMA_VERSION, "models": [entry]}))
    monkeypatch.setenv(catalogue.ENV_CATALOGUE, str(test_catalogue))
    fake_hub.add_file(hub_file["repo"], hub_file["path"], data)
    monkeypatch.setenv("ISENGARD_MODE", "production")
    volume = tmp_path / "vol"

    out = json.loads(isengard(volume, "--json", "models", "download", "sface").stdout)
    assert out["state"] == "succeeded"
    assert (volume / "models" / "face-embedder" / "face_recognition_sface_2021dec.onnx").read_bytes() == data

    folder = tmp_path / "photos"
    real_photos.make(folder, ("astronaut", "two_people", "resized"))
    isengard(volume, "characters", "create", "Eileen", "--trigger", "ohwx_eileen")
    isengard(volume, "dataset", "import", "Eileen", str(folder))
    report = json.loads(isengard(volume, "--json", "dataset", "check", "Eileen").stdout)
    assert report["summary"]["identity"] == {"ready": True, "embedder": "sface-2021dec", "reason": ""}
    assert all(isinstance(i["identity_score"], float) for i in report["images"])
