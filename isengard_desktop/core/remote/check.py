"""What a remote machine has (``isengard remotes check``): its GPUs and VRAM, the free disk of its remote folder,
OS, Python, and whether this app is installed there at this version. One ssh round trip runs one shell script.

The remote folder's layout (shared with bootstrap.py and the remote jobs): ``<dir>/venv`` (the app's Python
environment), ``<dir>/volume`` (the remote volume), ``<dir>/installed.json`` (what bootstrap installed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import structlog

from isengard_desktop import __version__
from isengard_desktop.base.nvidia import Gpu, parse_nvidia_smi
from isengard_desktop.core.remote import ssh
from isengard_desktop.core.remote.ssh import EXPAND_DIR, Remote

log = structlog.get_logger(__name__)


_SCRIPT = EXPAND_DIR + r"""
echo "dir=$d"
echo "os=$(uname -s) $(uname -r) $(uname -m)"
if [ -r /etc/os-release ]; then . /etc/os-release; echo "distro=$PRETTY_NAME"; fi
py=$(command -v python3 || command -v python || true)
[ -n "$py" ] && echo "python=$py $("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)"
p="$d"; while [ ! -d "$p" ]; do p=$(dirname "$p"); done
echo "disk=$(df -Pk "$p" | awk 'NR==2 {print $4}')"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,compute_cap --format=csv,noheader,nounits \
    2>/dev/null | sed 's/^/gpu=/'
fi
[ -r "$d/installed.json" ] && echo "installed=$(tr -d '\n' < "$d/installed.json")"
if [ -x "$d/venv/bin/python" ]; then
  echo "app=$("$d/venv/bin/python" -c 'import isengard_desktop as m; print(m.__version__)' 2>/dev/null)"
fi
exit 0
"""


@dataclass(frozen=True)
class RemoteReport:
    """A remote machine as ``check`` found it."""

    remote: str
    folder: str  # the remote folder, ~ expanded
    os: str
    python: str | None  # "/usr/bin/python3 3.11.2"
    gpus: list[Gpu] = field(default_factory=list)
    free_disk_gb: float | None = None
    app_version: str | None = None  # the version importable in <dir>/venv, None when not installed
    installed: dict[str, Any] = field(default_factory=dict)  # installed.json written by bootstrap

    @property
    def same_version(self) -> bool:
        return self.app_version == __version__

    @property
    def app_state(self) -> str:
        if self.app_version is None:
            return "not installed"
        if self.same_version:
            return f"installed ({self.app_version})"
        return f"installed at {self.app_version}, this app is {__version__} (bootstrap updates it)"

    def to_json(self) -> dict[str, Any]:
        return {"remote": self.remote, "folder": self.folder, "os": self.os, "python": self.python,
                "gpus": [g.to_json() for g in self.gpus], "free_disk_gb": self.free_disk_gb,
                "app_version": self.app_version, "local_version": __version__, "same_version": self.same_version,
                "installed": self.installed}

    def lines(self) -> list[str]:
        """The report as a person reads it (CLI and the Remotes tab)."""
        gpus = "; ".join(f"{g.name}, {g.vram_gb} GB VRAM, driver {g.driver_version}" for g in self.gpus) or \
            "none (nvidia-smi not found): CPU only"
        disk = "unknown" if self.free_disk_gb is None else f"{self.free_disk_gb:.1f} GB free"
        return [f"GPU: {gpus}", f"Disk: {disk} in {self.folder}", f"OS: {self.os}",
                f"Python: {self.python or 'not found (install python3 there)'}", f"App: {self.app_state}"]


def parse_report(remote_name: str, text: str) -> RemoteReport:
    values: dict[str, str] = {}
    gpu_lines = []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "gpu":
            gpu_lines.append(value)
        else:
            values[key] = value.strip()
    os_text = values.get("distro") or values.get("os", "unknown")
    if values.get("distro") and values.get("os"):
        os_text = f"{values['distro']} ({values['os']})"
    disk = values.get("disk", "")
    installed: dict[str, Any] = {}
    try:
        installed = json.loads(values["installed"]) if values.get("installed") else {}
    except ValueError:
        installed = {}
    return RemoteReport(remote_name, values.get("dir", ""), os_text, values.get("python") or None,
                        parse_nvidia_smi("\n".join(gpu_lines)),
                        round(int(disk) / 1024 / 1024, 1) if disk.isdigit() else None,
                        values.get("app") or None, installed)


def check_remote(remote: Remote, timeout: float = 60) -> RemoteReport:
    """Ask ``remote`` what it has. Raises SshError (unreachable, unknown host key, wrong key) in one sentence."""
    out = ssh.run(remote, ["sh", "-c", _SCRIPT, "sh", remote.dir], timeout=timeout)
    report = parse_report(remote.name, out.stdout.decode(errors="replace"))
    log.info("remote_checked", remote=remote.name, gpus=len(report.gpus), app_version=report.app_version)
    return report
