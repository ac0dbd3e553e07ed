"""One worker subprocess: start it, read its events and its log, tell the manager when a job ends.

Two reader threads per worker: stdout carries JSON events, stderr carries the worker's structured
log lines (and any stray library output), which are appended to the job's log with its correlation id.

A one-job worker ends with its job. A serving worker (``serve=True``) runs job after job, each
handed over with ``assign``; its job ends at the job's ``done`` event, and if the process dies in
the middle of one, that job ends with the process.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from isengard_desktop.base.log import CORRELATION_ENV, redact_text
from isengard_desktop.jobs import protocol

log = structlog.get_logger(__name__)
TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")

TAIL_LINES = 40


def worker_command(argument: str) -> list[str]:
    """How to start a worker: ``python -m`` from source, the app binary's worker entry when frozen."""
    if getattr(sys, "frozen", False):
        return [sys.executable, protocol.FROZEN_WORKER_ARG, protocol.WORKER_MODULE, argument]
    return [sys.executable, "-m", protocol.WORKER_MODULE, argument]


class WorkerProcess:
    def __init__(
        self,
        job_id: str,
        job_dir: Path,
        correlation_id: str,
        on_event: Callable[[str, dict[str, Any]], None],
        on_exit: Callable[[str, int, list[str]], None],
        serve: bool = False,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        self.job_id: str | None = job_id
        self.job_dir = job_dir
        self.correlation_id = correlation_id
        self.on_event = on_event
        self.on_exit = on_exit
        self.serve = serve
        self.pass_fds = pass_fds  # the lane's lock descriptor: the worker holds the lock too (storage/gpu_lock.py)
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.proc: subprocess.Popen | None = None
        self._log_lock = threading.Lock()
        self._job_lock = threading.Lock()
        self._write_failed: set[str] = set()  # files already reported unwritable (logged once each)

    def start(self) -> int:
        # A token in the person's shell never reaches a worker or an engine: the download worker reads the keyring's
        # token itself and hands it to the hub client; nothing else needs one (engines get local model folders).
        env = {k: v for k, v in os.environ.items() if k not in TOKEN_ENV}
        env[CORRELATION_ENV] = self.correlation_id
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"
        self.proc = subprocess.Popen(
            worker_command(protocol.SERVE_ARG if self.serve else str(self.job_dir)),
            stdin=subprocess.PIPE if self.serve else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            # Its own session: a Ctrl+C in a terminal reaches the CLI, which asks the worker to stop and save.
            start_new_session=True,
            pass_fds=self.pass_fds,
        )
        self._threads = [
            threading.Thread(target=self._read_stdout, name=f"job-{self.job_id}-out", daemon=True),
            threading.Thread(target=self._read_stderr, name=f"job-{self.job_id}-err", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        threading.Thread(target=self._wait, name=f"job-{self.job_id}-wait", daemon=True).start()
        if self.serve and self.job_id is not None:
            self.assign(self.job_id, self.job_dir, self.correlation_id)
        return self.proc.pid

    def assign(self, job_id: str, job_dir: Path, correlation_id: str) -> None:
        """Hand a serving worker its next job (it must have finished the previous one)."""
        assert self.serve and self.proc and self.proc.stdin
        with self._job_lock:
            self.job_id, self.job_dir, self.correlation_id = job_id, job_dir, correlation_id
        self.proc.stdin.write(f"{job_dir}\n".encode())
        self.proc.stdin.flush()

    def idle(self) -> bool:
        return self.job_id is None

    def close(self) -> None:
        """Let a serving worker exit once its current job (if any) is done."""
        if self.proc is not None and self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def _append_log(self, record: dict[str, Any]) -> None:
        if self.job_dir is None:
            return
        try:
            with self._log_lock, open(self.job_dir / protocol.LOG_FILE, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        except OSError as exc:
            # A full disk must not stop this reader: an unread pipe would block the worker on its next write.
            self._note_write_failure("log", exc)

    def _note_write_failure(self, what: str, exc: OSError) -> None:
        if what not in self._write_failed:
            self._write_failed.add(what)
            log.error("job_file_write_failed", job_id=self.job_id, file=what, error=str(exc))

    def _read_stdout(self) -> None:
        assert self.proc and self.proc.stdout
        events = None
        events_dir = None
        try:
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace")
                event = protocol.decode(line)
                job_id, job_dir = self.job_id, self.job_dir
                if event is None or job_id is None:
                    if line.strip():
                        self._append_log(self._stray(line, "stdout"))
                    continue
                events, events_dir = self._record_event(events, events_dir, job_dir, line)
                self._call(self.on_event, job_id, event)
                if self.serve and event.get("event") == "done":
                    with self._job_lock:
                        self.job_id = None
                    self._call(self.on_exit, job_id, 0, list(self.tail))
        finally:
            if events is not None:
                try:
                    events.close()
                except OSError as exc:
                    self._note_write_failure("events", exc)

    def _record_event(self, events: Any, events_dir: Path | None, job_dir: Path, line: str) -> tuple[Any, Path | None]:
        """Append the event to the job's record; a full disk loses the record's line, never the event itself."""
        try:
            if events_dir != job_dir:
                if events is not None:
                    events.close()
                events, events_dir = None, None
                events, events_dir = open(job_dir / protocol.EVENTS_FILE, "a", encoding="utf-8"), job_dir
            events.write(line if line.endswith("\n") else line + "\n")
            events.flush()
        except OSError as exc:
            self._note_write_failure("events", exc)
        return events, events_dir

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        """Run the manager's callback; whatever it raises, the readers go on and the job still ends."""
        try:
            callback(*args)
        except Exception as exc:
            log.error("job_callback_failed", job_id=args[0] if args else None, error=repr(exc))

    def _stray(self, line: str, stream: str) -> dict[str, Any]:
        return {
            "timestamp": datetime.now(UTC).isoformat(), "level": "info", "event": "worker_output",
            "stream": stream, "line": redact_text(line.rstrip()), "correlation_id": self.correlation_id,
            "job_id": self.job_id,
        }

    def _read_stderr(self) -> None:
        assert self.proc and self.proc.stderr
        for raw in self.proc.stderr:
            # tqdm-style progress redraws with \r: keep each redraw as its own line.
            for part in raw.decode("utf-8", "replace").replace("\r", "\n").splitlines():
                if not part.strip():
                    continue
                self.tail.append(part)
                try:
                    record = json.loads(part)
                    if not isinstance(record, dict):
                        raise ValueError
                    record.setdefault("correlation_id", self.correlation_id)
                    record.setdefault("job_id", self.job_id)
                except ValueError:
                    record = self._stray(part, "stderr")
                self._append_log(record)

    def _wait(self) -> None:
        assert self.proc
        code = self.proc.wait()
        for thread in self._threads:
            thread.join()
        log.info("worker_exited", job_id=self.job_id, returncode=code, serving=self.serve)
        if self.job_id is not None:  # a one-job worker's job, or the job a serving worker died in
            job_id, self.job_id = self.job_id, None
            self._call(self.on_exit, job_id, code, list(self.tail))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def request_stop(self) -> None:
        if self.job_dir is not None and self.job_id is not None:
            (self.job_dir / protocol.STOP_FILE).touch()

    def kill(self) -> None:
        if self.alive():
            assert self.proc
            self.proc.kill()
