"""Issue 11 item 8: adopting a server, the supervisor signals the pid in run/server.json only if that pid is
still the ComfyUI the file describes (its start time and command line), never a program that reused the pid.

No ComfyUI is needed: the stand-in for "another program" is a real process (Python's http.server, in its
own session like ComfyUI, answering GET /system_stats), and the launch that follows fails at once because
no ComfyUI is installed.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from engines.comfyui import paths
from engines.comfyui.supervisor import ComfyUISupervisor, is_that_comfyui


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_state(volume: Path, **data) -> None:
    file = paths.state_file(volume)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(data))


@pytest.fixture
def other_program(tmp_path: Path):
    """Some other program on a port, answering /system_stats, in a session of its own."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "system_stats").write_text('{"system": {"os": "not comfyui"}}')
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(site)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield proc, port
    proc.kill()
    proc.wait()


def test_a_reused_pid_of_an_orphaned_server_is_never_signalled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               other_program) -> None:
    proc, port = other_program
    volume = tmp_path / "vol"
    monkeypatch.delenv("ISENGARD_COMFYUI_DIR", raising=False)  # the replacement launch fails at once
    write_state(volume, state="ready", pid=proc.pid, port=port, url=f"http://127.0.0.1:{port}",
                owner_pid=dead_pid(), pid_created=psutil.Process(proc.pid).create_time() - 3600)
    service = ComfyUISupervisor(volume)
    service.start()
    try:
        deadline = time.monotonic() + 20
        while service.status().state != "failed" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert service.status().state == "failed", service.status()
    finally:
        service.stop()
    assert proc.poll() is None, "the other program was signalled as if it were the orphaned ComfyUI"


def test_the_identity_check_wants_comfyuis_command_line_and_start_time(tmp_path: Path) -> None:
    script = tmp_path / "ComfyUI" / "main.py"
    script.parent.mkdir()
    script.write_text("import time\ntime.sleep(60)\n")
    comfy = subprocess.Popen([sys.executable, str(script), "--listen", "127.0.0.1", "--port", "8555"])
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "--port", "8555"])
    try:
        created = psutil.Process(comfy.pid).create_time()
        assert is_that_comfyui({"pid": comfy.pid, "port": 8555, "pid_created": created})
        assert is_that_comfyui({"pid": comfy.pid, "port": 8555})  # a state file written before start times
        assert not is_that_comfyui({"pid": comfy.pid, "port": 8555, "pid_created": created - 60}), "a reused pid"
        assert not is_that_comfyui({"pid": comfy.pid, "port": 9999, "pid_created": created}), "another ComfyUI"
        assert not is_that_comfyui({"pid": sleeper.pid, "port": 8555}), "not ComfyUI's main.py"
        assert not is_that_comfyui({"pid": dead_pid(), "port": 8555})
        assert not is_that_comfyui({"pid": None})
    finally:
        for proc in (comfy, sleeper):
            proc.kill()
            proc.wait()
