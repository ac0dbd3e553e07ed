"""Job manager lifecycle with real worker subprocesses (no engine fakes): failures, recovery, cancel of queued jobs."""

from __future__ import annotations

import json
from pathlib import Path

from isengard_desktop.context import AppContext
from isengard_desktop.jobs import protocol


def _spec(tmp_path: Path) -> dict:
    return {"base_model": "none", "base_model_name": "none", "output_dir": "", "dataset": [],
            "trigger_word": "ohwx", "lora_name": "x"}


def test_unavailable_engine_fails_with_its_reason_and_logs(tmp_path: Path) -> None:
    ctx = AppContext.open(tmp_path / "vol", "fast-test")
    try:
        events: list[tuple[str, dict]] = []
        ctx.jobs.subscribe(lambda job_id, event: events.append((job_id, event)))
        job = ctx.jobs.submit("training", "video", _spec(tmp_path))
        final = ctx.jobs.wait(job.id, timeout=60)
        assert final.state == "failed"
        assert "Video generation is not part of this version" in (final.error or "")
        kinds = [e["event"] for j, e in events if j == job.id]
        assert kinds[0] == "state" and "error" in kinds and "done" in kinds and kinds[-1] == "state"
        # The worker's own log lines land in the job log with the job's correlation id.
        lines = [json.loads(line) for line in (ctx.jobs.job_dir(final) / protocol.LOG_FILE).read_text().splitlines()]
        assert any(line.get("event") == "worker_started" for line in lines)
        assert {line["correlation_id"] for line in lines} == {final.correlation_id}
    finally:
        ctx.close()


def test_unknown_engine_is_a_failed_job_not_a_stuck_one(tmp_path: Path) -> None:
    ctx = AppContext.open(tmp_path / "vol", "fast-test")
    try:
        job = ctx.jobs.submit("training", "no-such-engine", _spec(tmp_path))
        final = ctx.jobs.wait(job.id, timeout=60)
        assert final.state == "failed" and "no-such-engine" in (final.error or "")
    finally:
        ctx.close()


def test_jobs_left_running_by_a_dead_app_become_interrupted(tmp_path: Path) -> None:
    ctx = AppContext.open(tmp_path / "vol", "fast-test")
    ctx.jobs.repo.insert("20260101-000000-dead01", "training", "diffusers", None, {"spec": _spec(tmp_path)},
                         "jobs/20260101-000000-dead01", "cid0001")
    ctx.jobs.repo.set_state("20260101-000000-dead01", "running", pid=2**22 + 12345)  # no such process
    ctx.close()

    reopened = AppContext.open(tmp_path / "vol", "fast-test")
    try:
        recovered = reopened.jobs.recover()
        assert [job.id for job in recovered] == ["20260101-000000-dead01"]
        job = reopened.jobs.get("20260101-000000-dead01")
        assert job.state == "interrupted" and "resume" in (job.error or "")
        assert reopened.jobs.recover() == []  # only once
    finally:
        reopened.close()


def test_a_job_run_in_an_apps_thread_is_interrupted_only_when_that_app_is_gone(tmp_path: Path) -> None:
    """ComfyUI jobs run in a thread of the app or CLI that started them (jobs/inprocess.py): the row's pid is that
    process. Recovery leaves the job alone while that Isengard process lives and takes it back once it is gone."""
    import subprocess
    import sys

    ctx = AppContext.open(tmp_path / "vol", "fast-test")
    # Another Isengard process, alive: a stand-in whose command line names isengard, as the CLI's and window's do.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "isengard"])
    try:
        for job_id, pid in (("20260101-000000-live01", other.pid), ("20260101-000000-dead02", 2**22 + 12346)):
            ctx.jobs.repo.insert(job_id, "generation", "comfyui", None, {"spec": {}}, f"jobs/{job_id}", "cid")
            ctx.jobs.repo.set_state(job_id, "running", pid=pid)
        assert [job.id for job in ctx.jobs.recover()] == ["20260101-000000-dead02"]
        assert ctx.jobs.get("20260101-000000-live01").state == "running"
        other.kill()
        other.wait()
        assert [job.id for job in ctx.jobs.recover()] == ["20260101-000000-live01"]
        assert ctx.jobs.get("20260101-000000-live01").state == "interrupted"
    finally:
        other.kill()
        ctx.close()
