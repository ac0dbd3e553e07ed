"""Keeping one headless ComfyUI running beside the app: start, readiness, log capture, crash restart, stop.

ComfyUI is started from its own checkout and environment with ``--listen 127.0.0.1`` on a free port
(it has no authentication: /prompt, /upload and /userdata must never be reachable from the network),
with every folder it writes inside the volume and an ``extra_model_paths.yaml`` that points its model
folders at the volume's ``models/`` (so a LoRA trained in the app is listed at once) and at any
existing ComfyUI ``models/`` folder the person added in Settings.

The server is written down in ``engines/comfyui/run/server.json`` (pid, port, state). The worker
process that runs a generation reads it to find the URL, and another Isengard process (the CLI
while the window is open) adopts a healthy server it finds there instead of starting a second one;
a supervisor only ever stops a server it started itself.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from engines.comfyui import paths
from engines.interface import ServiceStatus, StatusListeners

log = structlog.get_logger(__name__)

HOST = "127.0.0.1"
READY_TIMEOUT_S = 300.0  # 8-17 s on a 2-core CPU machine; first start after an install compiles caches
POLL_S = 0.25
MAX_RESTARTS = 3  # crashes within RESTART_WINDOW_S before giving up
RESTART_WINDOW_S = 300.0
TAIL_LINES = 60

# ComfyUI's folder names -> the folders under the volume's models/ that serve them (first = where new files go).
MODEL_FOLDERS: dict[str, tuple[str, ...]] = {
    "checkpoints": ("checkpoints",),
    "diffusion_models": ("diffusion_models", "unet"),
    "text_encoders": ("text_encoders", "clip"),
    "vae": ("vae",),
    "loras": ("loras",),
    "controlnet": ("controlnet",),
    "upscale_models": ("upscale_models",),
    "clip_vision": ("clip_vision",),
    "ipadapter-flux": ("ipadapter-flux",),  # ComfyUI-IPAdapter-Flux's folder
    "ultralytics": ("ultralytics",),  # Impact-Subpack: bbox/<file> and segm/<file> under it
    "ultralytics_bbox": ("ultralytics/bbox",),
    "ultralytics_segm": ("ultralytics/segm",),
    "sams": ("sams",),
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def extra_model_paths(volume_root: Path, extra_roots: list[Path]) -> str:
    """The YAML ComfyUI reads for its model folders (JSON strings are valid YAML and quote any path)."""
    sections = [("isengard", paths.models_dir(volume_root), True)]
    sections += [(f"user_models_{n}", Path(root), False) for n, root in enumerate(extra_roots, 1)]
    lines = ["# Written by Isengard Desktop at each start of ComfyUI; edits are overwritten."]
    for name, root, is_default in sections:
        lines.append(f"{name}:")
        lines.append(f"    base_path: {json.dumps(str(root))}")
        if is_default:
            lines.append("    is_default: true")
        for folder, subfolders in MODEL_FOLDERS.items():
            lines.append(f"    {folder}: {json.dumps(chr(10).join(subfolders))}")
    return "\n".join(lines) + "\n"


def command(checkout: Path, python: Path, volume_root: Path, port: int, custom_nodes: list[str],
            gpu: bool) -> list[str]:
    base = paths.base_dir(volume_root)
    args = [
        str(python), str(checkout / "main.py"),
        "--listen", HOST, "--port", str(port),
        "--disable-auto-launch", "--dont-print-server", "--disable-api-nodes",
        "--base-directory", str(base),
        "--database-url", f"sqlite:///{base / 'user' / 'comfyui.db'}",
        "--extra-model-paths-config", str(base / "extra_model_paths.yaml"),
        "--preview-method", "latent2rgb",
        "--disable-all-custom-nodes",
    ]
    if custom_nodes:
        args += ["--whitelist-custom-nodes", *custom_nodes]
    if not gpu:
        args.append("--cpu")
    return args


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child still answers kill(0)
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the process that started it dies, even by SIGKILL.

    ComfyUI has its own session (a Ctrl+C in a terminal must not reach it), so nothing else would end it
    if the app were killed; the next app start would also adopt an orphan otherwise.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _process_identity(pid: int) -> dict[str, Any]:
    """What identifies a running process beyond its pid (which the system reuses): its start time."""
    import psutil

    try:
        return {"pid_created": psutil.Process(pid).create_time()}
    except (psutil.Error, ValueError):
        return {}


def is_that_comfyui(data: dict[str, Any]) -> bool:
    """True if the pid ``run/server.json`` names is still the ComfyUI that file describes.

    A pid is reused once its process ends: after a reboot or a long while, the pid of an orphaned server
    can belong to anything (an editor, another user's program). Before that pid is signalled it must be
    the same process (same start time, when recorded) running ComfyUI's main.py on the recorded port.
    """
    import psutil

    try:
        proc = psutil.Process(int(data["pid"]))
        created, cmdline = proc.create_time(), proc.cmdline()
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False
    recorded = data.get("pid_created")
    if recorded is not None and abs(float(recorded) - created) > 0.5:
        return False
    if not any(Path(arg).name == "main.py" for arg in cmdline):
        return False
    port = data.get("port")
    return port is None or str(port) in cmdline


def _healthy(url: str, timeout: float = 2.0) -> bool:
    from engines.comfyui.client import ComfyUIClient, ComfyUIError

    try:
        ComfyUIClient(url).system_stats(timeout=timeout)
        return True
    except (ComfyUIError, ValueError):
        return False


def read_server(volume_root: Path) -> ServiceStatus:
    """The server the volume's state file names, checked against the live process."""
    try:
        data = json.loads(paths.state_file(volume_root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ServiceStatus("stopped", "ComfyUI is not running.")
    if data.get("state") in ("starting", "ready") and not _pid_alive(data.get("pid")):
        return ServiceStatus("stopped", "ComfyUI is not running (its process has ended).")
    return ServiceStatus(data.get("state", "stopped"), data.get("detail", ""), data.get("url", ""))


def wait_ready(volume_root: Path, timeout: float, should_stop: Callable[[], bool],
               on_wait: Callable[[str], None] | None = None) -> str:
    """The URL of the volume's ComfyUI once it is ready; raises RuntimeError saying why it is not."""
    deadline = time.monotonic() + timeout
    told = False
    while True:
        status = read_server(volume_root)
        if status.state == "ready" and status.url:
            return status.url
        if status.state == "failed":
            raise RuntimeError(f"ComfyUI could not start: {status.detail}")
        if should_stop():
            raise InterruptedError("Cancelled while ComfyUI was starting.")
        if time.monotonic() > deadline:
            raise RuntimeError(f"ComfyUI was not ready after {timeout:.0f} s ({status.state}); see logs/comfyui.log "
                               "in the volume, or generate with the built-in engine.")
        if not told and on_wait is not None:
            on_wait("Waiting for ComfyUI to start (it takes 10-20 s after the app opens)…")
            told = True
        time.sleep(POLL_S)


class ComfyUISupervisor:
    """The EngineService of the comfyui engine (engines/interface.py). Qt-free; listeners run on its threads."""

    def __init__(self, volume_root: Path, extra_model_roots: list[Path] | tuple[Path, ...] = (),
                 ready_timeout: float = READY_TIMEOUT_S) -> None:
        self.volume_root = Path(volume_root)
        self.extra_model_roots = [Path(p) for p in extra_model_roots]
        self.ready_timeout = ready_timeout
        self._status = ServiceStatus("stopped")
        self._listeners = StatusListeners()
        self._lock = threading.RLock()
        self._proc: subprocess.Popen | None = None
        self._adopted_pid: int | None = None
        self._stopping = threading.Event()
        self._crashes: collections.deque[float] = collections.deque()
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    # EngineService -----------------------------------------------------------------------------------
    def status(self) -> ServiceStatus:
        return self._status

    def subscribe(self, listener: Callable[[ServiceStatus], None]) -> Callable[[], None]:
        return self._listeners.subscribe(listener)

    def start(self) -> None:
        with self._lock:
            if self._status.state in ("starting", "ready") and self._thread and self._thread.is_alive():
                return
            self._stopping.clear()
            self._set("starting", "Starting ComfyUI…")
            self._thread = threading.Thread(target=self._run, name="comfyui-supervisor", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            self._terminate(proc, timeout)
            self._write_state({"state": "stopped", "pid": None})
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout)
        self._set("stopped", "ComfyUI is stopped.")

    def free_memory(self) -> None:
        """Ask a ready ComfyUI to unload its models (a training job is about to need the GPU memory)."""
        status = self._status
        if status.state == "ready" and status.url:
            from engines.comfyui.client import ComfyUIClient, ComfyUIError

            try:
                ComfyUIClient(status.url).free()
                log.info("comfyui_memory_freed", reason="training starts")
            except ComfyUIError as exc:
                log.warning("comfyui_free_failed", error=str(exc))

    def configure(self, extra_model_roots: list[Path]) -> None:
        """New extra model folders, used from the next start."""
        self.extra_model_roots = [Path(p) for p in extra_model_roots]

    # internals ---------------------------------------------------------------------------------------
    @staticmethod
    def _terminate(proc: subprocess.Popen, timeout: float) -> None:
        """SIGTERM to ComfyUI's process group, SIGKILL after ``timeout``."""
        log.info("comfyui_stopping", pid=proc.pid)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("comfyui_killed", pid=proc.pid, timeout_s=timeout)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
            proc.wait(timeout=timeout)

    def _set(self, state: str, detail: str = "", url: str = "") -> None:
        self._status = ServiceStatus(state, detail, url)
        log.info("comfyui_state", state=state, detail=detail[:300], url=url)
        self._listeners.notify(self._status)

    def _write_state(self, data: dict[str, Any]) -> None:
        from isengard_desktop.base import atomic

        file = paths.state_file(self.volume_root)
        try:
            current = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            current = {}
        if current.get("owner_pid") not in (None, os.getpid()) and is_that_comfyui(current):
            return  # another process's live ComfyUI (not merely a live pid): not ours to describe
        atomic.write_text(file, json.dumps({**current, **data, "owner_pid": os.getpid(),
                                            "updated_at": datetime.now(UTC).isoformat()}, indent=2))

    def _run(self) -> None:
        existing = read_server(self.volume_root)
        if existing.state == "ready" and existing.url and _healthy(existing.url):
            self._adopt(existing)
            return
        while not self._stopping.is_set():
            outcome = self._launch_once()
            if outcome != "crashed" or self._stopping.is_set():
                return
            now = time.monotonic()
            self._crashes.append(now)
            while self._crashes and now - self._crashes[0] > RESTART_WINDOW_S:
                self._crashes.popleft()
            if len(self._crashes) > MAX_RESTARTS:
                tail = " / ".join(line.strip() for line in list(self._tail)[-4:])[:600]
                self._set("failed", f"ComfyUI crashed {len(self._crashes)} times in {RESTART_WINDOW_S / 60:.0f} "
                                    f"minutes and was not restarted again. Last output: {tail}. See logs/comfyui.log; "
                                    "reinstall it from Settings, or generate with the built-in engine.")
                self._write_state({"state": "failed", "detail": self._status.detail, "pid": None})
                return
            delay = 2 ** len(self._crashes)
            log.warning("comfyui_restarting", crashes=len(self._crashes), delay_s=delay)
            self._set("starting", f"ComfyUI stopped unexpectedly; restarting it in {delay} s…")
            if self._stopping.wait(delay):
                return

    def _adopt(self, existing: ServiceStatus) -> None:
        """Use a healthy server another Isengard process started; watch it, never stop it.

        A server whose starter is gone (an orphan) is stopped and replaced instead: nobody would stop it.
        """
        data = json.loads(paths.state_file(self.volume_root).read_text(encoding="utf-8"))
        if not _pid_alive(data.get("owner_pid")):
            if is_that_comfyui(data):
                log.warning("comfyui_orphan_replaced", pid=data.get("pid"))
                try:
                    os.killpg(int(data["pid"]), signal.SIGTERM)
                except (ProcessLookupError, PermissionError, KeyError, TypeError, ValueError):
                    pass
                deadline = time.monotonic() + 10
                while _pid_alive(data.get("pid")) and time.monotonic() < deadline:
                    time.sleep(0.1)
            else:  # the pid now belongs to another program: never signal it, just forget the old server
                log.warning("comfyui_state_pid_reused", pid=data.get("pid"))
            self._write_state({"state": "stopped", "pid": None, "owner_pid": None})
            self._run()
            return
        self._adopted_pid = data.get("pid")
        log.info("comfyui_adopted", pid=self._adopted_pid, url=existing.url)
        self._set("ready", f"Using ComfyUI at {existing.url} (started by another Isengard window or command).",
                  existing.url)
        while not self._stopping.wait(2.0):
            if not _pid_alive(self._adopted_pid):
                log.warning("comfyui_adopted_server_gone", pid=self._adopted_pid)
                self._adopted_pid = None
                self._set("starting", "The ComfyUI this app was using has stopped; starting its own…")
                self._run()
                return

    def _launch_once(self) -> str:
        """Start ComfyUI and wait until it exits; returns "failed", "stopped" or "crashed"."""
        located = paths.locate(paths.engine_dir(self.volume_root))
        if isinstance(located, str):
            self._set("failed", located)
            return "failed"
        checkout, python = located
        from isengard_desktop.base.mode import detect_gpu

        base = paths.base_dir(self.volume_root)
        for folder in ("input", "output", "temp", "user", "custom_nodes"):
            (base / folder).mkdir(parents=True, exist_ok=True)
        for subfolders in MODEL_FOLDERS.values():
            (paths.models_dir(self.volume_root) / subfolders[0]).mkdir(parents=True, exist_ok=True)
        # The IP-Adapter pack looks for its image encoder only in ComfyUI's own models/clip_vision.
        own_clip_vision = base / "models" / "clip_vision"
        if not own_clip_vision.exists() and not own_clip_vision.is_symlink():
            own_clip_vision.parent.mkdir(parents=True, exist_ok=True)
            own_clip_vision.symlink_to(paths.models_dir(self.volume_root) / "clip_vision", target_is_directory=True)
        (base / "extra_model_paths.yaml").write_text(extra_model_paths(self.volume_root, self.extra_model_roots),
                                                     encoding="utf-8")
        custom_nodes = sorted(p.name for p in (base / "custom_nodes").iterdir() if p.is_dir()
                              and not p.name.startswith((".", "__")))
        self.port = port = free_port()
        url = f"http://{HOST}:{port}"
        args = command(checkout, python, self.volume_root, port, custom_nodes, detect_gpu().present)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        env.pop("ISENGARD_COMFYUI_PYTHON", None)
        started = time.monotonic()
        with self._lock:
            if self._stopping.is_set():
                return "stopped"
            self._proc = proc = subprocess.Popen(
                args, cwd=checkout, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                start_new_session=True, preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        log.info("comfyui_started", pid=proc.pid, port=port, command=" ".join(args))
        self._write_state({"state": "starting", "pid": proc.pid, "port": port, "url": url, "detail": "",
                           "started_at": datetime.now(UTC).isoformat(), **_process_identity(proc.pid)})
        reader = threading.Thread(target=self._capture, args=(proc, port), name="comfyui-log", daemon=True)
        reader.start()
        ready = False
        while proc.poll() is None and not self._stopping.is_set():
            if not ready and _healthy(url, timeout=1.0):
                ready = True
                seconds = round(time.monotonic() - started, 2)
                log.info("comfyui_ready", port=port, seconds=seconds)
                self._write_state({"state": "ready"})
                self._set("ready", f"ComfyUI is ready on {url} (started in {seconds} s).", url)
            elif not ready and time.monotonic() - started > self.ready_timeout:
                self._set("failed", f"ComfyUI did not answer within {self.ready_timeout:.0f} s; see logs/comfyui.log "
                                    "in the volume.")
                self._write_state({"state": "failed", "detail": self._status.detail, "pid": None})
                self._stopping.set()
                self._terminate(proc, 10.0)
                reader.join(timeout=5)
                if proc.stdout is not None:
                    proc.stdout.close()
                return "failed"
            time.sleep(POLL_S if not ready else 1.0)
        code = proc.wait()
        reader.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
        if self._stopping.is_set():
            return "stopped"
        log.warning("comfyui_exited", pid=proc.pid, returncode=code, was_ready=ready,
                    tail=" / ".join(list(self._tail)[-5:])[:800])
        self._write_state({"state": "starting", "pid": None})
        return "crashed"

    def _capture(self, proc: subprocess.Popen, port: int) -> None:
        """ComfyUI's output, line by line, into logs/comfyui.log as JSON (and the tail kept for errors)."""
        from isengard_desktop.base.log import redact_text

        assert proc.stdout is not None
        file = paths.log_file(self.volume_root)
        file.parent.mkdir(parents=True, exist_ok=True)
        with open(file, "a", encoding="utf-8") as handle:
            for raw in proc.stdout:
                line = redact_text(raw.decode("utf-8", "replace").rstrip())
                if not line.strip():
                    continue
                self._tail.append(line)
                level = "error" if ("Traceback" in line or "Error" in line) else "info"
                handle.write(json.dumps({"timestamp": datetime.now(UTC).isoformat(), "level": level,
                                         "event": "comfyui_output", "line": line, "port": port,
                                         "pid": proc.pid}, ensure_ascii=False) + "\n")
                handle.flush()
