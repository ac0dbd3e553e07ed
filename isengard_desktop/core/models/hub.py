"""Talking to the Hugging Face hub: access checks, file metadata, and resumable, verified downloads.

Metadata and access go through huggingface_hub (``HF_ENDPOINT`` is read at call time, for people behind a
mirror). File bodies over plain HTTP are fetched by us: huggingface_hub 2.x writes into a process-unique
temporary file and starts from byte 0 in a new process, so resuming after a crash or a restart needs a stable
partial file (``<dest>.partial``) continued with a ranged GET. A small sidecar (``<dest>.partial.json``) names
the remote file the partial belongs to, so a file changed on the hub restarts cleanly instead of being spliced.
The sha256 is computed while the bytes arrive, so the check at the end costs no second pass over a 20 GB file;
a resumed download hashes the bytes already on disk first.

Xet-backed files are served by huggingface_hub's xet path (hf_xet), whose chunk cache is what resumes them.
That path cannot be exercised here (no Xet server on loopback): it is written to huggingface_hub's API, untested.

The token is always an explicit argument: never read from the environment or the huggingface_hub login, never
logged, never put in a command line or a child's environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

import structlog

from isengard_desktop.base.errors import IsengardError

log = structlog.get_logger(__name__)
XET_MAX_BYTES = 2 * 1000**3  # larger files resume through our ranged download (see download())

DEFAULT_ENDPOINT = "https://huggingface.co"
CHUNK = 1 << 20
RESERVE_BYTES = 32 << 20  # never fill the volume to the last byte: its database and logs still need to write
MAX_STALLED_RETRIES = 5  # attempts in a row that bring no new byte before a network error is given up on
Progress = Callable[[int, int], None]


class Stopped(IsengardError):  # noqa: N818 - a signal to unwind more than an error
    """Raised inside a long hash when the job was asked to stop (a sentence, should a caller not catch it)."""

    def __init__(self, message: str = "Stopped on request before the check finished; nothing was changed.") -> None:
        super().__init__(message)


class HubAccessError(IsengardError):
    """The hub refused or could not answer; ``reason`` says why and ``fix_url`` where to fix it."""

    def __init__(self, repo: str, reason: str, message: str, fix_url: str) -> None:
        super().__init__(message)
        self.repo, self.reason, self.fix_url = repo, reason, fix_url


class DownloadVerificationError(IsengardError):
    """A downloaded file did not have the published size or sha256; nothing of it was kept."""


class NotEnoughSpaceError(IsengardError):
    """The disk cannot hold what remains to be downloaded."""


@dataclass(frozen=True)
class RemoteFile:
    repo: str
    path: str
    revision: str
    size: int
    sha256: str | None
    commit: str | None
    xet: bool


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def tokens_url() -> str:
    return f"{endpoint()}/settings/tokens"


def repo_url(repo: str) -> str:
    return f"{endpoint()}/{repo}"


def _host() -> str:
    return urlparse(endpoint()).netloc or endpoint()


def _explain(exc: Exception, repo: str, token: str | None, what: str | None = None) -> HubAccessError:
    """Turn a huggingface_hub / network error into one sentence with the link that fixes it."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    server = (response.headers.get("X-Error-Message") or "") if response is not None else ""
    if isinstance(exc, GatedRepoError):
        if token is None or status == 401:
            return HubAccessError(repo, "no_token", f"{repo} is a gated repository and no Hugging Face token is set: "
                                  f"accept its licence at {repo_url(repo)}, then create a read token at "
                                  f"{tokens_url()} and paste it in Settings.", tokens_url())
        if "awaiting a review" in server:
            return HubAccessError(repo, "pending", f"Your request for access to {repo} is still awaiting the "
                                  f"authors' review; try again once it is approved at {repo_url(repo)}.",
                                  repo_url(repo))
        return HubAccessError(repo, "not_accepted", f"The account of your Hugging Face token has not accepted the "
                              f"licence of {repo}: accept it at {repo_url(repo)} while logged in with that "
                              "account, then try again.", repo_url(repo))
    if isinstance(exc, (EntryNotFoundError, RevisionNotFoundError)):
        return HubAccessError(repo, "not_found", f"{what or 'The file'} was not found in {repo} on {_host()}; "
                              f"check the name at {repo_url(repo)}.", repo_url(repo))
    if isinstance(exc, RepositoryNotFoundError) and "Invalid credentials" not in server:
        return HubAccessError(repo, "not_found", f"The repository {repo} was not found on {_host()} (or it is "
                              f"private to another account); check its name at {repo_url(repo)}.", repo_url(repo))
    if isinstance(exc, HfHubHTTPError) and status in (401, 403):
        return HubAccessError(repo, "bad_token", f"{_host()} rejected the Hugging Face token ({status}: "
                              f"{server or 'no access'}) for {repo}; create a new read token at {tokens_url()} "
                              "and paste it in Settings.", tokens_url())
    why = f"HTTP {status}" if status else type(exc).__name__
    return HubAccessError(repo, "offline", f"The Hugging Face hub at {_host()} could not be reached for {repo} "
                          f"({why}); check the network connection (or HF_ENDPOINT if you use a mirror) and try "
                          "again.", endpoint())


