"""The ComfyUI supervisor: its command line and model paths (no ComfyUI needed), then against a real ComfyUI:
ready, reachable on 127.0.0.1 only, restarted after a crash, adopted by a second app process, stopped for good."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from engines.comfyui import paths
from engines.comfyui.supervisor import ComfyUISupervisor, command, extra_model_paths, read_server

LOCATED = paths.locate() if os.environ.get("ISENGARD_COMFYUI_DIR") else "ISENGARD_COMFYUI_DIR is not set"
needs_comfyui = pytest.mark.skipif(
    isinstance(LOCATED, str),
    reason=f"needs a real ComfyUI: set ISENGARD_COMFYUI_DIR and ISENGARD_COMFYUI_PYTHON ({LOCATED})",
)


def test_the_command_listens_on_loopback_and_keeps_everything_in_the_volume(tmp_path: Path) -> None:
    args = command(Path("/c"), Path("/py"), tmp_path, 8555, ["ComfyUI-Impact-Pack"], gpu=False)
    joined = " ".join(args)
    assert args[args.index("--listen") + 1] == "127.0.0.1" and args[args.index("--port") + 1] == "8555"
    assert f"--base-directory {tmp_path}/engines/comfyui/base" in joined
    assert f"--database-url sqlite:///{tmp_path}/engines/comfyui/base/user/comfyui.db" in joined
    assert "--disable-all-custom-nodes --whitelist-custom-nodes ComfyUI-Impact-Pack" in joined
    assert "--cpu" in args and "--cpu" not in command(Path("/c"), Path("/py"), tmp_path, 1, [], gpu=True)


def test_model_paths_point_at_the_volume_and_the_users_comfyui(tmp_path: Path) -> None:
    text = extra_model_paths(tmp_path, [Path("/home/me/ComfyUI/models: old")])
    lines = text.splitlines()
    assert "isengard:" in lines and "    is_default: true" in lines
    assert f'    base_path: "{tmp_path / "models"}"' in lines
    assert '    loras: "loras"' in lines and '    diffusion_models: "diffusion_models\\nunet"' in lines
    assert '    base_path: "/home/me/ComfyUI/models: old"' in lines  # quoted: a colon in a path is safe


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[ComfyUISupervisor]:
    service = ComfyUISupervisor(tmp_path / "vol")
    yield service
    service.stop()


def wait_for(service: ComfyUISupervisor, state: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while service.status().state != state and time.monotonic() < deadline:
        time.sleep(0.2)
    assert service.status().state == state, service.status()


def server_pid(volume: Path) -> int:
    return int(json.loads(paths.state_file(volume).read_text())["pid"])


def other_addresses() -> list[str]:
    found = []
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family in (socket.AF_INET, socket.AF_INET6) and not address.address.startswith(("127.", "::1")):
                found.append(address.address.split("%")[0])
    return found


@needs_comfyui
def test_ready_on_loopback_only_then_restarted_after_a_crash(supervisor: ComfyUISupervisor) -> None:
    states: list[str] = []
    supervisor.subscribe(lambda status: states.append(status.state))
    supervisor.start()
    wait_for(supervisor, "ready")
    volume, port = supervisor.volume_root, supervisor.port
    assert read_server(volume).url == f"http://127.0.0.1:{port}"
    listening = [c for c in psutil.net_connections("inet") if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
    assert listening and {c.laddr.ip for c in listening} == {"127.0.0.1"}
    for address in other_addresses():
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.settimeout(2)
            assert probe.connect_ex((address, port)) != 0, f"ComfyUI answered on {address}"
    assert (volume / "logs" / "comfyui.log").read_text().count('"event": "comfyui_output"') > 5

    first = server_pid(volume)
    os.kill(first, signal.SIGKILL)
    wait_for(supervisor, "starting", timeout=20)
    wait_for(supervisor, "ready")
    assert server_pid(volume) != first and states[:2] == ["starting", "ready"]


@needs_comfyui
def test_a_second_app_process_adopts_the_server_and_only_its_starter_stops_it(supervisor: ComfyUISupervisor) -> None:
    supervisor.start()
    wait_for(supervisor, "ready")
    pid = server_pid(supervisor.volume_root)
    second = ComfyUISupervisor(supervisor.volume_root)
    second.start()
    wait_for(second, "ready", timeout=20)
    assert second.status().url == supervisor.status().url and "another Isengard" in second.status().detail
    second.stop()
    assert psutil.pid_exists(pid) and read_server(supervisor.volume_root).state == "ready"
    supervisor.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert supervisor.status().state == "stopped" and read_server(supervisor.volume_root).state == "stopped"


def test_a_missing_comfyui_fails_with_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ISENGARD_COMFYUI_DIR", raising=False)
    service = ComfyUISupervisor(tmp_path)  # its volume has no ComfyUI installed
    service.start()
    wait_for(service, "failed", timeout=10)
    assert "isengard engines install comfyui" in service.status().detail
