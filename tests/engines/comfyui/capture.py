"""Record real ComfyUI behaviour as test fixtures: websocket messages of a finished, an interrupted and a
failed prompt, and GET /object_info for the node classes our workflows use.

Run by hand against a real ComfyUI (never in the suite):
``ISENGARD_COMFYUI_DIR=... ISENGARD_COMFYUI_PYTHON=... python tests/engines/comfyui/capture.py``
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
USED_NODES = ("CheckpointLoaderSimple", "UNETLoader", "DualCLIPLoader", "VAELoader", "CLIPTextEncode", "FluxGuidance",
              "ConditioningZeroOut", "EmptySD3LatentImage", "EmptyLatentImage", "KSampler", "VAEDecode", "SaveImage",
              "LoraLoader", "LoraLoaderModelOnly", "UpscaleModelLoader", "ImageUpscaleWithModel", "ControlNetLoader",
              "ControlNetApplyAdvanced", "LoadImage")


def record(client, workflow: dict, interrupt_after: int | None = None) -> list:
    connection = client.connect()
    frames: list = []
    prompt_id = client.submit(workflow)
    deadline = time.monotonic() + 120
    from engines.comfyui.client import PromptTracker

    tracker = PromptTracker(prompt_id)
    progress = 0
    import websocket

    while tracker.finished is None and time.monotonic() < deadline:
        try:
            frame = connection.recv()
        except websocket.WebSocketTimeoutException:
            continue
        if isinstance(frame, bytes):
            frames.append({"binary": frame[:8].hex() + "...", "length": len(frame)})
        else:
            frames.append(json.loads(frame))
        for event in tracker.feed(frame):
            if event["event"] == "progress":
                progress += 1
                if interrupt_after is not None and progress == interrupt_after:
                    client.interrupt(prompt_id)
    connection.close()
    return frames


def main() -> None:
    from engines.comfyui.client import ComfyUIClient
    from engines.comfyui.fast_test_models import ensure
    from engines.comfyui.paths import locate
    from engines.comfyui.supervisor import ComfyUISupervisor
    from engines.comfyui.workflow import ModelChoice, build_workflow
    from engines.interface import GenerationRequest

    checkout, python = locate()  # type: ignore[misc]
    volume = Path(tempfile.mkdtemp(prefix="isengard-capture-"))
    checkpoint = ensure(Path.home() / ".cache" / "isengard-tests", checkout, python)["checkpoint"]
    (volume / "models" / "checkpoints").mkdir(parents=True)
    (volume / "models" / "checkpoints" / "tiny.safetensors").symlink_to(checkpoint)
    (volume / "models" / "checkpoints" / "broken.safetensors").write_bytes(b"not a checkpoint at all")
    supervisor = ComfyUISupervisor(volume)
    supervisor.start()
    while supervisor.status().state == "starting":
        time.sleep(0.5)
    client = ComfyUIClient(supervisor.status().url)
    request = GenerationRequest(prompt="a photo", base_model="auto", base_model_name="tiny", output_dir="", width=64,
                                height=64, steps=4, seed=1)
    fixtures = {
        "success": record(client, build_workflow(request, ModelChoice(checkpoint="tiny.safetensors"))),
        "interrupted": record(client, build_workflow(GenerationRequest.from_dict({**request.to_dict(), "steps": 200}),
                                                     ModelChoice(checkpoint="tiny.safetensors")), interrupt_after=2),
        "error": record(client, build_workflow(request, ModelChoice(checkpoint="broken.safetensors"))),
    }
    info = client.object_info()
    supervisor.stop()
    FIXTURES.mkdir(exist_ok=True)
    (FIXTURES / "ws_messages.json").write_text(json.dumps(fixtures, indent=1) + "\n")
    (FIXTURES / "object_info_core.json").write_text(json.dumps({k: info[k] for k in USED_NODES if k in info},
                                                          indent=1, sort_keys=True) + "\n")
    sys.stdout.write(f"captured {({k: len(v) for k, v in fixtures.items()})}\n")


if __name__ == "__main__":
    main()