def _hub_errors() -> tuple[type[BaseException], ...]:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    return (HfHubHTTPError, httpx2.HTTPError, OSError)


def check_access(repo: str, token: str | None, revision: str = "main") -> None:
    """One request (the hub's auth-check) before a download starts; raises HubAccessError when refused."""
    from huggingface_hub import HfApi

    try:
        # token=False, not None: None would make huggingface_hub look for a token of its own (env, login file).
        HfApi(endpoint=endpoint()).auth_check(repo, token=token or False)
    except _hub_errors() as exc:
        error = _explain(exc, repo, token)
        log.warning("hub_access_refused", repo=repo, reason=error.reason, revision=revision)
        raise error from None


def _metadata(repo: str, path: str, token: str | None, revision: str):  # -> HfFileMetadata
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo, path, revision=revision, endpoint=endpoint())
    try:
        return get_hf_file_metadata(url, token=token or False, endpoint=endpoint(), retry_on_errors=True)
    except _hub_errors() as exc:
        raise _explain(exc, repo, token, what=path) from None


def remote_file(repo: str, path: str, token: str | None, revision: str = "main") -> RemoteFile:
    """Size, sha256 (the LFS oid the hub publishes), commit and storage of one file."""
    meta = _metadata(repo, path, token, revision)
    # The linked ETag of an LFS (or Xet) file is its sha256; a small git file's ETag is its git blob id.
    sha = meta.etag if meta.etag and re.fullmatch(r"[0-9a-f]{64}", meta.etag) else None
    if meta.size is None:
        raise HubAccessError(repo, "offline", f"{_host()} did not say how large {path} of {repo} is; try again "
                             "later.", repo_url(repo))
    return RemoteFile(repo, path, revision, int(meta.size), sha, meta.commit_hash, meta.xet_file_data is not None)


def partial_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".partial")


def _sidecar(dest: Path) -> Path:
    return dest.with_name(dest.name + ".partial.json")


def _existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(_existing(folder)).free


def check_free_space(folder: Path, needed_bytes: int) -> None:
    free = free_bytes(folder)
    if needed_bytes > 0 and needed_bytes + RESERVE_BYTES > free:
        raise NotEnoughSpaceError(
            f"Downloading needs {_human(needed_bytes)} more in {folder} but only {_human(free)} is free; free some "
            "space there or choose a volume on a larger disk in Settings.")


