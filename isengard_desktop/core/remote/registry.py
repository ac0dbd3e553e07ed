"""The remote machines a person added (``isengard remotes add``, Settings → Remotes), kept in the volume's
settings.json under ``remotes``.

Only what ssh needs is stored: a name, user, host, port, the *path* of a key file (never its content, never a
password: the agent or the key file hold the secret) and the remote folder. Settings.json rather than a database
table: a handful of rows that a person may want to read or copy to another volume, and no migration to number.

Every change re-reads the file first (the CLI and the window may both change it) and, when given the window's
in-memory ``Settings``, updates it too so the window's next save does not bring a removed remote back.
"""

from __future__ import annotations

import re
from pathlib import Path

import structlog

from isengard_desktop.base.errors import NotFoundError, ValidationError
from isengard_desktop.core.remote.ssh import DEFAULT_REMOTE_DIR, Remote, parse_address
from isengard_desktop.storage import settings as settings_store
from isengard_desktop.storage.settings import Settings
from isengard_desktop.storage.volume import Volume

log = structlog.get_logger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
LOCAL = "local"  # the name a job uses for this machine; no remote may take it


def list_remotes(volume: Volume) -> list[Remote]:
    data = settings_store.load(volume.settings_path).remotes
    remotes = []
    for row in data:
        try:
            remotes.append(Remote.from_json(row))
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("remote_unreadable", error=str(exc))
    return sorted(remotes, key=lambda r: r.name.lower())


def get_remote(volume: Volume, name: str) -> Remote:
    for remote in list_remotes(volume):
        if remote.name == name:
            return remote
    known = ", ".join(r.name for r in list_remotes(volume)) or "none yet"
    raise NotFoundError(f"There is no remote named {name!r} (known: {known}); add it with "
                        "isengard remotes add NAME --ssh USER@HOST.")


def make_remote(name: str, address: str, key: str | None = None, folder: str | None = None) -> Remote:
    """A Remote from what a person typed, checked: a plain name, a USER@HOST[:PORT], an existing key file."""
    name = name.strip()
    if not _NAME.match(name) or name == LOCAL:
        raise ValidationError(f"{name!r} cannot name a remote; use letters, digits, '.', '_' or '-' (up to 40), "
                              f"not {LOCAL!r}.")
    user, host, port = parse_address(address)
    key_path = None
    if key and key.strip():
        path = Path(key.strip()).expanduser()
        if not path.is_file():
            raise ValidationError(f"The key file {path} does not exist; give the path of a private key (e.g. "
                                  "~/.ssh/id_ed25519) or leave it out to use your agent and ~/.ssh/config.")
        if path.suffix == ".pub":
            raise ValidationError(f"{path} is a public key; give the private key next to it ({path.with_suffix('')}).")
        key_path = str(path.resolve())
    folder = (folder or "").strip() or DEFAULT_REMOTE_DIR
    if not (folder.startswith(("/", "~/")) or folder == "~"):
        raise ValidationError(f"The remote folder {folder!r} must be absolute or start with ~/ (the remote home).")
    return Remote(name, user, host, port, key_path, folder.rstrip("/") or "/")


def add_remote(volume: Volume, remote: Remote, settings: Settings | None = None) -> Remote:
    current = settings_store.load(volume.settings_path)
    if any(row.get("name") == remote.name for row in current.remotes):
        raise ValidationError(f"A remote named {remote.name!r} exists already; remove it first or choose another "
                              "name.")
    settings_store.update(volume.settings_path, settings, remotes=[*current.remotes, remote.to_json()])
    log.info("remote_added", remote=remote.name, host=remote.host, port=remote.port, key_path=remote.key)
    return remote


def remove_remote(volume: Volume, name: str, settings: Settings | None = None) -> Remote:
    remote = get_remote(volume, name)
    current = settings_store.load(volume.settings_path)
    settings_store.update(volume.settings_path, settings,
                          remotes=[row for row in current.remotes if row.get("name") != name])
    log.info("remote_removed", remote=name)
    return remote


def check_comfyui_url(url: str) -> str:
    """The URL of a remote ComfyUI (Settings → Engines) cleaned, or ValidationError: http(s) with a host."""
    import urllib.parse

    url = url.strip().rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(f"{url!r} is not a ComfyUI address; write it as http://HOST:8188 or https://HOST.")
    return url
