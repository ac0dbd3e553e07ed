"""Orphan recovery at start-up: jobs a previous session left running or queued (SPEC §4).

A job whose worker is gone becomes "interrupted" (resumable from its checkpoint), or "failed" with the reason its
worker wrote into the job's record when the database could not take it (E25). A worker still running for another
Isengard process (the CLI) is left alone; one whose app died is asked to save and stop, then taken back. Before
that, the job's step catches up with the checkpoints the orphaned worker wrote on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from isengard_desktop.jobs import protocol, remote_job
from isengard_desktop.jobs.inprocess import runs_in_process
from isengard_desktop.jobs.lanes import DOWNLOAD_KINDS
from isengard_desktop.storage.jobs_repo import JobRow

if TYPE_CHECKING:
    from isengard_desktop.jobs.manager import JobManager

log = structlog.get_logger(__name__)

ORPHAN_STOP_TIMEOUT_S = 60.0


def recover(jobs: JobManager, queued: bool = True) -> list[JobRow]:
    """Mark jobs left running or queued by a previous session as interrupted; returns them.

    ``queued=False`` leaves queued jobs alone: a queued job records no process, so a live window's queued job
    cannot be told from a dead one's (``isengard train`` uses this; the window's start takes them all)."""
    recovered = []
    for job in jobs.repo.list(states=("running", "queued") if queued else ("running",)):
        if job.id in jobs.running_jobs():
            continue
        if job.state == "running" and remote_job.remote_name(job):
            continue  # it runs on its remote whoever followed it: `jobs resume` re-attaches (jobs/remote_job.py)
        if job.state == "running" and runs_in_process(job.engine):
            if _app_alive(job):
                continue  # another Isengard process runs it in one of its threads
        elif _worker_alive(job.pid, job.id):
            if not _orphaned(job.pid):
                continue  # another Isengard process (e.g. the CLI) is running it
            # Its app died: ask it to save a checkpoint and stop, then take the job back.
            (jobs.job_dir(job) / protocol.STOP_FILE).touch()
            _wait_for_exit(job.pid, ORPHAN_STOP_TIMEOUT_S)
        _catch_up_progress(jobs, job)
        failure = _reported_failure(jobs, job)
        if failure is not None:  # the worker said why it failed; the database could not take it then (E25)
            jobs.set_state(job.id, "failed", error=failure)
            log.warning("job_failure_recovered", job_id=job.id, correlation_id=job.correlation_id)
            recovered.append(jobs.get(job.id))
            continue
        jobs.set_state(job.id, "interrupted",
                       error="Isengard Desktop closed while this download was running; resume it to continue "
                             "from the bytes already downloaded." if job.kind in DOWNLOAD_KINDS else
                             "Isengard Desktop closed while this job was running; resume it to continue "
                             "from its last checkpoint.")
        log.warning("job_interrupted", job_id=job.id, previous_state=job.state, correlation_id=job.correlation_id)
        recovered.append(jobs.get(job.id))
    return recovered


def _reported_failure(jobs: JobManager, job: JobRow) -> str | None:
    """The reason a worker gave when it ended failed, from the job's record of events (None if it did not)."""
    events = jobs.events(job.id)
    done = [e for e in events if e.get("event") == "done"]
    if not done or done[-1].get("state") != "failed":
        return None
    errors = [str(e.get("message")) for e in events if e.get("event") == "error" and e.get("message")]
    return errors[-1] if errors else "The job failed; see its log."


def _catch_up_progress(jobs: JobManager, job: JobRow) -> None:
    """A worker that outlived its app went on (to its checkpoint) with nobody storing its progress; it wrote
    its events into the job's record itself: the job's step becomes its newest checkpoint's, if later."""
    steps = [int(e["step"]) for e in jobs.events(job.id) if e.get("event") == "checkpoint" and e.get("step")]
    if steps and max(steps) > int(job.progress.get("step") or 0):
        jobs.repo.set_progress(job.id, {**job.progress, "step": max(steps)})


def _orphaned(pid: int | None) -> bool:
    """Whether the worker's parent (the app or CLI that started it) is gone."""
    import psutil

    try:
        parent = psutil.Process(pid).parent()
    except (psutil.Error, OSError):
        return True
    return parent is None or parent.pid == 1 or "isengard" not in " ".join(parent.cmdline())


def _wait_for_exit(pid: int | None, timeout: float) -> None:
    import psutil

    try:
        process = psutil.Process(pid)
        process.wait(timeout=timeout)
    except psutil.TimeoutExpired:
        log.warning("orphan_worker_killed", pid=pid, timeout_s=timeout)
        process.kill()
    except (psutil.Error, OSError):
        return


def _worker_alive(pid: int | None, job_id: str) -> bool:
    """Whether ``pid`` is still a worker of this job (run by another Isengard process, e.g. the CLI)."""
    if not pid:
        return False
    import psutil

    try:
        cmdline = " ".join(psutil.Process(pid).cmdline())
    except (psutil.Error, OSError):
        return False
    return protocol.WORKER_MODULE in cmdline and job_id in cmdline


def _app_alive(job: JobRow) -> bool:
    """Whether the Isengard process that runs ``job`` in a thread of its own (its recorded pid) is still alive."""
    if not job.pid:
        return False
    import psutil

    try:
        return "isengard" in " ".join(psutil.Process(job.pid).cmdline())
    except (psutil.Error, OSError):
        return False
