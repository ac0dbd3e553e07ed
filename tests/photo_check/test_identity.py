"""Identity: the tiny embedder runs SFace's code path in fast-test; production without SFace says it is not ready;
a face far from the character's median embedding is flagged with its score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from isengard_desktop.core.photo_check import embedder as embedders
from isengard_desktop.core.photo_check.analyse import PhotoInput, build_report
from isengard_desktop.core.photo_check.measure import measure
from isengard_desktop.core.photo_check.tiny_embedder import ensure_tiny_embedder, model_bytes
from tests.photo_check import real_photos


def test_the_tiny_embedder_is_the_same_bytes_every_time(tmp_path: Path) -> None:
    path = ensure_tiny_embedder(tmp_path)
    assert path.read_bytes() == model_bytes() and path.stat().st_size < 20_000


def test_the_tiny_embedder_runs_through_opencvs_sface_runner(tmp_path: Path) -> None:
    photos = real_photos.make(tmp_path / "photos", ("astronaut", "resized"))
    choice = embedders.resolve("fast-test", tmp_path / "models", build=True)
    assert choice.ready and choice.id == "tiny-sface" and choice.path.is_file()
    model = embedders.Embedder(choice)
    vectors = [model.embed(measure(path).face_crop) for path in photos.values()]
    for vector in vectors:
        assert vector.shape == (128,) and vector.dtype == np.float32
        assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)


def test_production_without_sface_is_not_ready_and_says_why(tmp_path: Path) -> None:
    choice = embedders.resolve("production", tmp_path)
    assert not choice.ready
    assert "SFace" in choice.reason and "isengard models download sface" in choice.reason
    report = build_report([PhotoInput(1, False, None)], {"ready": choice.ready, "embedder": choice.id,
                                                        "reason": choice.reason})
    assert report.summary["identity"] == {"ready": False, "embedder": None, "reason": choice.reason}


def test_production_uses_sface_once_downloaded(tmp_path: Path) -> None:
    path = tmp_path / embedders.SFACE_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(model_bytes())  # stands in for the 38.7 MB file: only its place is checked here
    assert embedders.resolve("production", tmp_path) == embedders.EmbedderChoice("sface-2021dec", path, "")


def _measures(embedding: np.ndarray) -> dict:
    return {"width": 512, "height": 512, "faces": [[180, 70, 90, 90]], "sharpness": 300.0, "exposure": 0.5,
            "clipped": 0.01, "phash": f"{abs(hash(embedding.tobytes())) % (1 << 64):016x}", "face_phash": None,
            "embedding": embedding.astype(np.float32)}


def test_a_face_far_from_the_median_is_flagged_with_its_score() -> None:
    rng = np.random.default_rng(3)
    person = rng.normal(size=128)
    someone_else = rng.normal(size=128)
    photos = [PhotoInput(i, False, _measures(person + rng.normal(scale=0.4, size=128))) for i in range(1, 6)]
    photos.append(PhotoInput(6, False, _measures(someone_else)))
    report = build_report(photos, {"ready": True, "embedder": "sface-2021dec", "reason": ""})
    scores = {i["id"]: i["identity_score"] for i in report.images}
    assert all(scores[i] > 0.8 for i in range(1, 6)) and scores[6] < 0.363
    assert [i["id"] for i in report.images if "identity_outlier" in i["issues"]] == [6]
    assert "similarity" in report.reasons[6][0] and f"{scores[6]:.2f}" in report.reasons[6][0]
    assert report.summary["advice"] == "1 photo may show someone else: check it and remove those of other people."


def test_identity_is_not_judged_from_two_faces() -> None:
    rng = np.random.default_rng(4)
    photos = [PhotoInput(i, False, _measures(rng.normal(size=128))) for i in (1, 2)]
    report = build_report(photos, {"ready": True, "embedder": "sface-2021dec", "reason": ""})
    assert all("identity_outlier" not in i["issues"] for i in report.images)
    assert "3 or more faces" in report.summary["identity"]["reason"]
