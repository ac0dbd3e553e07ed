"""The job manager: persists jobs, runs GPU jobs one at a time in worker subprocesses, turns their
events into state, and recovers jobs that were running when the app died (SPEC §4).

Qt-free. Listeners subscribe with a callback ``(job_id, event)``; they are called from reader
threads, so the window's bridge re-emits them as queued Qt signals and the CLI just prints.
Besides the worker's own events, the manager emits ``{"event": "state", "state": ...}``.

Generation jobs run on one serving worker that outlives them (``WorkerProcess(serve=True)``), so an
engine's loaded model serves the next request; it is closed before a training job starts (the GPU
memory goes to training), when the app quits, and after ``RESIDENT_IDLE_S`` without work.

Jobs run in two lanes. The GPU lane (training, generation) holds the volume's GPU lock; the download lane (kind
"download", the model manager's hub downloads) holds a lock of its own, so one download runs at a time across
every Isengard process and alongside a training run, never waiting for the GPU nor taking it. The CPU lane (kind
"dataset_check") works the same way with a lock of its own: checking photos never waits behind a training run.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from isengard_desktop.base import atomic
from isengard_desktop.base.errors import NotFoundError, ValidationError
from isengard_desktop.base.log import correlation, new_correlation_id
from isengard_desktop.storage.names import safe_filename
from isengard_desktop.jobs import protocol, remote_job
from isengard_desktop.storage.gpu_lock import GpuLock
from isengard_desktop.jobs.runner import WorkerProcess
from isengard_desktop.storage.db import Database
from isengard_desktop.storage.jobs_repo import RESUMABLE_STATES, JobRepository, JobRow
from isengard_desktop.storage.volume import Volume

log = structlog.get_logger(__name__)

Listener = Callable[[str, dict[str, Any]], None]
# What a generation's database row keeps of its request (for the gallery and "Reuse parameters").
GENERATION_PARAMS = ("prompt", "loras", "aspect", "width", "height", "steps", "guidance", "seed", "batch_count",
                     "sampler", "scheduler", "advanced", "base_model_name")
STOP_TIMEOUT_S = 120.0
PROGRESS_STORE_INTERVAL_S = 0.5
ORPHAN_STOP_TIMEOUT_S = 60.0
LOCK_RETRY_S = 2.0
RESIDENT_IDLE_S = 15 * 60.0
RESIDENT_KINDS = ("generation",)
DOWNLOAD_KINDS = ("download",)  # jobs of the download lane: no GPU lock, one at a time beside the GPU lane
# Jobs of the CPU lane (checking a dataset's photos): no GPU lock either, so a check never waits behind a training.
CPU_KINDS = ("dataset_check",)
RESUMABLE_KINDS = ("training", "download", "dataset_check")  # a check resumes from its cache: measured photos stay
GPU_LANE, DOWNLOAD_LANE, CPU_LANE = "gpu", "download", "cpu"
# What a write to the volume's database can raise when the disk is full or the file is unwritable: the job's
# bookkeeping keeps going in memory (jobs/manager.py _set_state), never stops the readers or the waiters.
DB_ERRORS = (sqlite3.Error, OSError)


def lane_of(kind: str) -> str:
    if kind in CPU_KINDS:
        return CPU_LANE
    return DOWNLOAD_LANE if kind in DOWNLOAD_KINDS else GPU_LANE


def job_lane(job: JobRow) -> str:
    """A job's lane: its remote's own (jobs/remote_job.py: one per remote machine) or its kind's here."""
    return remote_job.lane(job) or lane_of(job.kind)


def new_job_id() -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


