"""The job queue's lanes: which lane a job runs in, each lane's lock, which jobs run, and which queued job is next.

Jobs run in lanes, one job per lane at a time. The GPU lane (training, generation, captioning) holds the volume's
GPU lock; the download lane (kind "download", the model manager's hub downloads) holds a lock of its own, so one
download runs at a time across every Isengard process and alongside a training run, never waiting for the GPU nor
taking it. The CPU lane (kind "dataset_check") works the same way with a lock of its own: checking photos never
waits behind a training run. A remote machine is a lane of its own (jobs/remote_job.py), with no lock here.

The locks are OS-held (storage/gpu_lock.py): another Isengard process using a lane makes ``acquire`` fail, and the
queue looks again ``LOCK_RETRY_S`` later.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from isengard_desktop.jobs import remote_job
from isengard_desktop.storage.gpu_lock import GpuLock
from isengard_desktop.storage.jobs_repo import JobRow

log = structlog.get_logger(__name__)

LOCK_RETRY_S = 2.0
DOWNLOAD_KINDS = ("download",)  # jobs of the download lane: no GPU lock, one at a time beside the GPU lane
# Jobs of the CPU lane (checking a dataset's photos): no GPU lock either, so a check never waits behind a training.
CPU_KINDS = ("dataset_check",)
GPU_LANE, DOWNLOAD_LANE, CPU_LANE = "gpu", "download", "cpu"


def lane_of(kind: str) -> str:
    if kind in CPU_KINDS:
        return CPU_LANE
    return DOWNLOAD_LANE if kind in DOWNLOAD_KINDS else GPU_LANE


def job_lane(job: JobRow) -> str:
    """A job's lane: its remote's own (jobs/remote_job.py: one per remote machine) or its kind's here."""
    return remote_job.lane(job) or lane_of(job.kind)


class Lanes:
    """The running jobs by lane, the lanes' locks, and the jobs this process owns (submitted or resumed here).

    Not locked itself: the manager calls it under its own lock."""

    def __init__(self, jobs_dir: Path, retry: Callable[[], None]) -> None:
        self.gpu = GpuLock(jobs_dir / ".gpu.lock")
        # The same kind of OS-held lock for the download lane: one download per volume, released if we die.
        self._download = GpuLock(jobs_dir / ".download.lock")
        self._cpu = GpuLock(jobs_dir / ".cpu.lock")  # one dataset check per volume at a time
        self.running: dict[str, Any] = {}  # job -> the worker running it (WorkerProcess, ThreadWorker, RemoteJob)
        self._lane: dict[str, str] = {}  # running job -> its lane
        self.owned: set[str] = set()  # jobs this process submitted or resumed: the ones it runs
        self._retry_callback = retry
        self._retry: threading.Timer | None = None

    def lock(self, lane: str) -> GpuLock | None:
        """The local lock of a lane; a remote's lane has none here: the remote worker holds that machine's own."""
        if lane.startswith(remote_job.LANE_PREFIX):
            return None
        if lane == CPU_LANE:
            return self._cpu
        return self._download if lane == DOWNLOAD_LANE else self.gpu

    def lane_of_running(self, job_id: str) -> str:
        return self._lane.get(job_id, GPU_LANE)

    def busy(self, lane: str) -> bool:
        return any(self.lane_of_running(job_id) == lane for job_id in self.running)

    def next_jobs(self, queued: list[JobRow]) -> list[tuple[JobRow, str]]:
        """The oldest queued job this process owns in each free lane, with its lane."""
        mine = sorted((job for job in queued if job.id in self.owned), key=lambda job: job.created_at)
        lanes = dict.fromkeys([DOWNLOAD_LANE, CPU_LANE, GPU_LANE, *(job_lane(job) for job in mine)])
        out = []
        for lane in lanes:
            waiting = [job for job in mine if job_lane(job) == lane]
            if waiting and not self.busy(lane):
                out.append((waiting[0], lane))
        return out

    def acquire(self, job_id: str, lane: str) -> bool:
        """Take the lane's lock for the job; when another Isengard process has it, look again shortly."""
        lock = self.lock(lane)
        if lock is not None and not lock.try_acquire():
            if self._retry is None:
                self._retry = threading.Timer(LOCK_RETRY_S, self._retry_now)
                self._retry.daemon = True
                self._retry.start()
            return False
        self._lane[job_id] = lane
        return True

    def _retry_now(self) -> None:
        self._retry = None
        self._retry_callback()

    def release(self, job_id: str) -> str:
        """The job left its lane (ended, or its worker could not start): free the lane's lock; returns the lane."""
        self.running.pop(job_id, None)
        lane = self._lane.pop(job_id, GPU_LANE)
        try:
            lock = self.lock(lane)
            if lock is not None:
                lock.release()
        except OSError as exc:
            log.error("job_lock_release_failed", job_id=job_id, error=str(exc))
        return lane

    def running_jobs(self, lane: str | None = None) -> list[str]:
        return [job_id for job_id in self.running if lane is None or self.lane_of_running(job_id) == lane]

    def stop_retrying(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
