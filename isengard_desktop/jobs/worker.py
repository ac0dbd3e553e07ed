"""The worker subprocess: ``python -m isengard_desktop.jobs.worker JOB_DIR`` or ``... --serve``.

Reads ``job.json``, loads the engine from the registry and runs it, writing one JSON event per line
on stdout. Logs (structured, with the job's correlation id) go to stderr, which the job manager
copies into the job's log. A stop is requested by the file ``stop.request`` in the job folder, by
SIGTERM, or by the parent going away (stdout closed): the engine then saves a checkpoint and exits.

With ``--serve`` the worker stays alive and runs one job per line of stdin (a job folder), ending
each with its ``done`` event; it exits when stdin closes. Generation jobs run this way so that an
engine's loaded model (the built-in generator's FLUX pipeline) serves the next request too.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import structlog

from isengard_desktop.base import log as app_log
from isengard_desktop.base.process_exit import exit_now
from isengard_desktop.jobs import protocol

log = structlog.get_logger(__name__)

PROGRESS_FLUSH_S = 0.1  # progress lines reach the app at most this late; every other event goes at once


class Channel:
    """Thread-safe event writer on stdout that remembers a stop request."""

    def __init__(self, job_dir: Path) -> None:
        self.stop_file = job_dir / protocol.STOP_FILE
        self.events_file = job_dir / protocol.EVENTS_FILE
        self._orphaned = False
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.done_sent = False
        self._flushed = 0.0  # when stdout was last flushed (time.monotonic)
        self._unflushed = threading.Event()  # progress lines wait in stdout's buffer for the flusher thread
        self._flusher: threading.Thread | None = None

    def emit(self, event: dict[str, Any]) -> None:
        """An event of the job. The final ``done`` is the worker's alone (``finish``): one an engine sends is
        dropped, so the job's state is always the one the engine returned."""
        if event.get("event") == "done":
            log.warning("engine_done_ignored", state=event.get("state"))
            return
        self._send(event)

    def finish(self, state: str) -> None:
        """The job's one final event, with the state the engine returned (or failed when it raised)."""
        with self._lock:
            if self.done_sent:
                return
            self.done_sent = True
        self._send({"event": "done", "state": state})

    def _send(self, event: dict[str, Any]) -> None:
        with self._lock:
            line = protocol.encode(event)
            if not self._orphaned:
                try:
                    self._write(line, event)
                    return
                except (BrokenPipeError, ValueError, OSError):
                    # The app is gone: keep the work, stop at the next step with a checkpoint.
                    self._orphaned = True
                    self._stopped.set()
            # Nobody reads stdout any more: the job's own record keeps what happens until the worker ends (the
            # checkpoint it saves on the way out), so the next start shows the job where it really stopped.
            try:
                with open(self.events_file, "a", encoding="utf-8") as events:
                    events.write(line)
            except OSError:
                pass

    def _write(self, line: str, event: dict[str, Any]) -> None:
        """Out to the app: stdout here, the manager's reader directly for a job run in the app (jobs/inprocess.py)."""
        sys.stdout.write(line)
        if event.get("event") == "progress" and time.monotonic() - self._flushed < PROGRESS_FLUSH_S:
            # A tiny model reports ~150 steps a second: a write and a wake-up of the app per step cost
            # ~2 % of the step (E5). These lines wait in stdout's buffer (_buffer_events) for the flusher.
            self._flush_later()
        else:
            self._flush()

    def _flush(self) -> None:
        sys.stdout.flush()
        self._flushed = time.monotonic()

    def _flush_later(self) -> None:
        if not self._unflushed.is_set():
            self._unflushed.set()
        if self._flusher is None:
            # One thread for the channel's life: a thread started per flush cost ~0.2 ms each time (E5).
            self._flusher = threading.Thread(target=self._flush_loop, daemon=True, name="events-flush")
            self._flusher.start()

    def _flush_loop(self) -> None:
        """Flush held progress lines PROGRESS_FLUSH_S after the last flush, until the job's ``done`` is sent."""
        while not self.done_sent:
            if not self._unflushed.wait(1.0):
                continue
            time.sleep(max(0.0, self._flushed + PROGRESS_FLUSH_S - time.monotonic()))
            self._unflushed.clear()  # before the flush: a line written after it sets the flag again
            with self._lock:
                if self._orphaned:
                    return
                try:
                    self._flush()
                except (BrokenPipeError, ValueError, OSError):
                    self._orphaned = True
                    self._stopped.set()

    def request_stop(self, *_args: Any) -> None:
        self._stopped.set()

    def should_stop(self) -> bool:
        if not self._stopped.is_set() and self.stop_file.exists():
            self._stopped.set()
        return self._stopped.is_set()

    @property
    def stopping(self) -> threading.Event:
        return self._stopped


def _stats_loop(channel: Channel, every: float = 2.0) -> None:
    """Report GPU (NVML) or, without a GPU, CPU and RAM use every few seconds."""
    from isengard_desktop.jobs.stats import sample

    while not channel.stopping.wait(every):
        channel.emit({"event": "gpu", **sample()})


def _install_signals(channel_ref: list[Channel]) -> None:
    signal.signal(signal.SIGTERM, lambda *_: channel_ref[0].request_stop() if channel_ref else None)
    if hasattr(signal, "SIGINT"):
        # Ctrl+C in the CLI reaches the whole process group; the CLI turns it into a stop request.
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _engine_context(job: dict[str, Any]) -> Any:
    """The engine's context from the job file: its volume (the same EngineContext the app builds), or only the
    models folder for a job file written before job files named the volume."""
    from engines.interface import EngineContext
    from isengard_desktop.core.engines import engine_context
    from isengard_desktop.storage.volume import Volume

    if job.get("volume_root"):
        return engine_context(Volume(Path(job["volume_root"])), job["engine"])
    return EngineContext(job["engine"], models_dir=Path(job["models_dir"]))


