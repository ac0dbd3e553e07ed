"""What the manager learns from a running job's events, and the state the job ends in.

Progress is stored at most twice a second (and at the end), the checkpoint a resume continues from at once; the
last error and the state the worker's ``done`` carried are kept for the end; images, LoRAs and captions are filed
into the volume (filing.py). The final state is the worker's own (jobs/worker.py alone sends ``done``); one is
inferred only for a worker that ended without it: cancelled when it was ended after a cancel's timeout or stopped
cleanly before it ran (a remote job cancelled while being sent), failed otherwise with its exit code and output.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from isengard_desktop.jobs.filing import Filing, files_something
from isengard_desktop.jobs.records import JobRecords

log = structlog.get_logger(__name__)

PROGRESS_STORE_INTERVAL_S = 0.5


class Outcomes:
    def __init__(self, records: JobRecords, filing: Filing) -> None:
        self.records = records
        self.filing = filing
        self._last_error: dict[str, str] = {}
        self._done_state: dict[str, str] = {}  # the state each worker's done event carried
        self._killed: dict[str, str] = {}  # jobs ended after a cancel's timeout, with what that means
        self._progress: dict[str, tuple[float, dict[str, Any]]] = {}  # newest progress, time last stored
        self._bookkeeping_error: dict[str, str] = {}  # a finished LoRA or image that could not be stored

    def started(self, job_id: str, pid: int) -> None:
        """A (re)started job begins with a clean slate."""
        for kept in (self._last_error, self._done_state, self._killed, self._bookkeeping_error):
            kept.pop(job_id, None)
        self.filing.note(job_id, "worker_pid", pid)  # kept after the run, unlike the pid column

    def book(self, job_id: str, event: dict[str, Any]) -> dict[str, Any]:
        """Bookkeeping of one worker event; returns the event as the listeners should see it. Whatever it raises
        (a full disk), the event still reaches the listeners and the job still ends."""
        try:
            return self._book(job_id, event)
        except Exception as exc:
            log.error("job_event_unrecorded", job_id=job_id, event_name=event.get("event"), error=repr(exc))
            if event.get("event") in ("artifact", "image"):
                self._bookkeeping_error[job_id] = (
                    f"The job's result could not be stored in the library ({exc}); free some disk space and "
                    "run it again.")
            return event

    def _book(self, job_id: str, event: dict[str, Any]) -> dict[str, Any]:
        kind = event.get("event")
        repo = self.records.repo
        if kind == "progress":
            # A fast trainer emits hundreds a second, and a database commit for each would cost the CPU it needs.
            last_stored = self._progress.get(job_id, (0.0, {}))[0]
            now = time.monotonic()
            if now - last_stored >= PROGRESS_STORE_INTERVAL_S:
                last_stored = now
                self._progress[job_id] = (last_stored, event)
                repo.set_progress(job_id, event)
            self._progress[job_id] = (last_stored, event)
        elif kind == "checkpoint" and event.get("step") is not None:
            # What a resume continues from is stored at once (progress is stored only twice a second).
            newest = self._progress.get(job_id, (0.0, {}))[1]
            if int(event["step"]) > int(newest.get("step") or 0):
                repo.set_progress(job_id, {**newest, "step": int(event["step"])})
        elif kind == "error":
            self._last_error[job_id] = str(event.get("message", "unknown error"))
        elif kind == "done":
            self._done_state[job_id] = str(event.get("state", "failed"))
        elif files_something(event):
            event = {**event, **self.filing.file(self.records.get(job_id), event)}
        return event

    def killed(self, job_id: str, why: str) -> None:
        """The job's worker is being ended after a cancel's timeout: unless it says otherwise, it was cancelled."""
        self._killed[job_id] = why

    def final(self, job_id: str, returncode: int, tail: list[str],
              stop_requested: bool) -> tuple[str, str | None, dict[str, Any]]:
        """The state, error and result the job ends in; stores its newest progress."""
        newest = self._progress.pop(job_id, None)
        if newest:
            self.records.store_progress(job_id, newest[1])
        state = self._done_state.pop(job_id, None)
        error = self._last_error.pop(job_id, None)
        killed = self._killed.pop(job_id, None)
        if state is None and killed is not None:
            state, error = "cancelled", killed
        elif state is None and returncode == 0 and stop_requested:
            state = "cancelled"
        elif state is None:
            state = "failed"
            error = error or (
                f"The worker process ended unexpectedly (exit code {returncode}). Last output:\n"
                + "\n".join(tail[-8:])
            )
        bookkeeping = self._bookkeeping_error.pop(job_id, None)
        if bookkeeping and state == "succeeded":
            state, error = "failed", bookkeeping
        result = {**self.filing.take(job_id), "returncode": returncode}
        if state == "failed" and not error:
            error = "The job failed; see its log."
        return state, error, result
