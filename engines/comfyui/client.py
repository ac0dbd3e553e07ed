"""A small synchronous client of a local ComfyUI server: REST calls plus following one prompt on its websocket.

``PromptTracker`` is the pure part: it turns ComfyUI's websocket messages (JSON text frames and
binary preview frames) for one prompt id into our events, so it is tested with messages captured
from a real server. ``ComfyUIClient`` does the I/O: POST /prompt, /interrupt, /queue, /free,
/upload/image; GET /object_info, /models/<folder>, /view, /history, /system_stats; and ``follow``,
which reads /ws?clientId= until the prompt ends.
"""

from __future__ import annotations

import json
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

PREVIEW_IMAGE = 1  # ComfyUI's BinaryEventTypes (protocol.py)
PREVIEW_IMAGE_WITH_METADATA = 4
HTTP_TIMEOUT_S = 30.0


class ComfyUIError(Exception):
    """ComfyUI refused or failed a request; the message says what and what to do."""


class PromptTracker:
    """Our events from ComfyUI's messages about one prompt; messages about other prompts are ignored.

    Events: ``{"event": "started"}``, ``{"event": "progress", "step", "total", "node"}``,
    ``{"event": "preview", "data": bytes}``, ``{"event": "output", "node", "images": [...]}``,
    ``{"event": "finished", "state": "succeeded" | "failed" | "cancelled", "message": str}``.
    """

    def __init__(self, prompt_id: str) -> None:
        self.prompt_id = prompt_id
        self.running = False  # between execution_start and the end: previews (which carry no id) are ours
        self.finished: dict[str, Any] | None = None
        self.images: list[dict[str, Any]] = []

    def feed(self, message: dict[str, Any] | bytes | str) -> list[dict[str, Any]]:
        if isinstance(message, bytes | bytearray):
            return self._binary(bytes(message))
        if isinstance(message, str):
            message = json.loads(message)
        kind = message.get("type")
        data = message.get("data") or {}
        if data.get("prompt_id") not in (None, self.prompt_id):
            return []
        if kind == "execution_start" and data.get("prompt_id") == self.prompt_id:
            self.running = True
            return [{"event": "started"}]
        if kind == "progress" and data.get("prompt_id") == self.prompt_id:
            return [{"event": "progress", "step": int(data.get("value", 0)), "total": int(data.get("max", 0)),
                     "node": data.get("node")}]
        if kind == "executed" and data.get("prompt_id") == self.prompt_id:
            images = [image for image in (data.get("output") or {}).get("images", []) if image.get("type") == "output"]
            self.images.extend(images)
            return [{"event": "output", "node": data.get("node"), "images": images}] if images else []
        if kind == "execution_success" and data.get("prompt_id") == self.prompt_id:
            return self._finish("succeeded", "")
        if kind == "execution_interrupted" and data.get("prompt_id") == self.prompt_id:
            return self._finish("cancelled", "Stopped.")
        if kind == "execution_error" and data.get("prompt_id") == self.prompt_id:
            node = data.get("node_type") or data.get("node_id") or "a node"
            text = str(data.get("exception_message", "")).strip().splitlines()
            return self._finish("failed", f"ComfyUI failed in {node}: {text[0] if text else 'unknown error'}")
        if kind == "executing" and data.get("prompt_id") == self.prompt_id and data.get("node") is None:
            # The older end-of-prompt signal; execution_success normally comes first.
            return [] if self.finished else self._finish("succeeded", "")
        return []

    def _finish(self, state: str, message: str) -> list[dict[str, Any]]:
        self.running = False
        self.finished = {"event": "finished", "state": state, "message": message}
        return [self.finished]

    def _binary(self, frame: bytes) -> list[dict[str, Any]]:
        if len(frame) < 8 or not self.running:
            return []
        (kind,) = struct.unpack(">I", frame[:4])
        if kind == PREVIEW_IMAGE:
            return [{"event": "preview", "data": frame[8:]}]
        if kind == PREVIEW_IMAGE_WITH_METADATA:
            (length,) = struct.unpack(">I", frame[4:8])
            try:
                meta = json.loads(frame[8:8 + length])
            except ValueError:
                return []
            if meta.get("prompt_id") not in (None, self.prompt_id):
                return []
            return [{"event": "preview", "data": frame[8 + length:]}]
        return []


