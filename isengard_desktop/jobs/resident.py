"""The resident generation worker: one serving worker process that outlives its generation jobs.

Generation jobs run on one ``WorkerProcess(serve=True)``, so an engine's loaded model (the built-in generator's
FLUX pipeline) serves the next request too. It is closed before a training job starts (the GPU memory goes to
training), when the app quits, and after ``RESIDENT_IDLE_S`` without work. It shares the GPU lock's descriptor
(storage/gpu_lock.py): it holds the lock during a generation even if the app dies; while it idles the lock is free.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from isengard_desktop.jobs.runner import WorkerProcess

log = structlog.get_logger(__name__)

RESIDENT_IDLE_S = 15 * 60.0
RESIDENT_KINDS = ("generation",)
REAP_TIMEOUT_S = 30.0


class ResidentWorker:
    """Owns the serving worker and its idle timer. ``gpu_busy`` says whether a GPU job runs (no idle close then)."""

    def __init__(self, lock: threading.RLock, gpu_busy: Callable[[], bool], idle_s: float = RESIDENT_IDLE_S) -> None:
        self._lock = lock  # the manager's: the timer closes the worker under it
        self._gpu_busy = gpu_busy
        self.idle_s = idle_s
        self.worker: WorkerProcess | None = None
        self._timer: threading.Timer | None = None

    def run(self, job_id: str, job_dir: Path, correlation_id: str, on_event: Callable[[str, dict[str, Any]], None],
            on_exit: Callable[[str, int, list[str]], None], pass_fds: tuple[int, ...]) -> WorkerProcess:
        """Hand the job to the serving worker, starting one if there is none (or it is busy or dead)."""
        self.pause()
        worker = self.worker
        if worker is not None and worker.alive() and worker.idle():
            worker.assign(job_id, job_dir, correlation_id)
            return worker
        worker = WorkerProcess(job_id, job_dir, correlation_id, on_event, on_exit, serve=True, pass_fds=pass_fds)
        worker.start()
        self.worker = worker
        log.info("resident_worker_started", pid=worker.proc.pid if worker.proc else None)
        return worker

    def pause(self) -> None:
        """A GPU job starts: the idle timer stops until the lane is free again."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def job_ended(self, gpu_lane: bool, closing: bool) -> None:
        """A job ended: forget a serving worker that died with it; after a GPU job, count idle time again."""
        if self.worker is not None and not self.worker.alive():
            self.worker = None  # it died with its job: the next generation starts a fresh one
        if self.worker is not None and gpu_lane and not closing:
            self.pause()
            self._timer = threading.Timer(self.idle_s, self._idle_expired)
            self._timer.daemon = True
            self._timer.start()

    def _idle_expired(self) -> None:
        with self._lock:
            self._timer = None
            if self.worker is not None and self.worker.idle() and not self._gpu_busy():
                self.close(f"idle for {self.idle_s:.0f} s")

    def close(self, why: str) -> None:
        """Let the serving worker exit once idle (its GPU memory returns when it does); never blocks the caller."""
        worker, self.worker = self.worker, None
        if worker is not None and worker.alive():
            log.info("resident_worker_closed", reason=why, pid=worker.proc.pid if worker.proc else None)
            worker.close()
            threading.Thread(target=_reap, args=(worker,), name="close-resident", daemon=True).start()

    def shutdown(self) -> WorkerProcess | None:
        """The app is quitting: no more idle timer, the worker is told to exit; returns it (to wait for)."""
        self.pause()
        worker = self.worker
        if worker is not None:
            worker.close()
        return worker


def _reap(worker: WorkerProcess, timeout: float = REAP_TIMEOUT_S) -> None:
    """Wait for a closed serving worker to exit; end it if it does not."""
    if worker.proc is None:
        return
    try:
        worker.proc.wait(timeout=timeout)
    except Exception:
        log.warning("resident_worker_killed", pid=worker.proc.pid, timeout_s=timeout)
        worker.kill()
