"""A job that runs on a remote GPU machine over SSH, as the job manager sees it (SPEC §4, issue 16 item 3).

``RemoteJob`` takes a ``WorkerProcess``'s place in the manager: it sends the job's inputs to the remote volume
(core/remote/sync.py), starts the same worker there detached from the SSH session (core/remote/agent.py), follows
the worker's JSON-lines events over SSH and hands them to the manager as if a local worker wrote them. Files an
event names (samples, the LoRA, images) are fetched into the local job folder first and the event's path is
rewritten, so the manager's filing (jobs/filing.py) files them as local ones.

The raw remote lines are mirrored in the local job folder (``remote-events.jsonl``): its size is the offset a
reconnect (a dropped link, a re-attach after the app or the CLI died) continues from, so no event is lost or
handled twice. Closing the app only stops following (``request_stop`` detaches); the job goes on remotely,
its row stays "running" on its remote, and ``JobManager.resume`` re-attaches to it, or starts it again from its
checkpoint there when it stopped.

A job's row records ``params["remote"] = {"name": NAME, "job_dir": ..., "volume": ...}``; each remote is a lane of
its own in the manager (one job at a time per remote, beside the local GPU), and the remote's own GPU lock keeps one
GPU job per machine whoever started it.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from isengard_desktop.base.errors import IsengardError
from isengard_desktop.core.remote import ssh
from isengard_desktop.core.remote.sync import RemoteSide, SyncReport, map_spec, sync_inputs
from isengard_desktop.jobs import protocol
from isengard_desktop.storage.jobs_repo import JobRow
from isengard_desktop.storage.volume import Volume

if TYPE_CHECKING:
    from isengard_desktop.jobs.manager import JobManager

log = structlog.get_logger(__name__)

REMOTE_KEY = "remote"
MIRROR_FILE = "remote-events.jsonl"  # the remote events' raw bytes: its size is the offset to continue from
LANE_PREFIX = "remote:"
FETCHED_EVENTS = ("sample", "artifact", "image")  # events naming a file that must come back before they are handled
RECONNECT_MAX_S = 30.0
# SSH failures that say the remote cannot be reached now (not that it refuses us): a launched job waits them out.
UNREACHABLE = ("timeout", "refused", "dns", "failed")


def remote_name(job: JobRow) -> str | None:
    """The remote a job runs on, or None for a local job."""
    info = job.params.get(REMOTE_KEY)
    return str(info["name"]) if isinstance(info, dict) and info.get("name") else None


def lane(job: JobRow) -> str | None:
    """The manager lane of a remote job (one per remote), None for a local one."""
    name = remote_name(job)
    return LANE_PREFIX + name if name else None


def follower_alive(job: JobRow) -> bool:
    """Whether an Isengard process (the window or a CLI) still follows this running remote job."""
    if not job.pid:
        return False
    if job.pid == os.getpid():
        return True
    import psutil

    try:
        return "isengard" in " ".join(psutil.Process(job.pid).cmdline())
    except (psutil.Error, OSError):
        return False


def reattachable(job: JobRow) -> bool:
    """A remote job recorded as running that nobody here follows any more (the app or the CLI died)."""
    return remote_name(job) is not None and job.state == "running" and not follower_alive(job)


def where(job: JobRow) -> str:
    """How `isengard jobs list` and the Jobs tab say where a job runs."""
    name = remote_name(job)
    if name is None:
        return "this computer"
    if job.state != "running":
        return f"remote {name}"
    if follower_alive(job):
        return f"running on {name}"
    return f"running on {name} (not followed here: `isengard jobs resume {job.id}` re-attaches)"


def resolve_side(volume: Volume, name: str, engine: str,
                 progress: Callable[[str], None] | None = None) -> RemoteSide:
    """The registered remote ``name``, bootstrapped (the app installed there at this version) if it is not yet, with
    the job's engine installed there at this app's pins (the built-in one comes with the app)."""
    from isengard_desktop.core.remote import bootstrap, registry

    remote = registry.get_remote(volume, name)
    say = progress or (lambda _text: None)
    install = bootstrap.ensure_bootstrapped(remote, say)
    if engine != "diffusers":
        bootstrap.ensure_engine(install, engine, say)
    return RemoteSide(remote, str(install.python), str(install.volume))


def request_stop(manager: JobManager, job: JobRow) -> None:
    """Cancel a remote job: its stop file is written there, as a local cancel writes it here. A job not launched
    there yet is stopped by the local stop file, which the follower reads before it launches."""
    from isengard_desktop.core.remote import registry

    job_dir = (job.params.get(REMOTE_KEY) or {}).get("job_dir")
    if not job_dir:
        return
    remote = registry.get_remote(manager.volume, remote_name(job) or "")
    ssh.run(remote, ["touch", f"{job_dir}/{protocol.STOP_FILE}"], timeout=60)
    log.info("remote_job_stop_requested", job_id=job.id, remote=remote.name)


class RemoteJob:
    """Runs and follows one job on its remote; quacks like ``runner.WorkerProcess`` for the manager."""

    proc = None  # no local process: the manager's shutdown has nothing to wait for

    def __init__(self, manager: JobManager, job: JobRow, on_event: Callable[[str, dict[str, Any]], None],
                 on_exit: Callable[[str, int, list[str]], None]) -> None:
        self.manager = manager
        self.job = job
        self.job_id = job.id
        self.job_dir = manager.job_dir(job)
        self.on_event = on_event
        self.on_exit = on_exit
        self.side: RemoteSide | None = None
        self.sync_report: SyncReport | None = None
        self._detached = threading.Event()
        self._follow: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._main, name=f"remote-{job.id}", daemon=True)

    # the WorkerProcess surface the manager uses ------------------------------------------------
    def start(self) -> int:
        self._thread.start()
        return os.getpid()  # the row's pid: the process following the job (`jobs list` checks it)

    def alive(self) -> bool:
        return self._thread.is_alive() and not self._detached.is_set()

    def request_stop(self) -> None:
        """The app is quitting: stop following; the job goes on remotely and can be re-attached."""
        self._detached.set()
        follow = self._follow
        if follow is not None and follow.poll() is None:
            follow.kill()
        log.info("remote_job_detached", job_id=self.job_id)

    def kill(self) -> None:
        """End the remote worker (a cancel that did not stop in time)."""
        if self.side is not None:
            ssh.run(self.side.remote, self.side.agent("kill", self.side.job_dir(self.job_id)), timeout=60,
                    check=False)

    def close(self) -> None:  # the manager closes serving workers; a remote job is not one
        pass

    # the job ---------------------------------------------------------------------------------
    def _main(self) -> None:
        name = remote_name(self.job) or ""
        try:
            status = self._reach(name)
            if status is None:
                return  # detached while the remote could not be reached
            if not status["running"] and status["size"] <= self._offset():
                if (self.job_dir / protocol.STOP_FILE).exists():  # cancelled while it was being sent
                    self.on_exit(self.job_id, 0, [])  # no worker ran, no done: the manager infers "cancelled"
                    return
                self._launch()
            self._follow_events()
            status = None if self._detached.is_set() else self._reach(name)
            if status is None:
                return
            exit_info = status.get("exit") or {}
            code = int(exit_info.get("returncode", 1)) if exit_info else 1
            if not exit_info:
                self.on_event(self.job_id, {"event": "error", "message": (
                    f"The job's worker on {name} ended without a word (the machine restarted, or the process was "
                    f"ended); resume it to continue from its last checkpoint there.")})
            self.on_exit(self.job_id, code, list(status.get("tail") or []))
        except IsengardError as exc:
            log.warning("remote_job_failed", job_id=self.job_id, remote=name, error=str(exc))
            if not self._detached.is_set():
                self.on_event(self.job_id, {"event": "error", "message": str(exc)})
                self.on_exit(self.job_id, 1, [])
        except Exception as exc:  # a bug must still end the job (and free its lane), never hang the waiters
            log.error("remote_job_crashed", job_id=self.job_id, error=repr(exc))
            self.on_event(self.job_id, {"event": "error", "message": f"Following the job on {name} failed ({exc})."})
            self.on_exit(self.job_id, 1, [])

    def _reach(self, name: str) -> dict[str, Any] | None:
        """The remote (bootstrapped) and the job's status there. A job already launched there waits for the remote
        to answer again (a closed laptop, a network that dropped) instead of failing: it goes on there meanwhile.
        None when the app stopped following meanwhile."""
        delay = 2.0
        while True:
            try:
                self.side = resolve_side(self.manager.volume, name, self.job.engine, self._say)
                return self._status()
            except ssh.SshError as exc:
                launched = bool((self.job.params.get(REMOTE_KEY) or {}).get("job_dir"))
                if not launched or exc.kind not in UNREACHABLE:
                    raise
                self._say(f"{exc} The job goes on there; trying again in {delay:.0f} s…")
                log.warning("remote_unreachable", job_id=self.job_id, remote=name, kind=exc.kind)
            if self._detached.wait(delay):
                return None
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _say(self, text: str) -> None:
        self.on_event(self.job_id, {"event": "log", "level": "info", "message": text})

    def _status(self) -> dict[str, Any]:
        assert self.side is not None
        done = ssh.run(self.side.remote, self.side.agent("status", self.side.job_dir(self.job_id)), timeout=60)
        return dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))

    def _offset(self) -> int:
        try:
            return (self.job_dir / MIRROR_FILE).stat().st_size
        except OSError:
            return 0

    def _launch(self) -> None:
        """Send what the remote lacks with the job's spec, then start the worker there, detached."""
        assert self.side is not None
        side = self.side
        job = json.loads((self.job_dir / protocol.JOB_FILE).read_text(encoding="utf-8"))
        local_root = self.manager.volume.root
        inputs: set[str] = set()
        remote_job = map_spec(job, local_root, side.volume, inputs)
        remote_job["models_dir"] = side.path("models")
        remote_job["volume_root"] = side.volume  # the remote worker's engines find their things in its volume
        if job["kind"] == "training" and self._offset() > 0:
            remote_job["spec"]["resume"] = True  # it ran there before: continue from its newest checkpoint
        from isengard_desktop.core.remote.models import ensure_remote_model, model_for_spec

        model = model_for_spec(job.get("spec") or {})
        if model:  # a production run: its base model must be in the remote volume (E35); fast-test builds its own
            ensure_remote_model(side, model, self._say, engine=self.job.engine)
        rel_dir = f"jobs/{self.job_id}"
        self._say(f"Sending the job's files to {side.remote.name}…")
        self.sync_report = sync_inputs(side, local_root, sorted(inputs),
                                       {f"{rel_dir}/{protocol.JOB_FILE}": json.dumps(remote_job, indent=2).encode()})
        self._say(f"Sent {self.sync_report.sent} of {self.sync_report.files} files "
                  f"({self.sync_report.bytes_sent / 2**20:.1f} MB) in {self.sync_report.seconds:.1f} s.")
        params = {**self.job.params, REMOTE_KEY: {"name": side.remote.name, "job_dir": side.job_dir(self.job_id),
                                                  "volume": side.volume, "python": side.python,
                                                  "sync": self.sync_report.to_json()}}
        self.manager.repo.set_params(self.job_id, params)
        ssh.run(side.remote, side.agent("launch", side.job_dir(self.job_id), side.volume), timeout=60)
        log.info("remote_job_launched", job_id=self.job_id, remote=side.remote.name)

    def _follow_events(self) -> None:
        """Follow the remote events file from the mirror's offset until the job ends there; reconnect on a drop."""
        assert self.side is not None
        side, delay = self.side, 1.0
        while not self._detached.is_set():
            with tempfile.TemporaryFile() as err:
                self._follow = ssh.popen(side.remote, side.agent("follow", side.job_dir(self.job_id),
                                                                 str(self._offset())),
                                         stdout=subprocess.PIPE, stderr=err)
                got = self._read(self._follow)
                code = self._follow.wait()
                if code == 0:
                    return  # the job ended there and every line has been read
                if self._detached.is_set():
                    return
                err.seek(0)
                why = err.read().decode(errors="replace").strip().splitlines()
            delay = 1.0 if got else min(delay * 2, RECONNECT_MAX_S)
            self._say(f"Lost the connection to {side.remote.name} ({why[-1] if why else f'status {code}'}); the job "
                      f"goes on there. Reconnecting in {delay:.0f} s…")
            log.warning("remote_follow_lost", job_id=self.job_id, remote=side.remote.name, returncode=code)
            if self._detached.wait(delay):
                return

    def _read(self, follow: subprocess.Popen[bytes]) -> bool:
        assert follow.stdout is not None
        got = False
        with open(self.job_dir / MIRROR_FILE, "ab") as mirror, \
                open(self.job_dir / protocol.EVENTS_FILE, "a", encoding="utf-8") as events:
            for raw in follow.stdout:
                if not raw.endswith(b"\n"):
                    break  # a torn last line (the link dropped mid-line): read again from its start
                got = True
                event = protocol.decode(raw.decode("utf-8", "replace"))
                if event is not None:
                    event = self._localise(event)
                    events.write(protocol.encode(event))
                    events.flush()
                # Mirrored after the event is handled: a crash in between replays it rather than losing it.
                mirror.write(raw)
                mirror.flush()
                if event is not None:
                    self.on_event(self.job_id, event)
        return got

    def _localise(self, event: dict[str, Any]) -> dict[str, Any]:
        """Fetch the file an event names into the local job folder and point the event at the copy."""
        assert self.side is not None
        path = event.get("path")
        remote_dir = self.side.job_dir(self.job_id)
        if not isinstance(path, str) or not path.startswith(remote_dir + "/"):
            return event
        local = self.job_dir / path[len(remote_dir) + 1:]
        if event.get("event") in FETCHED_EVENTS:
            started = time.monotonic()
            ssh.get(self.side.remote, path, local.parent, timeout=600)
            log.info("remote_file_fetched", job_id=self.job_id, path=str(local),
                     seconds=round(time.monotonic() - started, 3))
        return {**event, "path": str(local)}
