"""What the app lends an engine made in its process (``engines.interface.Lent``): the auth header of a remote ComfyUI
from the keyring, and copying files over SSH to the machine behind a URL when it is one of Settings → Remotes.

The engines know neither the keyring nor SSH nor the list of remotes; core/engines.py puts this in each
``EngineContext`` it builds.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from engines.interface import FileCopier, Lent
from isengard_desktop.storage.volume import Volume

if TYPE_CHECKING:  # SSH (tarfile, shlex) is imported when a file is copied, not when an engine is made (issue 14)
    from isengard_desktop.core.remote.ssh import Remote

log = structlog.get_logger(__name__)


class SshFileCopier:
    """Copies files into a folder of one remote over SSH, skipping those whose content (sha256) is there already."""

    def __init__(self, remote: Remote) -> None:
        self.remote, self.name = remote, remote.name

    def copy_changed(self, paths: list[Path], folder: str, say: Callable[[str], None]) -> None:
        from isengard_desktop.core.models.hub import sha256_file
        from isengard_desktop.core.remote import ssh

        # By content, not name or size: a character trained again keeps its LoRA's name and size.
        sums = ssh.run(self.remote, ["sh", "-c", 'cd -- "$1" 2>/dev/null || exit 0; shift; for f; do [ -f "$f" ] && '
                                                 'sha256sum -- "$f"; done; exit 0', "sh", folder,
                                     *[p.name for p in paths]], timeout=120)
        there = {}
        for line in sums.stdout.decode(errors="replace").splitlines():
            digest, _, name = line.strip().partition("  ")
            there[name] = digest
        to_send = [p for p in paths if there.get(p.name) != sha256_file(p)]
        if to_send:
            say(f"Copying {len(to_send)} file(s) to {self.name} ({folder})")
            ssh.put(self.remote, to_send, folder, timeout=1800)
            log.info("remote_files_sent", remote=self.name, count=len(to_send))


def file_copier(volume: Volume, url: str) -> FileCopier | None:
    """A copier to the remote of Settings → Remotes whose host is the URL's host, or None."""
    from isengard_desktop.core.remote.registry import list_remotes

    host = urllib.parse.urlsplit(url).hostname
    remote = next((r for r in list_remotes(volume) if r.host == host), None)
    return SshFileCopier(remote) if remote is not None else None


def _auth_header(url: str) -> tuple[str, str] | None:
    from isengard_desktop.core.secrets import get_comfyui_auth

    return get_comfyui_auth()  # one ComfyUI URL is set at a time: its header, whatever the URL


def lent(volume: Volume) -> Lent:
    return Lent(auth_header=_auth_header, file_copier=lambda url: file_copier(volume, url))