class ComfyUIClient:
    def __init__(self, url: str, client_id: str | None = None, headers: dict[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        self.headers = dict(headers or {})  # a remote ComfyUI's auth header (engines/comfyui/remote.py)

    # plain HTTP --------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json",
                 timeout: float = HTTP_TIMEOUT_S) -> bytes:
        request = urllib.request.Request(self.url + path, data=body, method=method)
        if body is not None:
            request.add_header("Content-Type", content_type)
        for name, value in self.headers.items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise ComfyUIError(_explain(path, exc.code, detail)) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ComfyUIError(f"ComfyUI at {self.url} did not answer ({exc}); it may have stopped — see the "
                               "status bar, or restart Isengard Desktop.") from exc

    def _json(self, method: str, path: str, payload: Any = None, timeout: float = HTTP_TIMEOUT_S) -> Any:
        body = None if payload is None else json.dumps(payload).encode("utf-8")
        raw = self._request(method, path, body, timeout=timeout)
        return json.loads(raw) if raw.strip() else None

    def system_stats(self, timeout: float = 2.0) -> dict[str, Any]:
        return self._json("GET", "/system_stats", timeout=timeout)

    def object_info(self, node: str | None = None) -> dict[str, Any]:
        return self._json("GET", "/object_info" + (f"/{urllib.parse.quote(node)}" if node else ""))

    def models(self, folder: str) -> list[str]:
        """The files ComfyUI lists in one of its model folders (with the volume's and extra paths)."""
        try:
            return list(self._json("GET", f"/models/{urllib.parse.quote(folder)}") or [])
        except ComfyUIError:
            return []  # a folder type this ComfyUI does not know

    def upload_image(self, path: Path) -> str:
        """Copy an image into ComfyUI's input folder (for LoadImage); returns the name to use."""
        boundary = uuid.uuid4().hex
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{path.name}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode()
        tail = (f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\ntrue\r\n"
                f"--{boundary}--\r\n")
        body = head + path.read_bytes() + tail.encode()
        answer = json.loads(self._request("POST", "/upload/image", body, f"multipart/form-data; boundary={boundary}"))
        return answer["name"] if not answer.get("subfolder") else f"{answer['subfolder']}/{answer['name']}"

    def submit(self, workflow: dict[str, Any], extra_pnginfo: dict[str, Any] | None = None) -> str:
        payload: dict[str, Any] = {"prompt": workflow, "client_id": self.client_id}
        if extra_pnginfo:
            payload["extra_data"] = {"extra_pnginfo": extra_pnginfo}
        answer = self._json("POST", "/prompt", payload)
        return str(answer["prompt_id"])

    def interrupt(self, prompt_id: str) -> None:
        self._json("POST", "/interrupt", {"prompt_id": prompt_id})

    def delete_queued(self, prompt_ids: list[str]) -> None:
        self._json("POST", "/queue", {"delete": list(prompt_ids)})

    def free(self) -> None:
        """Ask ComfyUI to unload its models and free GPU memory (before a training job needs it)."""
        self._json("POST", "/free", {"unload_models": True, "free_memory": True})

    def view(self, filename: str, subfolder: str = "", kind: str = "output") -> bytes:
        query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": kind})
        return self._request("GET", f"/view?{query}", timeout=120.0)

    def history(self, prompt_id: str) -> dict[str, Any]:
        return (self._json("GET", f"/history/{prompt_id}") or {}).get(prompt_id, {})

    # the websocket -----------------------------------------------------------------------------------
    def connect(self, timeout: float = 10.0) -> Any:
        """Open /ws before submitting, so no message about the prompt is missed."""
        import websocket

        ws_url = "ws" + self.url[len("http"):] + f"/ws?clientId={self.client_id}"
        # ComfyUI's JSON messages are UTF-8 already; websocket-client's own check is pure Python, per byte, on
        # every progress message (E7).
        connection = websocket.create_connection(ws_url, timeout=timeout, enable_multithread=True,
                                                 skip_utf8_validation=True,
                                                 header=[f"{k}: {v}" for k, v in self.headers.items()])
        connection.settimeout(0.5)
        return connection

    def follow(self, connection: Any, prompt_id: str, on_event: Callable[[dict[str, Any]], None],
               should_stop: Callable[[], bool], stall_timeout: float = 3600.0) -> dict[str, Any]:
        """Read messages until the prompt ends; a stop request interrupts (or unqueues) it. Returns "finished"."""
        import websocket

        tracker = PromptTracker(prompt_id)
        stop_sent = False
        last_message = time.monotonic()
        while tracker.finished is None:
            if should_stop() and not stop_sent:
                stop_sent = True
                self.cancel(prompt_id, started=tracker.running)
                if not tracker.running:
                    return tracker._finish("cancelled", "Removed from ComfyUI's queue before it started.")[0]
            try:
                frame = connection.recv()
            except websocket.WebSocketTimeoutException:
                if time.monotonic() - last_message > stall_timeout:
                    raise ComfyUIError(f"ComfyUI sent nothing about the prompt for {stall_timeout:.0f} s.") from None
                continue
            except (websocket.WebSocketException, OSError) as exc:
                raise ComfyUIError(f"The connection to ComfyUI was lost ({exc}); it may have crashed — the "
                                   "app restarts it; generate again.") from exc
            last_message = time.monotonic()
            for event in tracker.feed(frame):
                on_event(event)
        return tracker.finished

    def cancel(self, prompt_id: str, started: bool) -> None:
        """Interrupt the prompt if it runs, and take it off the queue if it waits."""
        try:
            if started:
                self.interrupt(prompt_id)
            self.delete_queued([prompt_id])
            if not started:
                self.interrupt(prompt_id)  # it may have started between the check and the delete
        except ComfyUIError as exc:
            log.warning("comfyui_cancel_failed", prompt_id=prompt_id, error=str(exc))


def _explain(path: str, status: int, detail: str) -> str:
    """A sentence for a refused request; for /prompt, the node and input ComfyUI complained about."""
    try:
        data = json.loads(detail)
    except ValueError:
        return f"ComfyUI answered {status} to {path}: {detail[:300]}"
    if path == "/prompt" and isinstance(data, dict):
        problems = []
        for node_id, node in (data.get("node_errors") or {}).items():
            for error in node.get("errors", []):
                info = error.get("extra_info") or {}
                what = info.get("input_name") or ""
                problems.append(f"{node.get('class_type', node_id)}{' ' + what if what else ''}: "
                                f"{error.get('details') or error.get('message')}")
        error = data.get("error") or {}
        head = error.get("message", "the workflow was refused") if isinstance(error, dict) else str(error)
        return f"ComfyUI refused the workflow: {head}" + (f" ({'; '.join(problems)[:500]})" if problems else "") + "."
    return f"ComfyUI answered {status} to {path}: {str(data)[:300]}"
