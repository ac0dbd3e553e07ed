"""Benchmark: time from the app's start to its embedded ComfyUI being ready, versus ComfyUI alone.

- alone: ComfyUI's main.py started by hand with the same arguments, until GET /system_stats answers;
- app:   the Isengard window (offscreen) started as a process, until the volume's ComfyUI state file says
         ready and the server answers. The difference is what the app adds before ComfyUI starts.

    ISENGARD_COMFYUI_DIR=... ISENGARD_COMFYUI_PYTHON=... .venv/bin/python bench/comfyui_startup.py [runs]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def alone(checkout: Path, python: Path) -> float:
    from engines.comfyui.supervisor import _healthy, command, extra_model_paths, free_port

    volume = Path(tempfile.mkdtemp(prefix="isengard-bench-alone-"))
    base = volume / "engines" / "comfyui" / "base"
    (base / "user").mkdir(parents=True)
    (base / "extra_model_paths.yaml").write_text(extra_model_paths(volume, []))
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(command(checkout, python, volume, port, [], gpu=False), cwd=checkout,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not _healthy(f"http://127.0.0.1:{port}", timeout=1.0):
            time.sleep(0.1)
        return time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait()


def with_app() -> float:
    from engines.comfyui.supervisor import _healthy

    volume = Path(tempfile.mkdtemp(prefix="isengard-bench-app-"))
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "ISENGARD_MODE": "fast-test"}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "isengard_desktop", "--volume", str(volume)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = volume / "engines" / "comfyui" / "run" / "server.json"
    try:
        while True:
            try:
                data = json.loads(state.read_text())
            except (OSError, ValueError):
                data = {}
            if data.get("state") == "ready" and _healthy(data["url"], timeout=1.0):
                return time.perf_counter() - started
            if proc.poll() is not None:
                raise SystemExit("the app exited before ComfyUI was ready")
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    from engines.comfyui.paths import locate

    located = locate()
    if isinstance(located, str):
        raise SystemExit(located)
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    alone_times, app_times = [], []
    for run in range(runs):
        alone_times.append(alone(*located))
        app_times.append(with_app())
        print(f"run {run}: ComfyUI alone {alone_times[-1]:.2f} s, app start to ComfyUI ready {app_times[-1]:.2f} s")
    a, b = statistics.median(alone_times), statistics.median(app_times)
    print(f"median alone {a:.2f} s, with the app {b:.2f} s, ratio {b / a:.3f}, the app adds {b - a:.2f} s")


if __name__ == "__main__":
    main()
