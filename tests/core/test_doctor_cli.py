"""`isengard doctor` as a person runs it: a real subprocess, the JSON shape, the table, and the exit code."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path


def doctor(volume: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ISENGARD_COMFYUI", "ISENGARD_AITOOLKIT"))}
    env["ISENGARD_MODE"] = "fast-test"
    return subprocess.run([sys.executable, "-m", "isengard_desktop", "--volume", str(volume), "doctor", "--offline",
                           *args], capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL, env=env)


def exposed_comfyui(volume: Path) -> socket.socket:
    """A server of this test process on every interface, written down as the volume's running ComfyUI."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("0.0.0.0", 0))
    server.listen()
    state = volume / "engines" / "comfyui" / "run" / "server.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"state": "ready", "pid": os.getpid(), "port": server.getsockname()[1]}))
    return server


def test_doctor_json_on_a_healthy_and_a_broken_volume(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    healthy = doctor(volume, "--json")
    assert healthy.returncode == 0, healthy.stderr
    data = json.loads(healthy.stdout)
    assert set(data) == {"checks", "summary"} and data["summary"]["fail"] == 0
    for check in data["checks"]:
        assert set(check) == {"name", "status", "detail", "fix", "action"}
        assert check["status"] in ("ok", "warn") and check["fix"]

    server = exposed_comfyui(volume)
    try:
        broken = doctor(volume, "--json")
    finally:
        server.close()
    assert broken.returncode == 1
    data = json.loads(broken.stdout)
    failed = [c for c in data["checks"] if c["status"] == "fail"]
    assert [c["name"] for c in failed] == ["ComfyUI network"] and "0.0.0.0" in failed[0]["detail"]
    assert data["summary"]["fail"] == 1 and data["summary"]["text"].startswith("1 problem to fix")


def test_doctor_table_says_the_fix(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    assert doctor(volume).returncode == 0
    server = exposed_comfyui(volume)
    try:
        table = doctor(volume)
    finally:
        server.close()
    assert table.returncode == 1
    lines = table.stdout.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("FAIL") and "ComfyUI network" in line)
    assert lines[row + 1].strip().startswith("Fix: Stop ComfyUI")
    assert lines[-1].startswith("1 problem to fix")


def test_a_volume_that_stops_opening_is_reported_with_its_fix(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    assert doctor(volume).returncode == 0
    (volume / "jobs").rmdir()
    (volume / "jobs").write_text("a file where the jobs folder was")
    refused = doctor(volume)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stdout.startswith("FAIL  Volume folder") and "Fix: Choose another volume folder" in refused.stdout


def test_doctor_explains_a_volume_that_cannot_be_opened(tmp_path: Path) -> None:
    volume = tmp_path / "not-a-folder"
    volume.write_text("a file where the volume folder should be")
    result = doctor(volume, "--json")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (check,) = json.loads(result.stdout)["checks"]
    assert check["name"] == "Volume folder" and check["status"] == "fail"
    assert str(volume) in check["detail"] and "--volume" in check["fix"]
    assert volume.read_text() == "a file where the volume folder should be"  # nothing touched
