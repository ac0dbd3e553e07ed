"""Sending a job's inputs to a remote volume by content hash, and naming its files there.

A remote volume has the local volume's layout (images stored by sha256, ``models/loras``, ``jobs/<id>``), so a
local volume path becomes a remote one by swapping the root (``map_spec``). The photos a job needs are asked for
in one SSH call (the remote's agent answers which paths it lacks: a content-addressed path that exists holds the
same bytes), and the missing ones travel with the job's spec in one tar stream over one more SSH call. A second
run of the same character sends only its spec.
"""

from __future__ import annotations

import io
import json
import posixpath
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from isengard_desktop.core.remote import ssh
from isengard_desktop.core.remote.ssh import Remote

log = structlog.get_logger(__name__)

AGENT_MODULE = "isengard_desktop.core.remote.agent"
# Volume folders whose files are a job's inputs (sent when missing); other mapped paths (a base model folder,
# the job's own folder) are only renamed: the remote has or makes them itself.
SYNCED_FOLDERS = ("images/", "models/loras/")
SYNC_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class RemoteSide:
    """Where a remote job runs: the machine, the app's Python there and the absolute path of its remote volume."""

    remote: Remote
    python: str
    volume: str

    def agent(self, *args: str) -> list[str]:
        """The argv running the remote agent (core/remote/agent.py) with the remote's own installed app."""
        return [self.python, "-m", AGENT_MODULE, *args]

    def path(self, *parts: str) -> str:
        return posixpath.join(self.volume, *parts)

    def job_dir(self, job_id: str) -> str:
        return self.path("jobs", job_id)


@dataclass(frozen=True)
class SyncReport:
    files: int  # inputs the job needs
    sent: int  # of those, how many were missing there and sent
    bytes_sent: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"files": self.files, "sent": self.sent, "bytes_sent": self.bytes_sent,
                "seconds": round(self.seconds, 3)}


def map_spec(value: Any, local_root: Path, remote_root: str, inputs: set[str] | None = None) -> Any:
    """``value`` (a job spec) with every path inside the local volume rewritten into the remote volume; the
    volume-relative paths of the input files it names (photos, LoRAs) are added to ``inputs``."""
    if isinstance(value, dict):
        return {key: map_spec(item, local_root, remote_root, inputs) for key, item in value.items()}
    if isinstance(value, list):
        return [map_spec(item, local_root, remote_root, inputs) for item in value]
    if isinstance(value, str) and value.startswith(str(local_root) + "/"):
        rel = Path(value).relative_to(local_root).as_posix()
        if inputs is not None and rel.startswith(SYNCED_FOLDERS) and (local_root / rel).is_file():
            inputs.add(rel)
        return posixpath.join(remote_root, rel)
    return value


def missing(side: RemoteSide, relpaths: Sequence[str]) -> list[str]:
    """Which of these volume-relative paths the remote volume lacks (one SSH call)."""
    if not relpaths:
        return []
    done = ssh.run(side.remote, side.agent("missing", side.volume), input="\n".join(relpaths).encode(),
                   timeout=120)
    return list(json.loads(done.stdout.decode().strip().splitlines()[-1]))


def send(side: RemoteSide, local_root: Path, relpaths: Sequence[str], extra: dict[str, bytes] | None = None) -> int:
    """Copy volume files (same relative paths) and in-memory files (``extra``: relative path -> bytes) into the
    remote volume in one tar stream; returns the bytes sent."""
    script = 'mkdir -p -- "$1" && exec tar -C "$1" -xf -'
    sent = 0
    with tempfile.TemporaryFile() as err:
        proc = ssh.popen(side.remote, ["sh", "-c", script, "sh", side.volume], stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=err)
        try:
            assert proc.stdin is not None
            with tarfile.open(fileobj=proc.stdin, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for rel in relpaths:
                    path = local_root / rel
                    sent += path.stat().st_size
                    tar.add(str(path), arcname=rel, recursive=False)
                for rel, data in (extra or {}).items():
                    info = tarfile.TarInfo(rel)
                    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
                    tar.addfile(info, io.BytesIO(data))
                    sent += len(data)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the remote end stopped reading: its status and stderr say why
        try:
            proc.wait(timeout=SYNC_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            raise ssh.SshError(f"Sending the job's files to {side.remote.name} took over an hour; check the "
                               "connection and try again.", "timeout") from exc
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if proc.returncode == ssh.SSH_FAILED:
        raise ssh.diagnose(side.remote, stderr)
    if proc.returncode != 0:
        last = next((line for line in reversed(stderr.splitlines()) if line.strip()), "")
        raise ssh.RemoteCommandError(f"Sending the job's files to {side.remote.name} failed ({last.strip()}); check "
                                     "the free disk space there.", proc.returncode, stderr)
    return sent


def sync_inputs(side: RemoteSide, local_root: Path, inputs: Sequence[str],
                extra: dict[str, bytes] | None = None) -> SyncReport:
    """Send the inputs the remote volume lacks, with ``extra`` (the job's spec), in two SSH calls at most."""
    started = time.monotonic()
    absent = missing(side, sorted(inputs))
    sent = send(side, local_root, absent, extra)
    report = SyncReport(len(inputs), len(absent), sent, time.monotonic() - started)
    log.info("remote_inputs_synced", remote=side.remote.name, **report.to_json())
    return report
