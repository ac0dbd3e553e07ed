"""Benchmark: the app's overhead on a ComfyUI generation (issue target: wall-time ratio <= 1.05).

The same workflow (tiny SD1.5 checkpoint, 64 px, 60 steps) is run against one warm ComfyUI, each time
with a new seed (ComfyUI would otherwise answer from its cache), in three ways:
- app:    `isengard generate --engine comfyui ...` as a whole command (a fresh process, the volume, the
          job, run in a thread of that process, the checks, the websocket, saving the PNG with metadata);
- direct: ComfyUI driven directly by a script as a person writes it (bench/_direct_comfyui.py, a fresh process:
          POST /prompt, wait for the prompt on the websocket, GET /view of the image, write it) - the reference;
- in-process: the same three requests from this already-running process, with no Python start or imports at
          all: the floor, reported in the note.
Prints the median of each, their ratio and the absolute overhead in seconds.

    ISENGARD_COMFYUI_DIR=... ISENGARD_COMFYUI_PYTHON=... .venv/bin/python bench/comfyui_overhead.py [runs] [steps]

The app's cost is fixed per command (~0.15 s here: Python's start, the imports, the job's records), so the
ratio depends on the workload's length: 60 steps take ~4 s here; FLUX.1-dev takes 15-30 s for one 1024 px
image on a workstation GPU. ComfyUI collects its garbage after a prompt at most every 10 s (~0.3 s here, in
whichever request comes next), so single runs spread; the medians of interleaved runs share that alike.
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


def measure(runs: int = 5, steps: int = 60) -> list[dict]:
    """Rows for bench/run_all.py: the whole `isengard generate` command against ComfyUI driven directly."""
    from engines.comfyui.client import ComfyUIClient
    from engines.comfyui.fast_test_models import CHECKPOINT_NAME, FILES, ensure
    from engines.comfyui.paths import locate
    from engines.comfyui.supervisor import ComfyUISupervisor
    from engines.comfyui.workflow import ModelChoice, build_workflow
    from isengard_desktop.core.generation import build_request
    from isengard_desktop.storage.volume import Volume

    located = locate()
    if isinstance(located, str):
        return [{"name": f"E7 generate --engine comfyui, {steps} steps", "skipped": located}]
    checkout, python = located
    volume = Path(tempfile.mkdtemp(prefix="isengard-bench-comfy-"))
    checkpoint = ensure(Path.home() / ".cache" / "isengard-tests", checkout, python)["checkpoint"]
    # Where the app's fast-test mode looks for its checkpoint, so neither side builds one during the runs.
    (volume / "models" / FILES["checkpoint"]).parent.mkdir(parents=True)
    os.link(checkpoint, volume / "models" / FILES["checkpoint"])
    env = {**os.environ, "ISENGARD_MODE": "fast-test"}
    os.environ["ISENGARD_MODE"] = "fast-test"
    supervisor = ComfyUISupervisor(volume)  # the warm server the app's command adopts
    supervisor.start()
    while supervisor.status().state == "starting":
        time.sleep(0.2)
    url = supervisor.status().url
    client = ComfyUIClient(url)
    choice = ModelChoice(checkpoint=CHECKPOINT_NAME)
    workflow_file, direct_png = volume / "direct-workflow.json", volume / "direct.png"

    def app(seed: int) -> None:
        out = subprocess.run([sys.executable, "-m", "isengard_desktop", "--volume", str(volume), "generate",
                              "--prompt", "a photo", "--engine", "comfyui", "--seed", str(seed),
                              "--steps", str(steps), "--json"],
                             env=env, capture_output=True, text=True, check=False)
        result = json.loads(out.stdout or "{}")
        if out.returncode or result.get("state") != "succeeded":
            raise SystemExit(f"isengard generate failed: {out.stdout[-800:]} {out.stderr[-800:]}")

    def workflow(seed: int) -> dict:
        request = build_request(Volume.open(volume), "fast-test", "comfyui", "a photo", seed=seed, steps=steps)
        return build_workflow(request, choice)

    def direct(seed: int) -> None:
        subprocess.run([sys.executable, str(ROOT / "bench" / "_direct_comfyui.py"), url, str(workflow_file),
                        str(direct_png)], check=True, capture_output=True)

    def inprocess(seed: int) -> None:
        connection = client.connect()
        images: list = []
        prompt_id = client.submit(workflow(seed))
        client.follow(connection, prompt_id, lambda e, found=images: found.extend(e.get("images", [])),
                      lambda: False)
        for image in images:
            client.view(image["filename"], image["subfolder"], image["type"])
        connection.close(timeout=0)  # as the app does: no wait for ComfyUI's goodbye

    paths = {"app": app, "direct script": direct, "in-process": inprocess}
    times: dict[str, list[float]] = {name: [] for name in paths}
    try:
        for run in range(runs + 1):  # the first round warms every path up and is not counted
            # The order turns each round: ComfyUI's garbage collection (~0.3 s, at most every 10 s) falls on
            # whichever request comes next, so a fixed order would hand it to the same path every round.
            order = list(paths)[run % 3:] + list(paths)[:run % 3]
            took = {}
            for offset, name in enumerate(order):
                seed = 1000 + 3 * run + offset  # each its own: ComfyUI would answer a repeated seed from its cache
                if name == "direct script":
                    workflow_file.write_text(json.dumps(workflow(seed)), encoding="utf-8")
                started = time.perf_counter()
                paths[name](seed)
                took[name] = time.perf_counter() - started
                if run:
                    times[name].append(took[name])
            print(f"run {run}: " + ", ".join(f"{name} {took[name]:.2f} s" for name in paths)
                  + ("" if run else " (warm-up)"))
    finally:
        supervisor.stop()
    app_times = times["app"]
    app_m, direct_m, inprocess_m = (statistics.median(times[name]) for name in paths)
    return [{"name": f"E7 generate --engine comfyui, {steps} steps", "figure": app_m, "reference": direct_m,
             "reference_name": "ComfyUI driven directly by a script", "max_ratio": 1.05, "max_figure": None,
             "unit": "s", "spread": (min(app_times), max(app_times)),
             "note": f"overhead {app_m - direct_m:.2f} s per command; against the same requests from the benchmark's "
                     f"own running process (no Python start, nothing to import) {inprocess_m:.2f} s, ratio "
                     f"{app_m / inprocess_m:.3f}, overhead {app_m - inprocess_m:.2f} s"}]


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    for row in measure(runs, steps):
        if "skipped" in row:
            raise SystemExit(row["skipped"])
        print(f"{steps} steps: median app {row['figure']:.2f} s, direct {row['reference']:.2f} s, ratio "
              f"{row['figure'] / row['reference']:.3f} (target <= 1.05), {row['note']}")


if __name__ == "__main__":
    main()
