"""The jobs' rows in the volume's database, kept in memory when the database refuses a write (a full disk).

A state the database cannot take is kept here, shown by ``get``/``list`` (with a note saying so) and written at
the next write that succeeds; the job's bookkeeping never stops for it (E25). Also each job's record of events
(``events.jsonl`` in its folder) and its folder.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from pathlib import Path
from typing import Any

import structlog

from isengard_desktop.base.errors import NotFoundError
from isengard_desktop.jobs import protocol
from isengard_desktop.storage.jobs_repo import JobRepository, JobRow
from isengard_desktop.storage.volume import Volume

log = structlog.get_logger(__name__)

# What a write to the volume's database can raise when the disk is full or the file is unwritable: the job's
# bookkeeping keeps going in memory, never stops the readers or the waiters.
DB_ERRORS = (sqlite3.Error, OSError)


class JobRecords:
    def __init__(self, volume: Volume, repo: JobRepository, lock: threading.RLock) -> None:
        self.volume = volume
        self.repo = repo
        self._lock = lock
        # States the database could not take (disk full): kept here, shown by get(), written when it can.
        self._unrecorded: dict[str, tuple[str, dict[str, Any], str]] = {}

    def set_state(self, job_id: str, state: str, **kwargs: Any) -> bool:
        """Record a state; kept in memory if the database cannot take it. Returns whether it was recorded."""
        self.flush_unrecorded()
        with self._lock:
            try:
                self.repo.set_state(job_id, state, **kwargs)
                self._unrecorded.pop(job_id, None)
                return True
            except DB_ERRORS as exc:
                self._unrecorded[job_id] = (state, kwargs, str(exc))
                log.error("job_state_unrecorded", job_id=job_id, state=state, error=str(exc))
                return False

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

    def store_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        try:
            self.repo.set_progress(job_id, progress)
        except DB_ERRORS as exc:  # the newest progress stays in memory and goes in with the next write that works
            log.warning("job_progress_unrecorded", job_id=job_id, error=str(exc))

    def overlay(self, job: JobRow) -> JobRow:
        """The row as the job really is: with the state the database refused, if any."""
        pending = self._unrecorded.get(job.id)
        if pending is None:
            return job
        state, kwargs, why = pending
        error = kwargs.get("error")
        note = (f"(Not yet saved in the volume's database, which refused it: {why}; it is saved once there is room, "
                "or the job shows as interrupted at the next start.)")
        return dataclasses.replace(job, state=state, error=f"{error} {note}" if error else note,
                                   result=kwargs.get("result") or job.result)

    def get(self, job_id: str) -> JobRow:
        """A job by id, or by an id prefix that names one job."""
        job = self.repo.get(job_id)
        if job is None:
            matches = self.repo.find(job_id)
            if len(matches) == 1:
                return self.overlay(matches[0])
            raise NotFoundError(f"There is no job {job_id!r}; `isengard jobs list` shows them.")
        return self.overlay(job)

    def list(self, kind: str | None = None) -> list[JobRow]:
        return [self.overlay(job) for job in self.repo.list(kind=kind)]

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
