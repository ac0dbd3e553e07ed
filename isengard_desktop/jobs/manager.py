"""The job manager: the one face the window and the CLI see of jobs (SPEC §4). Qt-free.

It persists jobs, queues them in lanes, runs each on a worker, turns the worker's events into state, and takes
back jobs a previous session left running. Listeners subscribe with a callback ``(job_id, event)``; they are
called from reader threads, so the window's bridge re-emits them as queued Qt signals and the CLI just prints.
Besides the worker's own events, the manager emits ``{"event": "state", "state": ...}``.

Its parts, one module each: the lanes and their locks (lanes.py), the serving worker of generation jobs
(resident.py), jobs of engines that need no worker process, run in a thread here (inprocess.py), filing images,
LoRAs and captions into the volume (filing.py), what a job's events mean and the state it ends in (outcome.py),
the rows and their in-memory fallback (records.py), orphan recovery (recovery.py).

A job's final state is the one its worker's ``done`` event carries (jobs/worker.py alone sends it). The manager
infers one only for a worker that ended without it (killed, crashed, or a remote job stopped before it ran):
cancelled when it was asked to stop and ended cleanly or was ended after the stop timeout, failed otherwise.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from isengard_desktop.base import atomic
from isengard_desktop.base.errors import ValidationError
from isengard_desktop.base.log import correlation, new_correlation_id
from isengard_desktop.jobs import protocol, recovery, remote_job
from isengard_desktop.jobs.filing import Filing
from isengard_desktop.jobs.inprocess import ThreadWorker, runs_in_process
from isengard_desktop.jobs.lanes import CPU_KINDS, DOWNLOAD_KINDS, DOWNLOAD_LANE, GPU_LANE, Lanes, lane_of
from isengard_desktop.jobs.outcome import Outcomes
from isengard_desktop.jobs.records import DB_ERRORS, JobRecords
from isengard_desktop.jobs.resident import RESIDENT_KINDS, ResidentWorker
from isengard_desktop.jobs.runner import WorkerProcess
from isengard_desktop.storage.db import Database
from isengard_desktop.storage.jobs_repo import RESUMABLE_STATES, JobRepository, JobRow
from isengard_desktop.storage.volume import Volume

log = structlog.get_logger(__name__)

Listener = Callable[[str, dict[str, Any]], None]
STOP_TIMEOUT_S = 120.0
RESUMABLE_KINDS = ("training", "download", "dataset_check")  # a check resumes from its cache: measured photos stay


def new_job_id() -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


class JobManager:
    def __init__(self, volume: Volume, db: Database, stop_timeout: float = STOP_TIMEOUT_S) -> None:
        self.volume = volume
        self.repo = JobRepository(db)
        self.stop_timeout = stop_timeout
        self._listeners: list[Listener] = []
        self._lock = threading.RLock()
        self._finished = threading.Condition(self._lock)
        self.records = JobRecords(volume, self.repo, self._lock)
        self.lanes = Lanes(volume.jobs_dir, retry=self._schedule)
        self.resident = ResidentWorker(self._lock, lambda: self.lanes.busy(GPU_LANE))
        self._outcomes = Outcomes(self.records, Filing(volume, self.repo))
        self._closing = False
        # Called (on a thread of their own) when a training job starts: e.g. ComfyUI unloads its models.
        self.before_training: list[Callable[[], None]] = []

    # listeners and state -----------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _publish(self, job_id: str, event: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(job_id, event)
            except Exception as exc:  # a broken listener must not stop the job's bookkeeping
                log.error("job_listener_failed", job_id=job_id, error=repr(exc))

    def set_state(self, job_id: str, state: str, **kwargs: Any) -> bool:
        """Record a state (in memory when the database cannot take it, records.py) and tell the listeners either
        way. Returns whether it was recorded."""
        recorded = self.records.set_state(job_id, state, **kwargs)
        self._publish(job_id, {"event": "state", "state": state, "error": kwargs.get("error")})
        return recorded

    def flush_unrecorded(self) -> None:
        self.records.flush_unrecorded()

    def unrecorded(self) -> dict[str, str]:
        return self.records.unrecorded()

    # queries -----------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRow:
        return self.records.get(job_id)

    def list(self, kind: str | None = None) -> list[JobRow]:
        return self.records.list(kind)

    def job_dir(self, job: JobRow) -> Path:
        return self.records.job_dir(job)

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """Every event the job's worker wrote (for charts and galleries of past runs)."""
        return self.records.events(job_id)

    def running_jobs(self, lane: str | None = None) -> list[str]:
        """Jobs this process is running; ``lane="gpu"`` leaves out downloads (they do not block a training)."""
        with self._lock:
            return self.lanes.running_jobs(lane)

    # submitting, resuming, cancelling ----------------------------------------------------------
    def submit(self, kind: str, engine: str, spec: dict[str, Any], character_id: int | None = None,
               meta: dict[str, Any] | None = None) -> JobRow:
        job_id = new_job_id()
        folder = self.volume.job_dir(job_id)
        folder.mkdir(parents=True)
        spec = {**spec, "output_dir": str(folder)}
        params = {"spec": spec, **(meta or {})}
        cid = new_correlation_id()
        self.repo.insert(job_id, kind, engine, character_id, params, str(folder.relative_to(self.volume.root)), cid)
        self._write_job_file(job_id, kind, engine, spec, cid)
        with correlation("job_submitted", cid, job_id=job_id):
            log.info("job_queued", job_id=job_id, kind=kind, engine=engine, character_id=character_id)
        self._publish(job_id, {"event": "state", "state": "queued"})
        self.lanes.owned.add(job_id)
        self._schedule()
        return self.get(job_id)

    def _write_job_file(self, job_id: str, kind: str, engine: str, spec: dict[str, Any], correlation_id: str) -> None:
        payload = {"job_id": job_id, "kind": kind, "engine": engine, "spec": spec, "correlation_id": correlation_id,
                   "models_dir": str(self.volume.models_dir), "volume_root": str(self.volume.root)}
        atomic.write_text(self.volume.job_dir(job_id) / protocol.JOB_FILE, json.dumps(payload, indent=2))

    def resume(self, job_id: str) -> JobRow:
        job = self.get(job_id)
        if remote_job.reattachable(job):
            # Running on its remote with nobody here following it (the app or the CLI died): follow it again; it
            # catches up from the events already read, or starts again from its checkpoint if it stopped there.
            self.set_state(job.id, "queued")
            self.lanes.owned.add(job.id)
            log.info("job_reattached", job_id=job.id, remote=remote_job.remote_name(job))
            self._schedule()
            return self.get(job.id)
        if job.kind not in RESUMABLE_KINDS:
            again = ("To caption the rest, run Caption all (or `isengard dataset autocaption`) again: it replaces "
                     "automatic captions and keeps yours." if job.kind == "caption" else
                     "To make these images again, select one in the Generate gallery and press Reuse parameters.")
            raise ValidationError(f"Job {job.id} is a {job.kind}; only training runs, downloads and photo checks "
                                  f"resume. {again}")
        if job.state not in RESUMABLE_STATES:
            raise ValidationError(f"Job {job.id} is {job.state}; only a cancelled, interrupted or failed job can be "
                                  "resumed.")
        spec = {**job.params["spec"], "resume": True}
        self.repo.set_params(job.id, {**job.params, "spec": spec})
        self._write_job_file(job.id, job.kind, job.engine, spec, job.correlation_id)
        (self.job_dir(job) / protocol.STOP_FILE).unlink(missing_ok=True)
        self.set_state(job.id, "queued")
        self.lanes.owned.add(job.id)
        log.info("job_resumed", job_id=job.id, correlation_id=job.correlation_id)
        self._schedule()
        return self.get(job.id)

    def cancel(self, job_id: str) -> JobRow:
        """Ask a running job to save a checkpoint and stop (ended after a timeout); drop a queued one."""
        job = self.get(job_id)
        with self._lock:
            worker = self.lanes.running.get(job.id)
            if job.state == "queued" and worker is None:
                self.set_state(job.id, "cancelled")
                return self.get(job.id)
            if job.state != "running":
                raise ValidationError(f"Job {job.id} is {job.state}; there is nothing to cancel.")
            (self.job_dir(job) / protocol.STOP_FILE).touch()
            log.info("job_cancel_requested", job_id=job.id, correlation_id=job.correlation_id)
            if worker is not None:
                timer = threading.Timer(self.stop_timeout, self._kill_if_alive, args=(job.id, worker))
                timer.daemon = True
                timer.start()
        if remote_job.remote_name(job):  # its stop file is written there, as here for a local job
            remote_job.request_stop(self, job)
        return self.get(job.id)

    def _kill_if_alive(self, job_id: str, cancelled_worker: Any) -> None:
        worker = self.lanes.running.get(job_id)
        # Only the worker that was asked to stop: a job resumed since then runs in a new one (found by the
        # real AI-Toolkit test: the old timer killed the resumed run 120 s after the first cancel).
        if worker is cancelled_worker and worker.alive():
            log.warning("job_killed_after_timeout", job_id=job_id, timeout_s=self.stop_timeout)
            self._outcomes.killed(job_id,
                f"The download did not stop within {self.stop_timeout:.0f} s and was ended; the bytes already "
                "downloaded are kept and Resume continues from them."
                if self.lanes.lane_of_running(job_id) == DOWNLOAD_LANE else
                f"The job did not stop within {self.stop_timeout:.0f} s and was ended; progress since its "
                "last checkpoint is lost.")
            worker.kill()

    # running -----------------------------------------------------------------------------------
    def _schedule(self) -> None:
        """Start the oldest queued job of each free lane (one GPU job and one download at a time)."""
        with self._lock:
            if self._closing:
                return
            for job, lane in self.lanes.next_jobs(self.repo.list(states=("queued",))):
                self._start(job, lane)

    def _start(self, job: JobRow, lane: str) -> None:
        # Under the manager's lock: a worker that ends at once waits in _on_exit until it is recorded as running.
        if not self.lanes.acquire(job.id, lane):
            return  # another Isengard process (the window or a CLI run) is using this lane: the lanes look again
        try:
            worker, pid = self._dispatch(job)
        except OSError as exc:
            self.lanes.release(job.id)
            self.set_state(job.id, "failed", error=f"The worker process could not start ({exc}).")
            return
        self.lanes.running[job.id] = worker
        self._outcomes.started(job.id, pid)
        self.set_state(job.id, "running", pid=pid)
        log.info("job_started", job_id=job.id, pid=pid, correlation_id=job.correlation_id)

    def _dispatch(self, job: JobRow) -> tuple[Any, int]:
        """Start the job: on its remote, on a worker of its own, in a thread here, or on the serving worker."""
        job_dir = self.job_dir(job)
        if remote_job.remote_name(job):  # sent to its remote and followed from here (jobs/remote_job.py)
            remote = remote_job.RemoteJob(self, job, self._on_event, self._on_exit)
            return remote, remote.start()
        if job.kind in DOWNLOAD_KINDS + CPU_KINDS:  # beside the GPU lane: leaves the serving worker and its timer alone
            lock = self.lanes.lock(lane_of(job.kind))
            worker = WorkerProcess(job.id, job_dir, job.correlation_id, self._on_event, self._on_exit,
                                   pass_fds=lock.inheritable_fds() if lock else ())
            return worker, worker.start()
        self.resident.pause()
        if job.kind not in RESIDENT_KINDS:
            self.resident.close("a training job needs the GPU memory")
            for hook in self.before_training:
                threading.Thread(target=_run_hook, args=(hook,), name="before-training", daemon=True).start()
            # The worker inherits the GPU lock's descriptor: if this process dies, the worker still holds the lock.
            worker = WorkerProcess(job.id, job_dir, job.correlation_id, self._on_event, self._on_exit,
                                   pass_fds=self.lanes.gpu.inheritable_fds())
            return worker, worker.start()
        if runs_in_process(job.engine):  # an HTTP client of its server: no process to start (E7)
            thread = ThreadWorker(job.id, job_dir, job.correlation_id, self._on_event, self._on_exit)
            return thread, thread.start()
        resident = self.resident.run(job.id, job_dir, job.correlation_id, self._on_event, self._on_exit,
                                     pass_fds=self.lanes.gpu.inheritable_fds())
        assert resident.proc is not None
        return resident, resident.proc.pid

    def _on_event(self, job_id: str, event: dict[str, Any]) -> None:
        self._publish(job_id, self._outcomes.book(job_id, event))

    def _on_exit(self, job_id: str, returncode: int, tail: list[str]) -> None:
        # Whatever fails here (a full disk refusing the database write), the job ends in memory with the worker's
        # own state and reason, the lane's lock is released and the waiters are woken (E25).
        with self._lock:
            try:
                lane = self.lanes.release(job_id)
                # Stopped before any worker ran (a remote job cancelled while it was being sent): its stop file.
                stopped = (self.volume.job_dir(job_id) / protocol.STOP_FILE).exists()
                state, error, result = self._outcomes.final(job_id, returncode, tail, stopped)
                self.set_state(job_id, state, error=error if state != "succeeded" else None, result=result)
                log.info("job_finished", job_id=job_id, state=state, returncode=returncode)
                self.resident.job_ended(lane == GPU_LANE, self._closing)
            finally:
                self._finished.notify_all()
        if not self._closing:
            try:
                self._schedule()
            except DB_ERRORS as exc:
                log.error("job_schedule_failed", error=str(exc))

    def wait(self, job_id: str, timeout: float | None = None) -> JobRow:
        """Block until the job is no longer queued or running (CLI and tests).

        Polls the database as well as waiting for this process's own workers, so a job run by another
        Isengard process is seen to finish too.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        job: JobRow | None = None
        with self._finished:
            while True:
                self.flush_unrecorded()
                try:
                    job = self.get(job_id)
                except DB_ERRORS as exc:  # a database that cannot be read now: the state kept in memory still counts
                    log.warning("job_state_unreadable", job_id=job_id, error=str(exc))
                    if job is None:
                        raise
                    job = self.records.overlay(job)
                if job.state not in ("queued", "running"):
                    return job
                left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if left <= 0:
                    return job
                self._finished.wait(left)

    def let_go(self, job_id: str) -> None:
        """Stop following a running job without stopping its worker (a second Ctrl+C in the CLI): shutdown neither
        waits for it nor kills it. Asked to stop, the worker saves and ends on its own, still holding the GPU lock
        (E26); the next start's recovery takes the job back."""
        with self._lock:
            if self.lanes.running.pop(job_id, None) is not None:
                log.warning("job_let_go", job_id=job_id)

    # start-up and shut-down --------------------------------------------------------------------
    def recover(self, queued: bool = True) -> list[JobRow]:
        """Mark jobs a previous session left running (or queued) as interrupted; returns them (recovery.py)."""
        return recovery.recover(self, queued)

    def shutdown(self, wait: float = 30.0) -> None:
        """Ask running workers to save and stop (the app is quitting)."""
        self._closing = True
        self.flush_unrecorded()
        self.lanes.stop_retrying()
        with self._lock:
            workers = list(self.lanes.running.values())
            resident = self.resident.shutdown()
            if resident is not None and resident not in workers:
                workers.append(resident)
        for worker in workers:
            worker.request_stop()
        for worker in workers:
            if isinstance(worker, ThreadWorker):
                worker.join(wait)
            elif worker.proc is not None:
                try:
                    worker.proc.wait(timeout=wait)
                except Exception:
                    worker.kill()

    def delete_folder(self, job_id: str) -> None:
        job = self.get(job_id)
        shutil.rmtree(self.job_dir(job), ignore_errors=True)


def _run_hook(hook: Callable[[], None]) -> None:
    try:
        hook()
    except Exception as exc:  # advisory: the job runs either way
        log.warning("before_training_hook_failed", error=repr(exc))
