"""The remote side of a remote job: ``python -m isengard_desktop.core.remote.agent ACTION ...`` run over SSH on the
remote machine by its own installed copy of the app (jobs/remote_job.py and core/remote/sync.py call it).

Actions (each one SSH call, each prints at most one JSON line):

- ``missing VOLUME``: reads volume-relative paths on stdin, prints those the remote volume does not have
  (images are stored by content hash, so a present path is a present file: only the rest is sent).
- ``launch JOB_DIR VOLUME``: starts ``run`` detached from the SSH session (its own session, stdio on files), so a
  dropped connection or a closed laptop does not end it.
- ``run JOB_DIR VOLUME``: waits for the remote volume's GPU lock (one GPU job per machine, the same lock the
  remote's own window uses), runs the ordinary worker with its events appended to ``events.jsonl``, writes
  ``exit.json`` when it ends.
- ``status JOB_DIR``: whether the job runs, its exit, the size of its events file and the tail of its log.
- ``follow JOB_DIR OFFSET``: streams ``events.jsonl`` from byte OFFSET, whole lines only, and ends once the job
  has ended and every line was sent (a reconnect calls it again with the bytes it already has).
- ``stop JOB_DIR`` / ``kill JOB_DIR``: ask the worker to save and stop (the stop file, as a local cancel), or end it.

Standard library plus the app's own GPU lock: it must start fast (every call is one process start).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

EVENTS_FILE = "events.jsonl"  # the same names as jobs/protocol.py (not imported: it pulls in the engines' interface)
STOP_FILE = "stop.request"
LOG_FILE = "job.log"
EXIT_FILE = "exit.json"
AGENT_PID_FILE = "agent.pid"
WORKER_PID_FILE = "worker.pid"
FOLLOW_POLL_S = 0.02  # how often follow looks for new lines: the events' latency floor
LOCK_POLL_S = 1.0
WORKER_MODULE = "isengard_desktop.jobs.worker"
AGENT_MODULE = "isengard_desktop.core.remote.agent"


def _emit(job_dir: Path, event: dict) -> None:
    with open(job_dir / EVENTS_FILE, "a", encoding="utf-8") as events:
        events.write(json.dumps(event, separators=(",", ":")) + "\n")


def _pid_alive(pid_file: Path, needle: str) -> bool:
    """Whether the process named in ``pid_file`` still runs and is ours (its command line holds ``needle``)."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except (OSError, ValueError):
        return False
    return needle in cmdline


def running(job_dir: Path) -> bool:
    return not (job_dir / EXIT_FILE).exists() and _pid_alive(job_dir / AGENT_PID_FILE, str(job_dir))


def missing(volume: Path) -> int:
    absent = [rel for rel in (line.strip() for line in sys.stdin) if rel and not (volume / rel).is_file()]
    sys.stdout.write(json.dumps(absent) + "\n")
    return 0


def launch(job_dir: Path, volume: Path) -> int:
    if running(job_dir):  # a second launch of a live job would run it twice
        sys.stdout.write(json.dumps({"launched": False, "running": True}) + "\n")
        return 0
    for name in (EXIT_FILE, STOP_FILE):
        (job_dir / name).unlink(missing_ok=True)
    with open(os.devnull, "rb") as null_in, open(job_dir / LOG_FILE, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", AGENT_MODULE, "run", str(job_dir), str(volume)],
                                stdin=null_in, stdout=log, stderr=log, start_new_session=True, close_fds=True)
    (job_dir / AGENT_PID_FILE).write_text(str(proc.pid))
    sys.stdout.write(json.dumps({"launched": True, "pid": proc.pid}) + "\n")
    return 0