class JobManager:
    def __init__(self, volume: Volume, db: Database, stop_timeout: float = STOP_TIMEOUT_S) -> None:
        self.volume = volume
        self.repo = JobRepository(db)
        self.stop_timeout = stop_timeout
        self._listeners: list[Listener] = []
        self._lock = threading.RLock()
        self._running: dict[str, WorkerProcess] = {}
        self._finished = threading.Condition(self._lock)
        self._last_error: dict[str, str] = {}
        self._done_state: dict[str, str] = {}
        self._results: dict[str, dict[str, Any]] = {}
        self._progress: dict[str, tuple[float, dict[str, Any]]] = {}  # newest progress, time last stored
        # States the database could not take (disk full): kept here, shown by get()/wait(), written when it can.
        self._unrecorded: dict[str, tuple[str, dict[str, Any], str]] = {}
        self._bookkeeping_error: dict[str, str] = {}  # a finished LoRA or image that could not be stored
        self._closing = False
        self._gpu = GpuLock(volume.jobs_dir / ".gpu.lock")
        # The same kind of OS-held lock for the download lane: one download per volume, released if we die.
        self._download_lock = GpuLock(volume.jobs_dir / ".download.lock")
        self._cpu_lock = GpuLock(volume.jobs_dir / ".cpu.lock")  # one dataset check per volume at a time
        self._lane: dict[str, str] = {}  # running job -> its lane
        self._owned: set[str] = set()  # jobs this process submitted or resumed: the ones it runs
        self._retry: threading.Timer | None = None
        self._resident: WorkerProcess | None = None  # the serving worker of generation jobs
        self._idle_timer: threading.Timer | None = None
        self.resident_idle_s = RESIDENT_IDLE_S
        # Called (on a thread of their own) when a training job starts: e.g. ComfyUI unloads its models.
        self.before_training: list[Callable[[], None]] = []

    # listeners ---------------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _publish(self, job_id: str, event: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(job_id, event)
            except Exception as exc:  # a broken listener must not stop the job's bookkeeping
                log.error("job_listener_failed", job_id=job_id, error=repr(exc))

    def _set_state(self, job_id: str, state: str, **kwargs: Any) -> bool:
        """Record a state and tell the listeners. If the database cannot take it (disk full), the state is kept in
        memory (``get`` and ``wait`` show it) and written at the next write that succeeds; listeners hear it either
        way. Returns whether it was recorded."""
        self.flush_unrecorded()
        with self._lock:
            try:
                self.repo.set_state(job_id, state, **kwargs)
                self._unrecorded.pop(job_id, None)
                recorded = True
            except DB_ERRORS as exc:
                self._unrecorded[job_id] = (state, kwargs, str(exc))
                log.error("job_state_unrecorded", job_id=job_id, state=state, error=str(exc))
                recorded = False
        self._publish(job_id, {"event": "state", "state": state, "error": kwargs.get("error")})
        return recorded

    def flush_unrecorded(self) -> None:
        """Write the states the database could not take earlier; those it still cannot take stay in memory."""
        with self._lock:
            for job_id, (state, kwargs, _why) in list(self._unrecorded.items()):
                try:
                    self.repo.set_state(job_id, state, **kwargs)
                except DB_ERRORS:
                    return  # still full: try again at the next write
                self._unrecorded.pop(job_id, None)
                log.info("job_state_recorded_late", job_id=job_id, state=state)

    def unrecorded(self) -> dict[str, str]:
        """Jobs whose newest state is only in memory, with why the database refused it."""
        with self._lock:
            return {job_id: why for job_id, (_s, _k, why) in self._unrecorded.items()}

    def _store_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        try:
            self.repo.set_progress(job_id, progress)
        except DB_ERRORS as exc:  # the newest progress stays in memory and goes in with the next write that works
            log.warning("job_progress_unrecorded", job_id=job_id, error=str(exc))

    def _overlay(self, job: JobRow) -> JobRow:
        pending = self._unrecorded.get(job.id)
        if pending is None:
            return job
        state, kwargs, why = pending
        error = kwargs.get("error")
        note = (f"(Not yet saved in the volume's database, which refused it: {why}; it is saved once there is room, "
                "or the job shows as interrupted at the next start.)")
        return dataclasses.replace(job, state=state, error=f"{error} {note}" if error else note,
                                   result=kwargs.get("result") or job.result)

    # queries -----------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRow:
        job = self.repo.get(job_id)
        if job is None:
            matches = self.repo.find(job_id)
            if len(matches) == 1:
                return self._overlay(matches[0])
            raise NotFoundError(f"There is no job {job_id!r}; `isengard jobs list` shows them.")
        return self._overlay(job)

    def list(self, kind: str | None = None) -> list[JobRow]:
        return [self._overlay(job) for job in self.repo.list(kind=kind)]

    def job_dir(self, job: JobRow) -> Path:
        return self.volume.root / job.folder

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """Every event the job's worker wrote (for charts and galleries of past runs)."""
        path = self.job_dir(self.get(job_id)) / protocol.EVENTS_FILE
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            event = protocol.decode(line)
            if event:
                out.append(event)
        return out

    # submitting --------------------------------------------------------------------------------
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
        self._owned.add(job_id)
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
            self._set_state(job.id, "queued")
            self._owned.add(job.id)
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
        self._set_state(job.id, "queued")
        self._owned.add(job.id)
        log.info("job_resumed", job_id=job.id, correlation_id=job.correlation_id)
        self._schedule()
        return self.get(job.id)

    def cancel(self, job_id: str) -> JobRow:
        """Ask a running job to save a checkpoint and stop (killed after a timeout); drop a queued one."""
        job = self.get(job_id)
        with self._lock:
            worker = self._running.get(job.id)
            if job.state == "queued" and worker is None:
                self._set_state(job.id, "cancelled")
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
        worker = self._running.get(job_id)
        # Only the worker that was asked to stop: a job resumed since then runs in a new one (found by the
        # real AI-Toolkit test: the old timer killed the resumed run 120 s after the first cancel).
        if worker is cancelled_worker and worker.alive():
            log.warning("job_killed_after_timeout", job_id=job_id, timeout_s=self.stop_timeout)
            self._last_error[job_id] = (
                f"The download did not stop within {self.stop_timeout:.0f} s and was ended; the bytes already "
                "downloaded are kept and Resume continues from them."
                if self._lane.get(job_id) == DOWNLOAD_LANE else
                f"The job did not stop within {self.stop_timeout:.0f} s and was ended; progress since its "
                "last checkpoint is lost."
            )
            self._done_state[job_id] = "cancelled"
            worker.kill()

    # running -----------------------------------------------------------------------------------
    def _lane_busy(self, lane: str) -> bool:
        return any(self._lane.get(job_id, GPU_LANE) == lane for job_id in self._running)

    def _schedule(self) -> None:
        """Start the oldest queued job of each lane whose lane is free (one GPU job and one download at a time)."""
        with self._lock:
            if self._closing:
                return
            queued = sorted((j for j in self.repo.list(states=("queued",)) if j.id in self._owned),
                            key=lambda j: j.created_at)
            lanes = dict.fromkeys([DOWNLOAD_LANE, CPU_LANE, GPU_LANE, *(job_lane(j) for j in queued)])
            for lane in lanes:
                waiting = [j for j in queued if job_lane(j) == lane]
                if waiting and not self._lane_busy(lane):
                    self._start(waiting[0], lane)

    def _start(self, job: JobRow, lane: str) -> None:
        lock = self._lane_lock(lane)
        if lock is not None and not lock.try_acquire():
            # Another Isengard process (the window or a CLI run) is using this lane: look again shortly.
            if self._retry is None:
                self._retry = threading.Timer(LOCK_RETRY_S, self._retry_schedule)
                self._retry.daemon = True
                self._retry.start()
            return
        self._last_error.pop(job.id, None)
        self._done_state.pop(job.id, None)
        self._lane[job.id] = lane
        try:
            worker, pid = self._dispatch(job)
        except OSError as exc:
            self._running.pop(job.id, None)
            self._lane.pop(job.id, None)
            if lock is not None:
                lock.release()
            self._set_state(job.id, "failed", error=f"The worker process could not start ({exc}).")
            return
        self._results.setdefault(job.id, {})["worker_pid"] = pid  # kept after the run, unlike the pid column
        self._set_state(job.id, "running", pid=pid)
        log.info("job_started", job_id=job.id, pid=pid, correlation_id=job.correlation_id)

    def _lane_lock(self, lane: str) -> GpuLock | None:
        """The local lock of a lane; a remote's lane has none here: the remote worker holds that machine's own."""
        if lane.startswith(remote_job.LANE_PREFIX):
            return None
        if lane == CPU_LANE:
            return self._cpu_lock
        return self._download_lock if lane == DOWNLOAD_LANE else self._gpu

    def _dispatch(self, job: JobRow) -> tuple[WorkerProcess, int]:
        """Start the job: on the serving worker for generation, on a worker of its own otherwise."""
        if remote_job.remote_name(job):  # sent to its remote and followed from here (jobs/remote_job.py)
            remote = remote_job.RemoteJob(self, job, self._on_event, self._on_exit)
            self._running[job.id] = remote  # type: ignore[assignment]
            return remote, remote.start()  # type: ignore[return-value]
        if job.kind in DOWNLOAD_KINDS + CPU_KINDS:  # beside the GPU lane: leaves the serving worker and its timer alone
            lock = self._cpu_lock if job.kind in CPU_KINDS else self._download_lock
            worker = WorkerProcess(job.id, self.job_dir(job), job.correlation_id, self._on_event, self._on_exit,
                                   pass_fds=lock.inheritable_fds())
            self._running[job.id] = worker
            return worker, worker.start()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if job.kind not in RESIDENT_KINDS:
            self._close_resident("a training job needs the GPU memory")
            for hook in self.before_training:
                threading.Thread(target=_run_hook, args=(hook,), name="before-training", daemon=True).start()
            # The worker inherits the GPU lock's descriptor: if this process dies, the worker still holds the lock.
            worker = WorkerProcess(job.id, self.job_dir(job), job.correlation_id, self._on_event, self._on_exit,
                                   pass_fds=self._gpu.inheritable_fds())
            self._running[job.id] = worker
            return worker, worker.start()
        resident = self._resident
        if resident is not None and resident.alive() and resident.idle():
            resident.assign(job.id, self.job_dir(job), job.correlation_id)
        else:
            # The serving worker shares the same descriptor (the manager keeps one open file for the lock): it
            # holds the lock during a generation even if this process dies; while it idles the lock is released.
            resident = WorkerProcess(job.id, self.job_dir(job), job.correlation_id, self._on_event, self._on_exit,
                                     serve=True, pass_fds=self._gpu.inheritable_fds())
            self._running[job.id] = resident
            resident.start()
            self._resident = resident
            log.info("resident_worker_started", pid=resident.proc.pid if resident.proc else None)
        self._running[job.id] = resident
        assert resident.proc is not None
        return resident, resident.proc.pid

    def _close_resident(self, why: str) -> None:
        """Let the idle serving worker exit (its GPU memory returns when it does); never blocks the caller."""
        resident, self._resident = self._resident, None
        if resident is not None and resident.alive():
            log.info("resident_worker_closed", reason=why, pid=resident.proc.pid if resident.proc else None)
            resident.close()
            threading.Thread(target=_reap, args=(resident,), name="close-resident", daemon=True).start()

    def _arm_idle_timer(self) -> None:
        if self._resident is None or self._closing:
            return
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._idle_timer = threading.Timer(self.resident_idle_s, self._idle_expired)
        self._idle_timer.daemon = True
        self._idle_timer.start()

    def _idle_expired(self) -> None:
        with self._lock:
            self._idle_timer = None
            if self._resident is not None and self._resident.idle() and not self._lane_busy(GPU_LANE):
                self._close_resident(f"idle for {self.resident_idle_s:.0f} s")

    def _retry_schedule(self) -> None:
        with self._lock:
            self._retry = None
        self._schedule()

    def _on_event(self, job_id: str, event: dict[str, Any]) -> None:
        try:
            event = self._book_event(job_id, event)
        except Exception as exc:  # e.g. the disk is full: the event still reaches the listeners, the job still ends
            log.error("job_event_unrecorded", job_id=job_id, event_name=event.get("event"), error=repr(exc))
            if event.get("event") in ("artifact", "image"):
                self._bookkeeping_error[job_id] = (
                    f"The job's result could not be stored in the library ({exc}); free some disk space and "
                    "run it again.")
        self._publish(job_id, event)

    def _book_event(self, job_id: str, event: dict[str, Any]) -> dict[str, Any]:
        """The manager's bookkeeping of one worker event; returns the event as the listeners should see it."""
        kind = event.get("event")
        if kind == "progress":
            # Stored at most twice a second (and at the end): a fast trainer emits hundreds a second, and a
            # database commit for each would cost the CPU the trainer needs.
            last_stored = self._progress.get(job_id, (0.0, {}))[0]
            now = time.monotonic()
            if now - last_stored >= PROGRESS_STORE_INTERVAL_S:
                last_stored = now
                self._progress[job_id] = (last_stored, event)
                self.repo.set_progress(job_id, event)
            self._progress[job_id] = (last_stored, event)
        elif kind == "checkpoint" and event.get("step") is not None:
            # What a resume continues from is stored at once (progress is stored only twice a second).
            newest = self._progress.get(job_id, (0.0, {}))[1]
            if int(event["step"]) > int(newest.get("step") or 0):
                self.repo.set_progress(job_id, {**newest, "step": int(event["step"])})
        elif kind == "error":
            self._last_error[job_id] = str(event.get("message", "unknown error"))
        elif kind == "done":
            self._done_state[job_id] = str(event.get("state", "failed"))
        elif kind == "artifact" and event.get("kind") == "lora":
            event = {**event, **self._register_lora(job_id, Path(event["path"]))}
        elif kind == "image":
            event = {**event, **self._register_image(job_id, event)}
        elif kind == "artifact" and event.get("kind") == "caption":
            event = {**event, **self._register_caption(job_id, event)}
        return event

    def _register_caption(self, job_id: str, event: dict[str, Any]) -> dict[str, Any]:
        """Store an automatic caption as the photo's own (a person's caption is kept unless the job overwrites)."""
        from isengard_desktop.core.autocaption import store_caption

        outcome = store_caption(self.repo.db, self.get(job_id).params.get("spec", {}), event)
        counts = self._results.setdefault(job_id, {})
        key = "captions_stored" if outcome["stored"] else "captions_kept"
        counts[key] = counts.get(key, 0) + 1
        return outcome

    def _register_image(self, job_id: str, event: dict[str, Any]) -> dict[str, Any]:
        """Move a finished image into the volume's outputs and record the generation with its parameters."""
        job = self.get(job_id)
        source = Path(event["path"])
        target = self.volume.outputs_dir / job.created_at[:10] / f"{job.id}_{int(event.get('index', 0)):02d}.png"
        atomic.move_file(source, target)
        spec = job.params.get("spec", {})
        params = {key: spec.get(key) for key in GENERATION_PARAMS}
        params["seed"] = event.get("seed", spec.get("seed"))
        generation_id = self.repo.add_generation(job.id, str(target.relative_to(self.volume.root)), job.engine,
                                                 params, event.get("parameters", ""), int(event.get("index", 0)))
        self._results.setdefault(job.id, {}).setdefault("images", []).append(str(target))
        log.info("image_registered", job_id=job.id, path=str(target), correlation_id=job.correlation_id)
        return {"library_path": str(target), "generation_id": generation_id}

    def _register_lora(self, job_id: str, source: Path) -> dict[str, Any]:
        """Copy a finished LoRA into the volume's LoRAs and record it for the character."""
        job = self.get(job_id)
        spec = job.params.get("spec", {})
        name = safe_filename(spec.get("lora_name") or "lora", 60)
        target = self.volume.loras_dir / f"{name}-{job.id}.safetensors"
        atomic.copy_file(source, target)
        self.repo.add_lora(job.character_id, job.id, str(target.relative_to(self.volume.root)),
                           spec.get("base_model_name", "?"), job.engine, int(spec.get("steps", 0)),
                           int(spec.get("rank", 0)))
        self._results.setdefault(job.id, {})["lora"] = str(target)
        log.info("lora_registered", job_id=job.id, path=str(target), correlation_id=job.correlation_id)
        return {"library_path": str(target)}

    def _on_exit(self, job_id: str, returncode: int, tail: list[str]) -> None:
        # Whatever fails here (a full disk refusing the database write), the job ends in memory with the worker's
        # own state and reason, the lane's lock is released and the waiters are woken (E25).
        with self._lock:
            try:
                self._running.pop(job_id, None)
                lane = self._lane.pop(job_id, GPU_LANE)
                try:
                    lock = self._lane_lock(lane)
                    if lock is not None:
                        lock.release()
                except OSError as exc:
                    log.error("job_lock_release_failed", job_id=job_id, error=str(exc))
                state, error, result = self._final_state(job_id, returncode, tail)
                newest = self._progress.pop(job_id, None)
                if newest:
                    self._store_progress(job_id, newest[1])
                self._set_state(job_id, state, error=error if state != "succeeded" else None, result=result)
                log.info("job_finished", job_id=job_id, state=state, returncode=returncode)
                if self._resident is not None and not self._resident.alive():
                    self._resident = None  # it died with its job: the next generation starts a fresh one
                if self._resident is not None and lane == GPU_LANE:
                    self._arm_idle_timer()
            finally:
                self._finished.notify_all()
        if not self._closing:
            try:
                self._schedule()
            except DB_ERRORS as exc:
                log.error("job_schedule_failed", error=str(exc))

    def _final_state(self, job_id: str, returncode: int, tail: list[str]) -> tuple[str, str | None, dict[str, Any]]:
        """The state a finished job ends in: the worker's own ``done`` state and ``error`` message when it sent
        them, else failed with its exit code and last output."""
        state = self._done_state.pop(job_id, None)
        error = self._last_error.pop(job_id, None)
        if state is None:
            state = "failed"
            error = error or (
                f"The worker process ended unexpectedly (exit code {returncode}). Last output:\n"
                + "\n".join(tail[-8:])
            )
        bookkeeping = self._bookkeeping_error.pop(job_id, None)
        if bookkeeping and state == "succeeded":
            state, error = "failed", bookkeeping
        result = {**self._results.pop(job_id, {}), "returncode": returncode}
        if state == "failed" and not error:
            error = "The job failed; see its log."
        return state, error, result

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
                    job = self._overlay(job)
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
            if self._running.pop(job_id, None) is not None:
                log.warning("job_let_go", job_id=job_id)

    def running_jobs(self, lane: str | None = None) -> list[str]:
        """Jobs this process is running; ``lane="gpu"`` leaves out downloads (they do not block a training)."""
        with self._lock:
            return [j for j in self._running if lane is None or self._lane.get(j, GPU_LANE) == lane]

    # start-up and shut-down --------------------------------------------------------------------
    def recover(self, queued: bool = True) -> list[JobRow]:
        """Mark jobs left running or queued by a previous session as interrupted; returns them.

        ``queued=False`` leaves queued jobs alone: a queued job records no process, so a live window's queued job
        cannot be told from a dead one's (``isengard train`` uses this; the window's start takes them all)."""
        recovered = []
        for job in self.repo.list(states=("running", "queued") if queued else ("running",)):
            if job.id in self._running:
                continue
            if job.state == "running" and remote_job.remote_name(job):
                continue  # it runs on its remote whoever followed it: `jobs resume` re-attaches (jobs/remote_job.py)
            if _worker_alive(job.pid, job.id):
                if not _orphaned(job.pid):
                    continue  # another Isengard process (e.g. the CLI) is running it
                # Its app died: ask it to save a checkpoint and stop, then take the job back.
                (self.job_dir(job) / protocol.STOP_FILE).touch()
                _wait_for_exit(job.pid, ORPHAN_STOP_TIMEOUT_S)
            self._catch_up_progress(job)
            failure = self._reported_failure(job)
            if failure is not None:  # the worker said why it failed; the database could not take it then (E25)
                self._set_state(job.id, "failed", error=failure)
                log.warning("job_failure_recovered", job_id=job.id, correlation_id=job.correlation_id)
                recovered.append(self.get(job.id))
                continue
            self._set_state(job.id, "interrupted",
                            error="Isengard Desktop closed while this download was running; resume it to continue "
                                  "from the bytes already downloaded." if job.kind in DOWNLOAD_KINDS else
                                  "Isengard Desktop closed while this job was running; resume it to continue "
                                  "from its last checkpoint.")
            log.warning("job_interrupted", job_id=job.id, previous_state=job.state, correlation_id=job.correlation_id)
            recovered.append(self.get(job.id))
        return recovered

    def _reported_failure(self, job: JobRow) -> str | None:
        """The reason a worker gave when it ended failed, from the job's record of events (None if it did not)."""
        events = self.events(job.id)
        done = [e for e in events if e.get("event") == "done"]
        if not done or done[-1].get("state") != "failed":
            return None
        errors = [str(e.get("message")) for e in events if e.get("event") == "error" and e.get("message")]
        return errors[-1] if errors else "The job failed; see its log."

    def _catch_up_progress(self, job: JobRow) -> None:
        """A worker that outlived its app went on (to its checkpoint) with nobody storing its progress; it wrote
        its events into the job's record itself: the job's step becomes its newest checkpoint's, if later."""
        steps = [int(e["step"]) for e in self.events(job.id) if e.get("event") == "checkpoint" and e.get("step")]
        if steps and max(steps) > int(job.progress.get("step") or 0):
            self.repo.set_progress(job.id, {**job.progress, "step": max(steps)})

    def shutdown(self, wait: float = 30.0) -> None:
        """Ask running workers to save and stop (the app is quitting)."""
        self._closing = True
        self.flush_unrecorded()
        if self._retry is not None:
            self._retry.cancel()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        with self._lock:
            workers = list(self._running.values())
            resident = self._resident
            if resident is not None:
                resident.close()
                if resident not in workers:
                    workers.append(resident)
        for worker in workers:
            worker.request_stop()
        for worker in workers:
            if worker.proc is not None:
                try:
                    worker.proc.wait(timeout=wait)
                except Exception:
                    worker.kill()

    def delete_folder(self, job_id: str) -> None:
        job = self.get(job_id)
        shutil.rmtree(self.job_dir(job), ignore_errors=True)


def _reap(worker: WorkerProcess, timeout: float = 30.0) -> None:
    """Wait for a closed serving worker to exit; end it if it does not."""
    if worker.proc is None:
        return
    try:
        worker.proc.wait(timeout=timeout)
    except Exception:
        log.warning("resident_worker_killed", pid=worker.proc.pid, timeout_s=timeout)
        worker.kill()


def _run_hook(hook: Callable[[], None]) -> None:
    try:
        hook()
    except Exception as exc:  # advisory: the job runs either way
        log.warning("before_training_hook_failed", error=repr(exc))


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
