"""Moving the bytes of one hub file onto its partial file: a ranged HTTP GET, or huggingface_hub's Xet path.

Used by :func:`isengard_desktop.core.models.hub.download`, which owns the partial file, the free-space check
and the verification; this module only appends bytes and says whether it finished or was asked to stop.
A dropped connection (a cut, a timeout, a 5xx) is retried from the byte it reached, with a ranged request,
until several attempts in a row bring nothing new.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from isengard_desktop.core.models import hub

log = structlog.get_logger(__name__)

READ_BYTES = 1 << 20


def _url(remote: hub.RemoteFile) -> str:
    from huggingface_hub import hf_hub_url

    # The commit pins the content: a push to "main" in the middle of a download cannot splice two versions.
    return hf_hub_url(remote.repo, remote.path, revision=remote.commit or remote.revision, endpoint=hub.endpoint())


def _headers(token: str | None) -> dict[str, str]:
    from huggingface_hub.utils import build_hf_headers

    headers = build_hf_headers(token=token or False)
    headers["Accept-Encoding"] = "identity"  # byte offsets must be offsets of the file, not of a compressed stream
    return headers


def _bigger_reads() -> None:
    """Read the socket 1 MiB at a time instead of httpcore2's 64 KiB.

    Each read costs a timeout set, an h11 parse and a hand-over to the hasher: at 64 KiB that Python overhead, not
    the network, capped a loopback download at about two thirds of curl's speed (bench/download_throughput.py).
    READ_NUM_BYTES is a class-level tuning constant of httpcore2; raised only, and only in the process that
    downloads (the download worker).
    """
    try:
        from httpcore2._sync.http11 import HTTP11Connection
    except ImportError:  # a later huggingface_hub on another HTTP stack: its defaults are then what we get
        return
    if getattr(HTTP11Connection, "READ_NUM_BYTES", 0) < READ_BYTES:
        HTTP11Connection.READ_NUM_BYTES = READ_BYTES


def fetch_http(remote: hub.RemoteFile, part: Path, token: str | None, have: int, size: int, digest: Any,
               on_progress: hub.Progress, should_stop: Callable[[], bool]) -> tuple[str, Any]:
    """Append the bytes from ``have`` to ``size`` onto ``part``; returns (state, digest of the whole file)."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import get_session, hf_raise_for_status

    _bigger_reads()
    url, base = _url(remote), _headers(token)
    session = get_session()
    stalls = 0
    with part.open("ab") as out:
        while have < size:
            if should_stop():
                return "cancelled", digest
            headers = dict(base)
            if have:
                headers["Range"] = f"bytes={have}-"
            try:
                with session.stream("GET", url, headers=headers, follow_redirects=True, timeout=30.0) as response:
                    if response.status_code == 416:
                        break  # nothing beyond what we have: the size check will judge it
                    hf_raise_for_status(response)
                    if have and response.status_code != 206:
                        # The server ignored the Range and sends the whole file: start the partial again.
                        log.warning("download_range_ignored", url=url, status=response.status_code)
                        digest = hashlib.new(digest.name)
                        out.truncate(0)
                        have = 0
                    elif have and not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
                        raise hub.DownloadVerificationError(
                            f"{hub.endpoint()} answered a different range than asked for {remote.path}; "
                            "start the download again.")
                    for chunk in response.iter_bytes():  # as the bytes arrive: a cut loses nothing already received
                        out.write(chunk)
                        # Hashed as it arrives: no second pass over a 20 GB file at the end. Inline, not on
                        # a thread: handing chunks to a hashing thread cost more in GIL hand-overs than it
                        # won (bench/download_throughput.py, 2 cores).
                        digest.update(chunk)
                        have += len(chunk)
                        stalls = 0
                        on_progress(have, size)
                        if should_stop():
                            return "cancelled", digest
            except (httpx2.TransportError, HfHubHTTPError) as exc:
                status = getattr(getattr(exc, "response", None), "status_code", None)
                if status is not None and status < 500 and status != 429:
                    raise hub._explain(exc, remote.repo, token, what=remote.path) from None
                stalls += 1
                if stalls > hub.MAX_STALLED_RETRIES:
                    raise hub._explain(exc, remote.repo, token, what=remote.path) from None
                log.warning("download_retrying", path=remote.path, at_byte=have, attempt=stalls,
                            error=type(exc).__name__)
                out.flush()
                if _sleep(min(0.5 * 2 ** (stalls - 1), 8.0), should_stop):
                    return "cancelled", digest
    return "succeeded", digest


def _sleep(seconds: float, should_stop: Callable[[], bool]) -> bool:
    """Wait, looking at the stop request; True if asked to stop."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if should_stop():
            return True
        time.sleep(0.1)
    return should_stop()


def fetch_xet(remote: hub.RemoteFile, part: Path, token: str | None, size: int, on_progress: hub.Progress,
              should_stop: Callable[[], bool]) -> str:
    """Let huggingface_hub's xet path (hf_xet) write ``part``; its chunk cache is what makes a restart resume.

    Untested here: there is no Xet server on loopback. On a stop the download thread is left to die with the
    worker process (hf_xet has no cancel hook); chunks already fetched stay in hf_xet's cache.
    """
    from huggingface_hub.file_download import xet_get
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # tqdm redraws would flood the job log
    meta = hub._metadata(remote.repo, remote.path, token, remote.commit or remote.revision)
    if meta.xet_file_data is None:
        raise hub.HubAccessError(remote.repo, "offline", f"{hub.endpoint()} no longer serves {remote.path} through "
                                 "Xet; start the download again.", hub.repo_url(remote.repo))
    failure: list[BaseException] = []

    def work() -> None:
        try:
            xet_get(incomplete_path=part, xet_file_data=meta.xet_file_data, headers=_headers(token),
                    expected_size=size, displayed_filename=remote.path)
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=work, name="xet-download", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.25)
        if should_stop():
            return "cancelled"
        on_progress(part.stat().st_size if part.exists() else 0, size)
    if failure:
        raise failure[0]  # the caller falls back to plain HTTP, whose refusals are explained
    on_progress(size, size)
    return "succeeded"
