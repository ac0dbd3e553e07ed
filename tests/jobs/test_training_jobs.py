"""Training jobs through the job manager with the real built-in trainer on the tiny model."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
from safetensors import safe_open

from isengard_desktop.context import AppContext
from isengard_desktop.core.training import build_spec


def _submit(ctx: AppContext, **overrides):
    character = ctx.characters.resolve("Ada Lovelace")
    spec, check = build_spec(ctx.volume, ctx.dataset, character, ctx.mode, "quick",
                             {"steps": 24, "save_every": 6, "sample_every": 12, **overrides})
    assert check.ok, check.problems
    return ctx.jobs.submit("training", "diffusers", spec.to_dict(), character.id, meta={"preset": "quick"})


def _tensors(path: Path) -> dict:
    with safe_open(str(path), "pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}


def _on_step(ctx: AppContext, job_id: str, step: int, action) -> None:
    fired = threading.Event()

    def listener(jid: str, event: dict) -> None:
        if jid == job_id and event.get("event") == "progress" and event["step"] >= step and not fired.is_set():
            fired.set()
            action()

    ctx.jobs.subscribe(listener)


def test_a_run_ends_with_a_lora_on_the_character(trained_ctx: AppContext) -> None:
    ctx = trained_ctx
    seen: list[str] = []
    ctx.jobs.subscribe(lambda jid, event: seen.append(event["event"]))
    job = _submit(ctx)
    final = ctx.jobs.wait(job.id, timeout=180)
    assert final.state == "succeeded", final.error
    assert final.progress["step"] == 24
    assert {"progress", "sample", "checkpoint", "artifact", "done", "gpu"} - set(seen) <= {"gpu"}
    lora = Path(final.result["lora"])
    assert lora.is_file() and lora.parent == ctx.volume.loras_dir
    assert ctx.characters.resolve("Ada Lovelace").lora_state == "1 LoRA"
    with safe_open(str(lora), "pt") as handle:
        meta = handle.metadata()
    assert meta["isengard.trigger_word"] == "ohwx_ada" and meta["isengard.engine"] == "diffusers"
    assert len(ctx.jobs.events(job.id)) >= 24  # the run can be replayed for the chart of a past run


def test_cancel_then_resume_matches_an_uninterrupted_run(trained_ctx: AppContext) -> None:
    ctx = trained_ctx
    straight = ctx.jobs.wait(_submit(ctx).id, timeout=180)
    assert straight.state == "succeeded"

    job = _submit(ctx)
    _on_step(ctx, job.id, 9, lambda: ctx.jobs.cancel(job.id))
    cancelled = ctx.jobs.wait(job.id, timeout=180)
    assert cancelled.state == "cancelled"
    stopped_at = cancelled.progress["step"]
    assert 9 <= stopped_at < 24
    resumed = ctx.jobs.wait(ctx.jobs.resume(job.id).id, timeout=180)
    assert resumed.state == "succeeded", resumed.error

    a, b = _tensors(Path(straight.result["lora"])), _tensors(Path(resumed.result["lora"]))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a), "resume must continue the same run"
    losses = {e["step"]: e["loss"] for e in ctx.jobs.events(straight.id) if e["event"] == "progress"}
    resumed_losses = {e["step"]: e["loss"] for e in ctx.jobs.events(job.id) if e["event"] == "progress"}
    assert all(resumed_losses[s] == losses[s] for s in range(stopped_at + 1, 25))


def test_a_killed_worker_becomes_a_failed_job_with_its_last_output(trained_ctx: AppContext) -> None:
    ctx = trained_ctx
    job = _submit(ctx, steps=4000, save_every=1000, sample_every=1000)
    _on_step(ctx, job.id, 3, lambda: os.kill(ctx.jobs.get(job.id).pid, signal.SIGKILL))
    final = ctx.jobs.wait(job.id, timeout=180)
    assert final.state == "failed"
    assert "ended unexpectedly" in final.error and "-9" in final.error
    assert ctx.jobs.running_jobs() == []


def test_a_killed_app_leaves_an_interrupted_job_that_resumes(trained_ctx: AppContext, tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    ctx = trained_ctx
    cli = subprocess.Popen(
        [sys.executable, "-m", "isengard_desktop", "--volume", str(ctx.volume.root), "train", "Ada Lovelace",
         "--preset", "quick", "--engine", "diffusers", "--steps", "20000", "--save-every", "100000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        jobs = ctx.jobs.list()
        if jobs and jobs[0].progress.get("step", 0) > 5:
            break
        time.sleep(0.2)
    job_id = ctx.jobs.list()[0].id
    cli.kill()  # the app dies without a word
    cli.wait()
    recovered = ctx.jobs.recover()
    assert [job.id for job in recovered] == [job_id]
    job = ctx.jobs.get(job_id)
    assert job.state == "interrupted"
    checkpoints = list((ctx.jobs.job_dir(job) / "checkpoints").iterdir())
    assert checkpoints, "the orphaned worker saved a checkpoint before stopping"
    resumed_at = int(checkpoints[-1].name.split("_")[1])
    assert resumed_at > 5
    # The job shows the step it will resume from, not the older one stored before the app died.
    assert job.progress["step"] == resumed_at, (job.progress, resumed_at)
    ctx.jobs.repo.set_params(job_id, {**job.params, "spec": {**job.params["spec"], "steps": resumed_at + 10}})
    final = ctx.jobs.wait(ctx.jobs.resume(job_id).id, timeout=180)
    assert final.state == "succeeded" and final.progress["step"] == resumed_at + 10


def test_one_gpu_job_at_a_time_across_processes(trained_ctx: AppContext) -> None:
    """Two managers on one volume (the window and a CLI run): the second job waits for the first."""
    first = trained_ctx
    second = AppContext.open(first.volume.root, "fast-test")
    long_job_id: list[str] = []
    try:
        running = threading.Event()
        first.jobs.subscribe(lambda jid, e: running.set() if jid in long_job_id and e.get("event") == "progress"
                             else None)
        long_job = _submit(first, steps=20000, save_every=100000, sample_every=100000)
        long_job_id.append(long_job.id)
        assert running.wait(60), "the first job must start and report a step"
        assert first.jobs.get(long_job.id).state == "running"
        # Watch the second process's real GPU lock: it must try, be refused, and try again, while still queued.
        refused = threading.Semaphore(0)
        lock = second.jobs.lanes.gpu
        real_try = lock.try_acquire

        def watched_try() -> bool:
            got = real_try()
            if not got:
                refused.release()
            return got

        lock.try_acquire = watched_try
        short_job = _submit(second, steps=6, save_every=6, sample_every=6)
        assert refused.acquire(timeout=30) and refused.acquire(timeout=30), "the second job never asked for the GPU"
        assert second.jobs.get(short_job.id).state == "queued", "the GPU is busy: the second job must wait"
        assert first.jobs.get(long_job.id).state == "running"
        first.jobs.cancel(long_job.id)
        assert first.jobs.wait(long_job.id, timeout=120).state == "cancelled"
        assert second.jobs.wait(short_job.id, timeout=120).state == "succeeded"
    finally:
        second.jobs.shutdown(wait=10)
        second.close()


@pytest.mark.slow
def test_the_stop_timeout_of_a_cancel_never_kills_the_resumed_run(trained_ctx: AppContext) -> None:
    """A cancel arms a kill after stop_timeout for the worker it stopped; a resume started before that timeout
    runs in a new worker, which must live past it (the real AI-Toolkit run was killed that way)."""
    import time

    ctx = trained_ctx
    ctx.jobs.stop_timeout = 30.0
    job = _submit(ctx, steps=20000, save_every=100000, sample_every=100000)
    cancelled_at: list[float] = []

    def cancel() -> None:
        cancelled_at.append(time.monotonic())
        ctx.jobs.cancel(job.id)

    _on_step(ctx, job.id, 3, cancel)
    assert ctx.jobs.wait(job.id, timeout=120).state == "cancelled"
    ctx.jobs.resume(job.id)
    while ctx.jobs.get(job.id).state != "running" and time.monotonic() < cancelled_at[0] + 60:
        time.sleep(0.1)
    # The resumed worker runs while the first cancel's timer is still armed, or this test proves nothing.
    assert time.monotonic() < cancelled_at[0] + ctx.jobs.stop_timeout, "resume took longer than the stop timeout"
    while time.monotonic() < cancelled_at[0] + ctx.jobs.stop_timeout + 2.0:  # the timer fires in this window
        assert ctx.jobs.get(job.id).state == "running", ctx.jobs.get(job.id).error
        time.sleep(0.2)
    ctx.jobs.stop_timeout = 120.0
    ctx.jobs.cancel(job.id)
    final = ctx.jobs.wait(job.id, timeout=120)
    assert final.state == "cancelled" and "did not stop" not in (final.error or "")