def run(job_dir: Path, volume: Path) -> int:
    from isengard_desktop.storage.gpu_lock import GpuLock

    (job_dir / AGENT_PID_FILE).write_text(str(os.getpid()))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # belt and braces: setsid already left the SSH session
    lock = GpuLock(volume / "jobs" / ".gpu.lock")
    told = False
    while not lock.try_acquire():
        if not told:
            _emit(job_dir, {"event": "log", "level": "info",
                            "message": "Waiting for this machine's GPU: another job is running on it."})
            told = True
        if (job_dir / STOP_FILE).exists():
            _emit(job_dir, {"event": "done", "state": "cancelled"})
            (job_dir / EXIT_FILE).write_text(json.dumps({"returncode": 0}))
            return 0
        time.sleep(LOCK_POLL_S)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
    with open(os.devnull, "rb") as null_in, open(job_dir / EVENTS_FILE, "ab") as events, \
            open(job_dir / LOG_FILE, "ab") as log:
        # The worker inherits the lock's descriptor, as locally: if this agent dies, the worker keeps the GPU.
        worker = subprocess.Popen([sys.executable, "-m", WORKER_MODULE, str(job_dir)], stdin=null_in, stdout=events,
                                  stderr=log, env=env, pass_fds=lock.inheritable_fds())
        (job_dir / WORKER_PID_FILE).write_text(str(worker.pid))
        code = worker.wait()
    (job_dir / EXIT_FILE).write_text(json.dumps({"returncode": code}))
    lock.close()
    return 0


def status(job_dir: Path) -> int:
    exit_info = None
    try:
        exit_info = json.loads((job_dir / EXIT_FILE).read_text())
    except (OSError, ValueError):
        pass
    try:
        size = (job_dir / EVENTS_FILE).stat().st_size
    except OSError:
        size = 0
    try:
        tail = (job_dir / LOG_FILE).read_text(encoding="utf-8", errors="replace").splitlines()[-8:]
    except OSError:
        tail = []
    sys.stdout.write(json.dumps({"exists": (job_dir / "job.json").exists(), "running": running(job_dir),
                                 "exit": exit_info, "size": size, "tail": tail}) + "\n")
    return 0


def follow(job_dir: Path, offset: int) -> int:
    out = sys.stdout.buffer
    path = job_dir / EVENTS_FILE
    pending = b""
    while True:
        ended = not running(job_dir)  # looked at before reading: what the job wrote before it ended is read below
        try:
            with open(path, "rb") as events:
                events.seek(offset)
                chunk = events.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            pending += chunk
            offset += len(chunk)
            whole, _, pending = pending.rpartition(b"\n")
            if whole:
                out.write(whole + b"\n")
                out.flush()
        elif ended:
            return 0
        else:
            time.sleep(FOLLOW_POLL_S)


def stop(job_dir: Path) -> int:
    (job_dir / STOP_FILE).touch()
    return 0


def kill(job_dir: Path) -> int:
    """End the worker (its agent then records the exit); an agent still waiting for the GPU is ended itself."""
    for name, needle in ((WORKER_PID_FILE, WORKER_MODULE), (AGENT_PID_FILE, AGENT_MODULE)):
        if _pid_alive(job_dir / name, needle):
            try:
                os.kill(int((job_dir / name).read_text().strip()), signal.SIGKILL)
            except (OSError, ValueError):
                continue
            if name == AGENT_PID_FILE:
                (job_dir / EXIT_FILE).write_text(json.dumps({"returncode": -9}))
            return 0
    return 0


def main(argv: list[str]) -> int:
    action, rest = argv[0], argv[1:]
    if action == "missing":
        return missing(Path(rest[0]))
    job_dir = Path(rest[0])
    if action == "launch":
        return launch(job_dir, Path(rest[1]))
    if action == "run":
        return run(job_dir, Path(rest[1]))
    if action == "status":
        return status(job_dir)
    if action == "follow":
        return follow(job_dir, int(rest[1]))
    if action == "stop":
        return stop(job_dir)
    if action == "kill":
        return kill(job_dir)
    sys.stderr.write(f"unknown action {action!r}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