def _human(size: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def sha256_file(path: Path, on_progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
                *, limit: int | None = None, digest=None) -> str:
    """sha256 of a file (or of its first ``limit`` bytes into ``digest``); raises Stopped when asked to stop."""
    digest = digest if digest is not None else hashlib.sha256()
    total = path.stat().st_size if limit is None else limit
    buffer = bytearray(8 << 20)  # one reused buffer: memory stays flat whatever the size of the file
    view = memoryview(buffer)
    done = 0
    with path.open("rb", buffering=0) as handle:
        while done < total:
            got = handle.readinto(view[: min(len(buffer), total - done)])
            if not got:
                break
            digest.update(view[:got])
            done += got
            if on_progress is not None:
                on_progress(done, total)
            if should_stop is not None and should_stop():
                raise Stopped
    return digest.hexdigest()


@dataclass
class _Identity:
    repo: str
    path: str
    size: int
    sha256: str | None
    commit: str | None


def _partial_is_ours(dest: Path, ident: _Identity) -> bool:
    try:
        stored = json.loads(_sidecar(dest).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if ident.sha256 or stored.get("sha256"):  # the content hash is the identity when there is one
        return stored.get("sha256") == ident.sha256 and stored.get("size") == ident.size
    return stored == asdict(ident)


def _discard(dest: Path) -> None:
    partial_path(dest).unlink(missing_ok=True)
    _sidecar(dest).unlink(missing_ok=True)


def download(remote: RemoteFile, dest: Path, token: str | None, *, expected_size: int | None = None,
             expected_sha256: str | None = None, on_progress: Progress = lambda done, total: None,
             should_stop: Callable[[], bool] = lambda: False, on_verify: Progress | None = None) -> str:
    """Fetch ``remote`` to ``dest``, continuing from ``partial_path(dest)``; "succeeded" or "cancelled".

    Checks the free space for what remains before writing; at the end checks size and sha256 (a mismatch deletes
    the partial and ``dest`` and raises DownloadVerificationError), then renames into place atomically.
    ``on_verify`` reports the hashing of bytes already on disk when a download resumes.
    """
    from isengard_desktop.core.models import transfer

    size = expected_size if expected_size is not None else remote.size
    sha = (expected_sha256 or remote.sha256 or "").lower() or None
    part = partial_path(dest)
    ident = _Identity(remote.repo, remote.path, size, sha, remote.commit)
    if part.exists() and (not _partial_is_ours(dest, ident) or part.stat().st_size > size):
        log.info("download_partial_discarded", file=str(dest), reason="the remote file changed")
        _discard(dest)
    have = part.stat().st_size if part.exists() else 0
    check_free_space(dest.parent, size - have)
    dest.parent.mkdir(parents=True, exist_ok=True)
    from isengard_desktop.base import atomic

    atomic.write_text(_sidecar(dest), json.dumps(asdict(ident)))
    digest = hashlib.sha256()
    # Xet for small files only: whether hf_xet's chunk cache can resume a restarted 23.8 GB transformer depends on
    # how its wheel was built (10 GB or none), and a second 24 GB download is the failure people give up over. Big
    # files, and any file with bytes already on disk, take the ranged HTTP path, which resumes from the partial file.
    use_xet = remote.xet and size <= XET_MAX_BYTES and not have and _xet_available()
    log.info("download_started", repo=remote.repo, path=remote.path, file=str(dest), size=size, resume_from=have,
             xet=use_xet)
    if use_xet:
        try:
            state = transfer.fetch_xet(remote, part, token, size, on_progress, should_stop)
        except HubAccessError:
            raise
        except Exception as exc:
            # The xet path cannot be exercised here (no Xet server on loopback). Should it fail, the hub serves the
            # same bytes over plain HTTP with ranges: start the partial again that way rather than give up.
            log.warning("download_xet_failed", path=remote.path, error=repr(exc))
            part.unlink(missing_ok=True)
            use_xet, have = False, 0
        else:
            if state != "succeeded":
                return state
            digest = None  # hf_xet wrote the file on its own: hash it once, below
    if not use_xet:
        if have:
            try:
                sha256_file(part, on_verify, should_stop, limit=have, digest=digest)
            except Stopped:
                return "cancelled"
        state, digest = transfer.fetch_http(remote, part, token, have, size, digest, on_progress, should_stop)
        if state != "succeeded":
            return state
    got_size = part.stat().st_size
    got_sha = digest.hexdigest() if digest is not None else sha256_file(part, on_verify, None)
    if got_size != size or (sha is not None and got_sha != sha):
        _discard(dest)
        dest.unlink(missing_ok=True)
        what = (f"{got_size} bytes instead of {size}" if got_size != size
                else f"sha256 {got_sha[:12]}… instead of the published {sha[:12]}…")  # type: ignore[index]
        log.error("download_verification_failed", repo=remote.repo, path=remote.path, file=str(dest), detail=what)
        raise DownloadVerificationError(
            f"{remote.path} from {remote.repo} arrived with {what}, so it was deleted and nothing was kept; start "
            "the download again, and if it fails the same way the file on the hub has changed.")
    _finish(part, dest)
    _sidecar(dest).unlink(missing_ok=True)
    log.info("download_finished", repo=remote.repo, path=remote.path, file=str(dest), size=size)
    return "succeeded"


def _xet_available() -> bool:
    """hf_xet installed and not turned off with HF_HUB_DISABLE_XET (then Xet files come over plain HTTP)."""
    try:
        from huggingface_hub.utils._runtime import is_xet_available
    except ImportError:  # moved in a later huggingface_hub: plain HTTP, which serves Xet files too
        return False
    return is_xet_available()


def _finish(part: Path, dest: Path) -> None:
    """Make the verified partial the file, atomically (a reader sees the old file or the whole new one)."""
    from isengard_desktop.base import atomic

    with part.open("rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(part, dest)
    atomic.fsync_dir(dest.parent)
