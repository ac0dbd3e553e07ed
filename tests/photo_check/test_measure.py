"""Faces, blur, exposure and near-copies measured on real photographs (scikit-image's) and variants of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from isengard_desktop.core.photo_check.analyse import (
    BLURRY_BELOW,
    DARK_BELOW,
    NEAR_DUPLICATE_BITS,
    PhotoInput,
    build_report,
)
from isengard_desktop.core.photo_check.measure import Measures, detector_path, measure
from tests.photo_check import real_photos


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Measures]:
    photos = real_photos.make(tmp_path_factory.mktemp("photos"))
    return {name: measure(path) for name, path in photos.items()}


def test_the_detector_ships_inside_the_opencv_wheel() -> None:
    path = detector_path()
    assert path.is_file() and "site-packages" in str(path) and path.stat().st_size > 100_000


@pytest.mark.parametrize("name", ["astronaut", "resized", "reencoded", "cropped", "blurred", "dark", "small_face"])
def test_one_face_in_every_astronaut_photo(measured: dict[str, Measures], name: str) -> None:
    assert len(measured[name].faces) == 1


def test_the_face_is_where_the_astronaut_is(measured: dict[str, Measures]) -> None:
    x, y, w, h = measured["astronaut"].faces[0]
    # Her face is at about (170-270, 60-160) in the 512 px portrait.
    assert 150 < x + w / 2 < 290 and 60 < y + h / 2 < 170 and 70 < w < 130
    # Boxes are in the photo's own pixels: the 1024 px copy's box is twice as large.
    assert measured["resized"].faces[0][2] == pytest.approx(2 * w, rel=0.25)


def test_two_faces_in_the_composite(measured: dict[str, Measures]) -> None:
    faces = measured["two_people"].faces
    assert len(faces) == 2
    assert sorted(f[0] < 512 for f in faces) == [False, True]  # one in each half


@pytest.mark.parametrize("name", real_photos.NO_FACE)
def test_no_face_in_photos_without_a_person(measured: dict[str, Measures], name: str) -> None:
    assert measured[name].faces == []


def test_blur_is_measured_on_the_face(measured: dict[str, Measures]) -> None:
    assert measured["blurred"].sharpness < BLURRY_BELOW
    for name in ("astronaut", "resized", "reencoded", "cropped", "soft", "dark"):
        assert measured[name].sharpness > BLURRY_BELOW, name


def test_exposure(measured: dict[str, Measures]) -> None:
    assert measured["dark"].exposure < DARK_BELOW < measured["astronaut"].exposure


def _report(measured: dict[str, Measures], names: list[str]):
    photos = []
    for number, name in enumerate(names, start=1):
        m = measured[name]
        photos.append(PhotoInput(number, False, {**m.__dict__, "embedding": None}))
    return build_report(photos, {"ready": False, "embedder": None, "reason": "no embedder in this test"})


def test_near_copies_across_resize_reencode_and_crop(measured: dict[str, Measures]) -> None:
    names = ["astronaut", "resized", "reencoded", "cropped", "coffee", "chelsea", "rocket"]
    report = _report(measured, names)
    by_name = dict(zip(names, report.images, strict=True))
    assert by_name["astronaut"]["duplicate_of"] is None  # the first of its group is the one kept
    for name in ("resized", "reencoded", "cropped"):
        assert by_name[name]["duplicate_of"] == 1 and "near_duplicate" in by_name[name]["issues"], name
    for name in ("coffee", "chelsea", "rocket"):
        assert by_name[name]["duplicate_of"] is None, name
    assert NEAR_DUPLICATE_BITS == 10


def test_issues_a_person_would_see(measured: dict[str, Measures]) -> None:
    names = ["astronaut", "two_people", "small_face", "blurred", "coffee", "dark"]
    report = _report(measured, names)
    issues = {name: entry["issues"] for name, entry in zip(names, report.images, strict=True)}
    assert issues["astronaut"] == []
    assert "several_faces" in issues["two_people"]
    assert "face_too_small" in issues["small_face"]
    assert "blurry" in issues["blurred"]
    assert issues["coffee"] == ["no_face"]
    assert "underexposed" in issues["dark"]
    summary = report.summary
    assert summary["advice"].startswith("1 photo shows more than one face: crop it")
    assert summary["usable"] == 1 and summary["flagged"] == 5 and summary["verdict"] == "not_ready"


def test_an_unreadable_photo_is_said_not_raised(tmp_path: Path) -> None:
    from isengard_desktop.core.photo_check.job import _measure_one

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    assert "broken.jpg could not be read" in _measure_one(str(bad), 1)
