"""`isengard dataset check CHARACTER --json` end to end: a real CLI process, the check in a worker job on the CPU
lane, the JSON shape of issue 12, results cached per content hash."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from isengard_desktop.context import AppContext
from isengard_desktop.jobs.lanes import CPU_LANE, GPU_LANE, lane_of
from tests.cli.test_cli_end_to_end import isengard
from tests.photo_check import real_photos

IMAGE_KEYS = {"id", "faces", "face_boxes", "sharpness", "exposure", "identity_score", "duplicate_of", "issues"}


@pytest.fixture
def volume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ISENGARD_MODE", "fast-test")
    root = tmp_path / "vol"
    folder = tmp_path / "photos"
    real_photos.make(folder, ("astronaut", "two_people", "blurred", "reencoded", "coffee"))
    isengard(root, "characters", "create", "Eileen", "--trigger", "ohwx_eileen")
    isengard(root, "dataset", "import", "Eileen", str(folder))
    return root


@pytest.mark.slow
def test_check_json_names_each_photos_issues(volume: Path) -> None:
    out = json.loads(isengard(volume, "--json", "dataset", "check", "Eileen").stdout)
    assert set(out) == {"images", "summary"}
    ctx = AppContext.open(volume, "fast-test")
    try:
        names = {i.id: i.row.source_name for i in ctx.dataset.list()}
        jobs = ctx.jobs.list(kind="dataset_check")
        assert [j.state for j in jobs] == ["succeeded"] and jobs[0].engine == "photo_check"
        assert (ctx.volume.root / jobs[0].folder / "report.json").is_file()
        cached = ctx.db.query_one("SELECT COUNT(*) AS n FROM photo_checks")["n"]
    finally:
        ctx.jobs.shutdown(wait=5)
        ctx.close()
    by_name = {names[i["id"]]: i for i in out["images"]}
    for image in out["images"]:
        assert set(image) == IMAGE_KEYS
    assert by_name["astronaut.jpg"]["faces"] == 1 and by_name["astronaut.jpg"]["issues"] == []
    assert isinstance(by_name["astronaut.jpg"]["identity_score"], float)  # the tiny embedder ran
    assert by_name["two_people.jpg"]["faces"] == 2 and "several_faces" in by_name["two_people.jpg"]["issues"]
    assert len(by_name["two_people.jpg"]["face_boxes"]) == 2
    assert "blurry" in by_name["blurred.jpg"]["issues"]
    assert by_name["reencoded.jpg"]["duplicate_of"] == by_name["astronaut.jpg"]["id"]
    assert by_name["coffee.jpg"]["faces"] == 0 and "no_face" in by_name["coffee.jpg"]["issues"]
    summary = out["summary"]
    assert summary["total"] == 5 and summary["usable"] + summary["flagged"] == 5
    assert summary["verdict"] in ("ready", "warnings", "not_ready")
    assert summary["advice"].startswith("1 photo shows more than one face")
    assert summary["identity"]["ready"] is True and summary["identity"]["embedder"] == "tiny-sface"
    assert cached == 5

    # A second check measures nothing again: every photo's figures come from the cache.
    text = isengard(volume, "dataset", "check", "Eileen").stdout
    assert "two_people.jpg\t2 faces" in text and "1 of 5 photos usable" in text


@pytest.mark.slow
def test_production_without_the_embedder_checks_the_rest_and_says_why(volume: Path) -> None:
    env_mode = os.environ.get("ISENGARD_MODE")
    os.environ["ISENGARD_MODE"] = "production"
    try:
        out = json.loads(isengard(volume, "--json", "dataset", "check", "Eileen").stdout)
    finally:
        os.environ["ISENGARD_MODE"] = env_mode or "fast-test"
    identity = out["summary"]["identity"]
    assert identity["ready"] is False and "isengard models download sface" in identity["reason"]
    assert all(i["identity_score"] is None for i in out["images"])
    assert any(i["faces"] == 2 for i in out["images"])  # faces, blur and near-copies are still checked


@pytest.mark.slow
def test_a_check_runs_while_the_gpu_is_taken(volume: Path) -> None:
    """Another Isengard process holds the GPU lock (a two-hour training): the check still runs to its end."""
    from isengard_desktop.core.photo_check.service import PhotoCheckService
    from isengard_desktop.storage.gpu_lock import GpuLock

    assert lane_of("dataset_check") == CPU_LANE and lane_of("training") == GPU_LANE
    ctx = AppContext.open(volume, "fast-test")
    training = GpuLock(ctx.volume.jobs_dir / ".gpu.lock")
    assert training.try_acquire()
    try:
        character = ctx.characters.resolve("Eileen")
        job = PhotoCheckService(ctx).submit(character.id)
        final = ctx.jobs.wait(job.id, timeout=120)
        assert final.state == "succeeded", final.error
        assert PhotoCheckService(ctx).report(character.id).summary["issues"].get("not_checked") is None
    finally:
        training.release()
        ctx.jobs.shutdown(wait=5)
        ctx.close()


@pytest.mark.slow
def test_cancel_keeps_what_was_measured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelled after its first photo, the check ends cancelled and the photos measured so far stay cached."""
    from isengard_desktop.core.photo_check.service import PhotoCheckService

    monkeypatch.setenv("ISENGARD_MODE", "fast-test")
    folder = tmp_path / "photos"
    real_photos.make(folder)
    ctx = AppContext.open(tmp_path / "vol", "fast-test")
    try:
        character = ctx.characters.create("Eileen", "ohwx_eileen")
        ctx.importer.run(character.id, [str(folder)])
        total = len(ctx.dataset.list())
        first = threading.Event()
        ctx.jobs.subscribe(lambda _job, e: first.set() if e.get("event") == "progress" and e.get("step") else None)
        job = PhotoCheckService(ctx).submit(character.id)
        assert first.wait(120)
        ctx.jobs.cancel(job.id)
        final = ctx.jobs.wait(job.id, timeout=60)
        assert final.state == "cancelled", final.error
        measured = ctx.db.query_one("SELECT COUNT(*) AS n FROM photo_checks")["n"]
        assert 1 <= measured < total
        summary = PhotoCheckService(ctx).report(character.id).summary
        assert summary["issues"]["not_checked"] == total - measured  # the window shows which are left
        # Resume (Jobs tab) measures the rest only and ends with every photo checked.
        ctx.jobs.resume(job.id)
        assert ctx.jobs.wait(job.id, timeout=120).state == "succeeded"
        assert "not_checked" not in PhotoCheckService(ctx).report(character.id).summary["issues"]
        assert ctx.db.query_one("SELECT COUNT(*) AS n FROM photo_checks")["n"] == total
    finally:
        ctx.jobs.shutdown(wait=5)
        ctx.close()