def _run_engine(job: dict[str, Any], channel: Channel) -> str:
    """A training or generation job, run by its engine from the registry (the engine resolves its own base
    model: the tiny fast-test one is built by the engines that use it). The engine returns its final state;
    ``run_job`` emits ``done``."""
    from engines import registry
    from engines.interface import GenerationRequest, TrainingSpec

    engine = registry.load(job["engine"], _engine_context(job))
    availability = engine.availability()
    if not availability.available:
        channel.emit({"event": "error", "message": availability.reason})
        return "failed"
    cast = registry.as_training if job["kind"] == "training" else registry.as_image
    try:
        typed: Any = cast(engine)
    except TypeError as exc:  # the job asks for a kind the engine does not declare
        channel.emit({"event": "error", "message": str(exc)})
        return "failed"
    if job["kind"] == "training":
        return typed.train(TrainingSpec.from_dict(job["spec"]), channel.emit, channel.should_stop)
    return typed.generate(GenerationRequest.from_dict(job["spec"]), channel.emit, channel.should_stop)


def run_job(job_dir: Path, channel: Channel) -> str:
    """Run the job of ``job_dir`` to its end; emits its events and the one final ``done``, returns the final state."""
    job = json.loads((job_dir / protocol.JOB_FILE).read_text(encoding="utf-8"))
    if job["kind"] == "training":  # the Training tab charts the machine's load; no other job's view shows it (E7:
        # a generation run in the CLI's own process paid psutil's import and its samples beside ComfyUI's work)
        threading.Thread(target=_stats_loop, args=(channel,), daemon=True, name="stats").start()
    started = time.monotonic()
    structlog.contextvars.bind_contextvars(job_id=job["job_id"])
    if job.get("correlation_id"):
        structlog.contextvars.bind_contextvars(correlation_id=job["correlation_id"])
    log.info("worker_started", engine=job["engine"], kind=job["kind"], pid=os.getpid())
    state = "failed"
    try:
        if job["kind"] == "download":
            # No engine and no GPU: the model manager's downloader, which reads the token from the keyring itself.
            from isengard_desktop.core.models import download_job

            state = download_job.run(job["spec"], channel.emit, channel.should_stop, Path(job["models_dir"]))
        elif job["kind"] == "dataset_check":
            # No engine and no GPU: "Check photos" measures the character's photos on the CPU (issue 12).
            from isengard_desktop.core.photo_check import job as photo_check_job

            state = photo_check_job.run(job["spec"], channel.emit, channel.should_stop, Path(job["models_dir"]))
        elif job["kind"] == "caption":
            # The dataset's automatic captions: a vision-language model on the GPU lane, no engine (issue 12).
            from engines.captioning import job as caption_job

            state = caption_job.run(job["spec"], channel.emit, channel.should_stop, Path(job["models_dir"]))
        else:
            state = _run_engine(job, channel)
    except Exception as exc:  # everything a worker hits must reach the user as an error event
        log.error("worker_failed", error=repr(exc), traceback=traceback.format_exc())
        channel.emit({"event": "error", "message": _explain(exc), "type": type(exc).__name__})
        state = "failed"
    channel.stopping.set()
    channel.finish(state)
    log.info("worker_finished", state=state, seconds=round(time.monotonic() - started, 3))
    structlog.contextvars.unbind_contextvars("job_id", "correlation_id")
    return state


def _explain(exc: Exception) -> str:
    """The error as one sentence a person can act on; an engine's own message otherwise."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return (f"The disk is full ({exc.strerror}{': ' + str(exc.filename) if exc.filename else ''}): free some "
                "space on the volume's disk, then resume the job; what was saved before is kept.")
    return str(exc) or repr(exc)


def run(job_dir: Path) -> int:
    channel = Channel(job_dir)
    _install_signals([channel])
    state = run_job(job_dir, channel)
    return 0 if state in ("succeeded", "cancelled") else 1


def serve() -> int:
    """Run the jobs whose folders arrive on stdin, one after another, until stdin closes."""
    current: list[Channel] = []
    _install_signals(current)
    log.info("worker_serving", pid=os.getpid())
    for line in sys.stdin:
        job_dir = Path(line.strip())
        if not line.strip():
            continue
        current[:] = [Channel(job_dir)]
        run_job(job_dir, current[0])
    log.info("worker_serve_ended", pid=os.getpid())
    return 0


def _buffer_events() -> None:
    """Events leave when the Channel flushes them (at once, or progress within PROGRESS_FLUSH_S), not one pipe
    write per line.

    The app starts workers with PYTHONUNBUFFERED, so the log on stderr and a library's stray output arrive at
    once; on stdout that made every progress line a write and a wake-up of the app: ~0.1 ms of a tiny model's
    6.5 ms step (E5)."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no real stdout (a windowed bundle): leave it as it is
        return
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(descriptor, "w", closefd=False), 1 << 16),
                                  encoding="utf-8", errors="replace", newline="\n")


def main() -> int:
    _buffer_events()
    app_log.configure(None, stderr_level=logging.INFO)
    if sys.argv[1] == protocol.SERVE_ARG:
        return serve()
    return run(Path(sys.argv[1]))


if __name__ == "__main__":
    exit_now(main())
