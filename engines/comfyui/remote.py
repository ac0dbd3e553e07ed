"""A ComfyUI that already runs on another machine, used by URL instead of the embedded one (issue 16, item 4).

Settings → Engines stores the URL in settings.json (``comfyui_url``) and an optional auth header in the OS keyring
(core/secrets.py); the app lends the engine a function that reads the header (``EngineContext.lent``), so it never
goes through a job file, a command line or a log. While a URL is set, the embedded ComfyUI is not started at all
(it stays on 127.0.0.1 when it runs: nothing here exposes it).

LoRAs: ComfyUI has no endpoint to upload a LoRA. When the URL's host is a machine added under Settings → Remotes,
the LoRAs a workflow needs are copied over SSH (by the app's ``FileCopier``, core/remote/file_copy.py) into the
first ``loras`` folder that ComfyUI itself reports (GET /internal/folder_paths), unless the same file (sha256) is
there already. Otherwise the app says which
file to copy there by hand. (A route of ours inside ComfyUI would mean installing our code into someone else's
server and opening an upload endpoint on it; SSH is the access the person has already.)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from engines.comfyui.client import ComfyUIClient, ComfyUIError
from engines.interface import FileCopier, ServiceStatus, StatusListeners

log = structlog.get_logger(__name__)


def configured_url(volume_root: Path | None) -> str | None:
    """The remote ComfyUI's URL set in the volume's settings, or None (use the embedded one)."""
    if volume_root is None:
        return None
    try:
        data = json.loads((Path(volume_root) / "settings.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    url = str(data.get("comfyui_url") or "").strip().rstrip("/")
    return url or None


AuthHeader = Callable[[str], "tuple[str, str] | None"]


def client(url: str, auth_header: AuthHeader) -> ComfyUIClient:
    """A client of the remote ComfyUI with its auth header (the app reads it from the keyring) when one is set."""
    header = auth_header(url)
    return ComfyUIClient(url, headers=dict([header]) if header else None)


class RemoteComfyUIService:
    """The EngineService while a remote URL is set: ``start`` checks it answers (GET /system_stats) in the
    background; ``stop`` only forgets it (someone else's server is never stopped)."""

    def __init__(self, url: str, auth_header: AuthHeader) -> None:
        self.url, self.auth_header = url, auth_header
        self._status = ServiceStatus("stopped", f"Using the ComfyUI at {url}.")
        self._listeners = StatusListeners()
        self._thread: threading.Thread | None = None

    def status(self) -> ServiceStatus:
        return self._status

    def subscribe(self, listener: Callable[[ServiceStatus], None]) -> Callable[[], None]:
        return self._listeners.subscribe(listener)

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._set("starting", f"Connecting to the ComfyUI at {self.url}…")
        self._thread = threading.Thread(target=self._probe, name="comfyui-remote", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout)
        self._set("stopped", f"Not using the ComfyUI at {self.url}.")

    def configure(self, extra_model_roots: list[Any]) -> None:
        """The extra model folders are this machine's; a remote ComfyUI has its own."""

    def _probe(self) -> None:
        try:
            stats = client(self.url, self.auth_header).system_stats(timeout=10.0)
        except ComfyUIError as exc:
            self._set("failed", f"The ComfyUI at {self.url} does not answer ({exc}); check the URL and its auth "
                                "header in Settings → Engines.")
            return
        version = (stats.get("system") or {}).get("comfyui_version", "")
        self._set("ready", f"Using the ComfyUI at {self.url}{' (' + version + ')' if version else ''}.", self.url)

    def _set(self, state: str, detail: str, url: str = "") -> None:
        self._status = ServiceStatus(state, detail, url)
        log.info("comfyui_remote_state", state=state, url=self.url)
        self._listeners.notify(self._status)


class SwitchingComfyUIService:
    """The comfyui engine's EngineService: at each start it reads the settings and runs either the embedded
    ComfyUI (``ComfyUISupervisor``) or uses the remote URL, so Settings can switch without a new service object
    (the window's status bar stays subscribed to this one)."""

    def __init__(self, volume_root: Path, extra_model_roots: list[Path], auth_header: AuthHeader) -> None:
        from engines.comfyui.supervisor import ComfyUISupervisor

        self.volume_root, self.auth_header = Path(volume_root), auth_header
        self.local = ComfyUISupervisor(volume_root, extra_model_roots)
        self.remote: RemoteComfyUIService | None = None
        self._listeners = StatusListeners()
        self.local.subscribe(lambda status: self._forward(self.local, status))
        self._active: Any = self._choose()

    def _choose(self) -> Any:
        url = configured_url(self.volume_root)
        if not url:
            return self.local
        if self.remote is None or self.remote.url != url:
            remote = RemoteComfyUIService(url, self.auth_header)
            remote.subscribe(lambda status: self._forward(remote, status))
            self.remote = remote
        return self.remote

    def _forward(self, source: Any, status: ServiceStatus) -> None:
        if source is self._active:
            self._listeners.notify(status)

    def status(self) -> ServiceStatus:
        return self._active.status()

    def subscribe(self, listener: Callable[[ServiceStatus], None]) -> Callable[[], None]:
        return self._listeners.subscribe(listener)

    def start(self) -> None:
        self._active = self._choose()
        if self._active is not self.local and self.local.status().state != "stopped":
            self.local.stop()  # switched to a remote URL: the embedded one is not needed any more
        self._active.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self.remote is not None:
            self.remote.stop(timeout)
        self.local.stop(timeout)

    def configure(self, extra_model_roots: list[Any]) -> None:
        self.local.configure(extra_model_roots)

    def free_memory(self) -> None:
        """Only the embedded ComfyUI holds this machine's GPU memory."""
        if self._active is self.local:
            self.local.free_memory()


def send_loras(comfy: ComfyUIClient, lora_paths: Sequence[Path], copier_for: Callable[[str], FileCopier | None],
               say: Callable[[str], None]) -> None:
    """Make the LoRAs a workflow needs appear in the remote ComfyUI's ``loras`` folder (the app copies them over
    SSH when the URL's machine is one of its remotes), or raise ComfyUIError saying what to copy where."""
    listed = set(comfy.models("loras"))
    missing = [Path(p) for p in lora_paths if Path(p).name not in listed]
    copier = copier_for(comfy.url) if lora_paths else None
    if copier is None:
        if missing:
            raise ComfyUIError(f"The ComfyUI at {comfy.url} does not list the LoRA {missing[0].name}; add that machine "
                               "under Settings → Remotes so the app copies LoRAs to it over SSH, or copy the file "
                               "into its models/loras folder yourself.")
        return
    folders = (comfy._json("GET", "/internal/folder_paths") or {}).get("loras") or []
    if not folders:
        raise ComfyUIError(f"The ComfyUI at {comfy.url} reports no loras folder; copy the LoRAs there by hand.")
    copier.copy_changed([Path(p) for p in lora_paths], str(folders[0]), say)


def send_loras_or_explain(comfy: ComfyUIClient, lora_paths: Sequence[Path],
                          copier_for: Callable[[str], FileCopier | None], say: Callable[[str], None]) -> None:
    """``send_loras`` with an SSH failure (unreachable, wrong key) as the ComfyUIError the engine reports."""
    from isengard_desktop.base.errors import IsengardError

    try:
        send_loras(comfy, lora_paths, copier_for, say)
    except IsengardError as exc:
        raise ComfyUIError(f"The LoRAs could not be copied to the ComfyUI's machine: {exc}") from exc
