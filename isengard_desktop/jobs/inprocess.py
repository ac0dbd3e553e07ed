"""Jobs of engines that need no worker process, run in a thread of the app's own process (issue 14 item 4, E7).

An engine that is only an HTTP client of a server the app supervises (ComfyUI) declares
``traits.needs_worker_process = False``: starting a Python process for it costs more than its own work on a short
generation. ``ThreadWorker`` runs the same ``worker.run_job`` in a thread and stands in for ``runner.WorkerProcess``
towards the manager: the same events (also written to the job's ``events.jsonl``), the same stop file, the same
``job.log`` (the thread's log records are copied there), and the final ``done`` from the worker code alone. A cancel
that does not stop in time abandons the thread (a thread cannot be killed): its job ends, later events are dropped.
"""

from __future__ import annotations

import collections
import json
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from isengard_desktop.base.log import redact_text
from isengard_desktop.jobs import protocol, worker

log = structlog.get_logger(__name__)

TAIL_LINES = 40


def runs_in_process(engine: str) -> bool:
    """Whether jobs of ``engine`` run in a thread here: the engine declares it needs no worker process."""
    from engines import registry

    try:
        return not registry.engine_class(engine).traits.needs_worker_process
    except (LookupError, TypeError, ImportError):  # unknown or broken: its worker process reports why
        return False


class _Channel(worker.Channel):
    """The worker's event channel with the manager's reader in place of stdout."""

    def __init__(self, owner: ThreadWorker) -> None:
        super().__init__(owner.job_dir)
        self._owner = owner

    def _write(self, line: str, event: dict[str, Any]) -> None:
        try:
            with open(self.events_file, "a", encoding="utf-8") as events:
                events.write(line)
        except OSError as exc:  # a full disk loses the record's line, never the event itself
            log.error("job_file_write_failed", job_id=self._owner.job_id, file="events", error=str(exc))
        self._owner.deliver(event)


class _JobLogs:
    """A structlog processor that copies the log records of the jobs running in threads here into their
    ``job.log`` (a worker process's stderr goes there). Put first in structlog's chain when a job starts, so it works
    however the app configured logging; ``run_job`` binds the job's id to its thread."""

    def __init__(self) -> None:
        self.workers: dict[str, ThreadWorker] = {}

    def __call__(self, _logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        bound = structlog.contextvars.get_contextvars()
        worker = self.workers.get(str(event_dict.get("job_id") or bound.get("job_id")))
        if worker is not None:
            record = {"timestamp": datetime.now(UTC).isoformat(), "level": method, **bound, **event_dict}
            worker.write_log(redact_text(json.dumps(record, ensure_ascii=False, default=str)))
        return event_dict

    def install(self) -> None:
        processors = list(structlog.get_config()["processors"])
        if self not in processors:  # again after a configure() (the window reopens its log on a volume change)
            structlog.configure(processors=[self, *processors])


JOB_LOGS = _JobLogs()


class ThreadWorker:
    """Runs one job in a thread of this process; quacks like ``runner.WorkerProcess`` for the manager."""

    proc = None  # no process of its own: shutdown joins the thread instead

    def __init__(self, job_id: str, job_dir: Path, correlation_id: str,
                 on_event: Callable[[str, dict[str, Any]], None],
                 on_exit: Callable[[str, int, list[str]], None]) -> None:
        self.job_id = job_id
        self.job_dir = job_dir
        self.correlation_id = correlation_id
        self.on_event = on_event
        self.on_exit = on_exit
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._channel = _Channel(self)
        self._ended = threading.Event()
        self._end_lock = threading.Lock()  # the thread's own end and an abandon can race
        self._log_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"job-{job_id}", daemon=True)

    def start(self) -> int:
        self._thread.start()
        return os.getpid()  # the row's pid: the process running the job (recovery checks it)

    def _run(self) -> None:
        JOB_LOGS.workers[self.job_id] = self
        JOB_LOGS.install()
        try:
            state = worker.run_job(self.job_dir, self._channel)
        except BaseException as exc:  # run_job reports what a job raises; this is a bug in it
            log.error("job_thread_failed", job_id=self.job_id, error=repr(exc))
            state = "failed"
        finally:
            JOB_LOGS.workers.pop(self.job_id, None)
        self._end(0 if state in ("succeeded", "cancelled") else 1)

    def write_log(self, line: str) -> None:
        self.tail.append(line)
        try:
            with self._log_lock, open(self.job_dir / protocol.LOG_FILE, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        except OSError:
            pass  # a full disk: the record still went to the app's own log

    def deliver(self, event: dict[str, Any]) -> None:
        if self._ended.is_set():
            return  # abandoned after a cancel that did not stop in time: the job has ended
        try:
            self.on_event(self.job_id, event)
        except Exception as exc:  # the manager's bookkeeping must not stop the job
            log.error("job_callback_failed", job_id=self.job_id, error=repr(exc))

    def _end(self, code: int) -> None:
        with self._end_lock:
            if self._ended.is_set():
                return
            self._ended.set()
        try:
            self.on_exit(self.job_id, code, list(self.tail))
        except Exception as exc:
            log.error("job_callback_failed", job_id=self.job_id, error=repr(exc))

    def alive(self) -> bool:
        return self._thread.is_alive() and not self._ended.is_set()

    def idle(self) -> bool:
        return False

    def request_stop(self) -> None:
        (self.job_dir / protocol.STOP_FILE).touch()
        self._channel.request_stop()

    def kill(self) -> None:
        """Abandon the job (a cancel that did not stop in time): it ends now, failed unless it said otherwise."""
        self._channel.request_stop()
        log.warning("job_thread_abandoned", job_id=self.job_id)
        self._end(-9)

    def close(self) -> None:
        pass

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
