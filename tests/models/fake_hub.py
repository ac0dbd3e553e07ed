"""A loopback HTTP server that answers like the Hugging Face hub, for tests and benchmarks.

Point ``HF_ENDPOINT`` at :attr:`FakeHub.url` and huggingface_hub 2.4.0 (and our own downloader) talk to it
as they would to huggingface.co. What it answers was matched against what huggingface_hub parses:

* ``HEAD|GET /{repo}/resolve/{revision}/{path}`` -- ``X-Repo-Commit``, ``ETag``, and for LFS files
  ``X-Linked-Etag`` (the sha256) and ``X-Linked-Size`` (``file_download.get_hf_file_metadata``);
  ``Content-Length``, ``Accept-Ranges: bytes``; a ``Range: bytes=N-`` / ``bytes=N-M`` GET answers 206 with
  ``Content-Range`` (416 past the end). With ``cdn_redirect=True`` an LFS file answers 302 to
  ``http://localhost:{port}/cdn/...`` (another host name for the same server, as the real hub redirects to its
  CDN): huggingface_hub then reads the metadata from the 302 itself and must not send the token to the CDN.
* ``GET /api/models/{repo}/auth-check`` (``HfApi.auth_check``) and ``POST /api/models/{repo}/paths-info/{revision}``
  (``HfApi.get_paths_info``: size, git oid, and for LFS files ``lfs.oid`` = sha256 and ``lfs.size``).
* Errors as the real hub sends them (``utils/_http.py hf_raise_for_status`` reads ``X-Error-Code`` and
  ``X-Error-Message``): unknown repository 401 (anonymous) / 404 (with a token) ``RepoNotFound``; a token the hub
  does not know 401 ``Invalid credentials in Authorization header``; a gated repository 401 ``GatedRepo``
  without a token, 403 ``GatedRepo`` with a token that has no access (or whose request is pending);
  404 ``EntryNotFound`` / ``RevisionNotFound``.

Knobs for tests: :attr:`FakeHub.throttle` (bytes per second per response), :meth:`FakeHub.cut_next` (close the
connection after N body bytes, for the next K responses), and :attr:`FakeHub.requests` (every request seen, with
its Range and whether it carried a token) so a test can assert that a resumed download asked for ``bytes=N-``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote

_CHUNK = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass
class FakeFile:
    """One file of a fake repository: bytes in memory, or a file on disk (for big ones)."""

    path: str
    data: bytes | None = None
    source: Path | None = None
    lfs: bool = True
    xet: bool = False  # announce Xet storage (X-Xet-Hash); no Xet server answers, so the Xet path fails here
    sha256: str = ""
    git_sha1: str = ""
    size: int = 0

    def __post_init__(self) -> None:
        if self.data is not None:
            self.size = len(self.data)
            if not self.sha256:
                self.sha256 = hashlib.sha256(self.data).hexdigest()
            header = f"blob {self.size}\0".encode()
            self.git_sha1 = hashlib.sha1(header + self.data).hexdigest()  # noqa: S324 - git's blob id
        else:
            assert self.source is not None
            self.size = self.source.stat().st_size
            if not self.sha256:
                self.sha256 = _sha256_of(self.source)
            self.git_sha1 = hashlib.sha1(self.sha256.encode()).hexdigest()  # noqa: S324 - a stand-in id

    @property
    def etag(self) -> str:
        # The real hub's ETag is the sha256 for LFS files and the git blob id for the others.
        return self.sha256 if self.lfs else self.git_sha1


@dataclass
class FakeRepo:
    repo: str
    files: dict[str, FakeFile] = field(default_factory=dict)
    gated: bool = False
    commit: str = ""


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    range: str | None
    has_token: bool
    host: str


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class FakeHub:
    """A threaded loopback server playing the hub. Use as a context manager or call start()/stop()."""

    def __init__(self, *, cdn_redirect: bool = False) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.tokens: dict[str, dict[str, str]] = {}  # token -> {repo: "accepted" | "pending"}
        self.throttle: int | None = None  # bytes per second, per response
        self.cdn_redirect = cdn_redirect
        self.requests: list[SeenRequest] = []
        self._cut_after: int | None = None
        self._cuts_left = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- set-up --------------------------------------------------------------------------------------------
    def add_file(self, repo: str, path: str, data: bytes | None = None, *, source: Path | None = None,
                 lfs: bool = True, gated: bool | None = None, sha256: str | None = None,
                 xet: bool = False) -> FakeFile:
        """Publish a file; ``sha256`` overrides the published hash (to test a hub that lies)."""
        entry = self.repos.setdefault(repo, FakeRepo(repo, commit=hashlib.sha1(repo.encode()).hexdigest()))  # noqa: S324
        if gated is not None:
            entry.gated = gated
        fake = FakeFile(path, data=data, source=source, lfs=lfs, xet=xet, sha256=sha256 or "")
        entry.files[path] = fake
        return fake

    def add_token(self, token: str, access: dict[str, str] | None = None) -> None:
        """A token the hub knows; ``access`` maps a gated repo to "accepted" or "pending"."""
        self.tokens[token] = dict(access or {})

    def cut_next(self, after_bytes: int, times: int = 1) -> None:
        """Close the connection abruptly after ``after_bytes`` body bytes, for the next ``times`` file bodies."""
        with self._lock:
            self._cut_after, self._cuts_left = after_bytes, times

    def ranges(self, path_suffix: str = "") -> list[str | None]:
        """The Range header of every file GET (resolve or CDN) whose path ends with ``path_suffix``."""
        return [r.range for r in self.requests if r.method == "GET" and r.path.endswith(path_suffix)
                and ("/resolve/" in r.path or r.path.startswith("/cdn/"))]

    # -- life cycle ----------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake_hub = hub

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- used by the handler ---------------------------------------------------------------------------------
    def _take_cut(self) -> int | None:
        with self._lock:
            if self._cuts_left <= 0:
                return None
            self._cuts_left -= 1
            return self._cut_after


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return  # a client dropping its connection (as cancelled downloads do) is not a failure of the hub


class _Handler(BaseHTTPRequestHandler):
    fake_hub: FakeHub
    protocol_version = "HTTP/1.1"  # keep-alive, as clients expect from the hub

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet: tests read .requests
        return

    # -- routing ---------------------------------------------------------------------------------------------
    def do_HEAD(self) -> None:  # noqa: N802
        self._route(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._route(head=False)

    def do_POST(self) -> None:  # noqa: N802
        hub = self.fake_hub
        raw_path = self.path.split("?", 1)[0]
        token = _bearer(self.headers.get("Authorization"))
        hub.requests.append(SeenRequest("POST", raw_path, None, token is not None, self.headers.get("Host", "")))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        match = re.fullmatch(r"/api/models/([^/]+/[^/]+)/paths-info/([^/]+)", raw_path)
        if match is None:
            self._error(404, None, "Not Found", head=False)
            return
        repo, revision = unquote(match.group(1)), unquote(match.group(2))
        # The listing of a public gated repository is open to anyone (as on the hub's file browser); its content
        # (resolve) is what the licence gates.
        entry = hub.repos.get(repo)
        denied = self._access(repo, token)
        if entry is None or (denied and denied[1] != "GatedRepo"):
            self._error(*(denied or (404, "RepoNotFound", "Repository not found")), head=False)
            return
        if revision not in ("main", entry.commit):
            self._error(404, "RevisionNotFound", "Invalid rev id: " + revision, head=False)
            return
        answer = []
        for path in parse_qs(body).get("paths", []):
            fake = entry.files.get(path)
            if fake is not None:
                info: dict = {"type": "file", "path": path, "size": fake.size, "oid": fake.git_sha1}
                if fake.lfs:
                    info["lfs"] = {"oid": fake.sha256, "size": fake.size, "pointerSize": 134}
                answer.append(info)
            elif any(name.startswith(path.rstrip("/") + "/") for name in entry.files):
                answer.append({"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest()})  # noqa: S324
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, *, head: bool) -> None:
        hub = self.fake_hub
        raw_path = self.path.split("?", 1)[0]
        token = _bearer(self.headers.get("Authorization"))
        hub.requests.append(SeenRequest(self.command, raw_path, self.headers.get("Range"), token is not None,
                                        self.headers.get("Host", "")))
        if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/auth-check", raw_path):
            self._auth_check(unquote(match.group(1)), token)
            return
        if match := re.fullmatch(r"/cdn/([^/]+/[^/]+)/([0-9a-f]{64})", raw_path):
            self._cdn(unquote(match.group(1)), match.group(2), head=head)
            return
        if match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", raw_path):
            self._resolve(unquote(match.group(1)), unquote(match.group(2)), unquote(match.group(3)), token,
                          head=head)
            return
        self._error(404, None, "Not Found", head=head)

    # -- endpoints -------------------------------------------------------------------------------------------
    def _access(self, repo: str, token: str | None) -> tuple[int, str | None, str] | None:
        """The error the real hub answers for this repo and token, or None when access is granted."""
        hub = self.fake_hub
        if token is not None and token not in hub.tokens:
            return 401, None, "Invalid credentials in Authorization header"
        entry = hub.repos.get(repo)
        if entry is None:
            return (404 if token else 401), "RepoNotFound", "Repository not found"
        if not entry.gated:
            return None
        if token is None:
            return 401, "GatedRepo", (f"Access to model {repo} is restricted. You must have access to it and be "
                                      "authenticated to access it. Please log in.")
        state = hub.tokens[token].get(repo)
        if state == "accepted":
            return None
        if state == "pending":
            return 403, "GatedRepo", (f"Your request to access model {repo} is awaiting a review from the repo "
                                      "authors.")
        return 403, "GatedRepo", (f"Access to model {repo} is restricted and you are not in the authorized list. "
                                  f"Visit https://huggingface.co/{repo} to ask for access.")

    def _auth_check(self, repo: str, token: str | None) -> None:
        if denied := self._access(repo, token):
            self._error(*denied, head=False)
            return
        body = json.dumps({"repo": repo, "access": "granted"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _resolve(self, repo: str, revision: str, path: str, token: str | None, *, head: bool) -> None:
        if denied := self._access(repo, token):
            self._error(*denied, head=head)
            return
        entry = self.fake_hub.repos[repo]
        if revision not in ("main", entry.commit):
            self._error(404, "RevisionNotFound", "Invalid rev id: " + revision, head=head)
            return
        fake = entry.files.get(path)
        if fake is None:
            self._error(404, "EntryNotFound", "Entry not found", head=head)
            return
        if fake.lfs and self.fake_hub.cdn_redirect:
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{self.fake_hub.port}/cdn/{repo}/{fake.sha256}")
            self._file_headers(entry, fake)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send_file(entry, fake, head=head)

    def _cdn(self, repo: str, sha256: str, *, head: bool) -> None:
        entry = self.fake_hub.repos.get(repo)
        fake = next((f for f in (entry.files.values() if entry else []) if f.sha256 == sha256), None)
        if entry is None or fake is None:
            self._error(404, None, "Not Found", head=head)
            return
        self._send_file(entry, fake, head=head, hub_headers=False)

    # -- answers ---------------------------------------------------------------------------------------------
    def _file_headers(self, entry: FakeRepo, fake: FakeFile) -> None:
        self.send_header("X-Repo-Commit", entry.commit)
        self.send_header("ETag", f'"{fake.etag}"')
        if fake.lfs:
            self.send_header("X-Linked-Etag", f'"{fake.sha256}"')
            self.send_header("X-Linked-Size", str(fake.size))
        if fake.xet:  # as the hub announces a Xet-backed file (utils/_xet.py parse_xet_file_data_from_response)
            self.send_header("X-Xet-Hash", hashlib.sha256(fake.sha256.encode()).hexdigest())
            # Absolute on huggingface.co, as the hub sends it: huggingface_hub rewrites it to HF_ENDPOINT.
            self.send_header("X-Xet-Refresh-Route",
                             f"https://huggingface.co/api/models/{entry.repo}/xet-read-token/{entry.commit}")

    def _send_file(self, entry: FakeRepo, fake: FakeFile, *, head: bool, hub_headers: bool = True) -> None:
        start, end = 0, fake.size - 1
        wanted = self.headers.get("Range")
        status = 200
        if wanted:
            match = _RANGE.match(wanted.strip())
            if match and match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), fake.size - 1) if match.group(2) else fake.size - 1
                status = 206
            if status == 206 and start >= fake.size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{fake.size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        length = max(end - start + 1, 0)
        self.send_response(status)
        if hub_headers:
            self._file_headers(entry, fake)
        else:
            self.send_header("ETag", f'"{fake.sha256}"')
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{fake.size}")
        self.end_headers()
        if not head:
            self._send_body(fake, start, length)

    def _send_body(self, fake: FakeFile, start: int, length: int) -> None:
        hub = self.fake_hub
        cut = hub._take_cut()
        limit = length if cut is None else min(cut, length)
        rate = hub.throttle
        if fake.source is not None and rate is None and cut is None:
            self.wfile.flush()
            with fake.source.open("rb") as handle:
                sent = 0
                while sent < length:  # sendfile: the server is never the bottleneck of a throughput figure
                    done = os.sendfile(self.connection.fileno(), handle.fileno(), start + sent, length - sent)
                    if done == 0:
                        break
                    sent += done
            return
        began, sent = time.monotonic(), 0
        chunk_size = _CHUNK if rate is None else max(1024, min(_CHUNK, rate // 20))
        handle = fake.source.open("rb") if fake.source is not None else None
        try:
            while sent < limit:
                size = min(chunk_size, limit - sent)
                if handle is not None:
                    handle.seek(start + sent)
                    chunk = handle.read(size)
                else:
                    assert fake.data is not None
                    chunk = fake.data[start + sent:start + sent + size]
                self.wfile.write(chunk)
                sent += len(chunk)
                if rate:
                    ahead = sent / rate - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)
        except (BrokenPipeError, ConnectionResetError):
            return
        finally:
            if handle is not None:
                handle.close()
        if cut is not None and cut < length:
            # An abrupt cut, as a dropped network would do: no more bytes, the socket goes away.
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _error(self, status: int, code: str | None, message: str, *, head: bool) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "0" if head else str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)


def _bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


def write_sparse_file(path: Path, size: int, seed: int = 0) -> Path:
    """A big file that costs little disk: a few random blocks scattered over holes (for benchmarks)."""
    rng = hashlib.sha256(str(seed).encode()).digest()
    with path.open("wb") as handle:
        handle.truncate(size)
        step = max(size // 64, 1)
        for offset in range(0, size, step):
            handle.seek(offset)
            handle.write((rng * 128)[: min(4096, size - offset)])
    return path
