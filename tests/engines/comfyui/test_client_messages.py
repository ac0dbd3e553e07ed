"""The client's reading of ComfyUI's websocket, fed with messages captured from a real server (capture.py):
a finished prompt, one interrupted after two steps, and one whose checkpoint file is broken."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engines.comfyui.client import PromptTracker, _explain

CAPTURED = json.loads((Path(__file__).parent / "fixtures" / "ws_messages.json").read_text())


def frames(name: str) -> list:
    """The recorded frames; binary previews were stored as their 8-byte header and length."""
    out = []
    for message in CAPTURED[name]:
        if "binary" in message:
            header = bytes.fromhex(message["binary"].rstrip("."))
            out.append(header + b"\xff" * (message["length"] - len(header)))
        else:
            out.append(json.dumps(message))
    return out


def prompt_id(name: str) -> str:
    return next(json.loads(f)["data"]["prompt_id"] for f in frames(name)
                if isinstance(f, str) and json.loads(f)["type"] == "execution_start")


def events(name: str, tracked: str | None = None) -> list[dict]:
    tracker = PromptTracker(tracked or prompt_id(name))
    return [event for frame in frames(name) for event in tracker.feed(frame)]


def test_a_finished_prompt_gives_progress_previews_the_image_and_success() -> None:
    seen = events("success")
    progress = [(e["step"], e["total"]) for e in seen if e["event"] == "progress"]
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert sum(e["event"] == "preview" for e in seen) == 4
    assert all(e["data"] for e in seen if e["event"] == "preview")
    outputs = [e for e in seen if e["event"] == "output"]
    assert outputs[0]["images"] == [{"filename": "isengard_00001_.png", "subfolder": "", "type": "output"}]
    assert seen[0] == {"event": "started"} and seen[-1] == {"event": "finished", "state": "succeeded", "message": ""}


def test_an_interrupted_prompt_ends_cancelled_without_images() -> None:
    seen = events("interrupted")
    assert seen[-1]["state"] == "cancelled"
    assert not [e for e in seen if e["event"] == "output"]
    assert [e["step"] for e in seen if e["event"] == "progress"] == [1, 2]


def test_a_failed_prompt_names_the_node_and_the_reason() -> None:
    final = events("error")[-1]
    assert final["state"] == "failed"
    assert final["message"].startswith("ComfyUI failed in CheckpointLoaderSimple: ")
    assert "header too large" in final["message"]


@pytest.mark.parametrize("name", ["success", "interrupted", "error"])
def test_messages_about_another_prompt_are_ignored(name: str) -> None:
    assert events(name, tracked="someone-elses-prompt") == []


def test_a_refused_workflow_is_explained_by_node_and_input() -> None:
    answer = json.dumps({
        "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"},
        "node_errors": {"11": {"class_type": "LoraLoader", "errors": [{
            "message": "Value not in list", "details": "lora_name: 'ada.safetensors' not in []",
            "extra_info": {"input_name": "lora_name"}}]}},
    })
    text = _explain("/prompt", 400, answer)
    assert text == ("ComfyUI refused the workflow: Prompt outputs failed validation (LoraLoader lora_name: "
                    "lora_name: 'ada.safetensors' not in []).")
