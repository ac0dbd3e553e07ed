"""Generation jobs on the embedded ComfyUI, end to end: the app's supervisor starts the real server, the job
manager's worker drives it, images land in the volume with metadata. Needs a real ComfyUI checkout and
environment; fast-test mode's tiny SD1.5 checkpoint (engines/comfyui/fast_test_models.py) stands in for FLUX."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engines.comfyui.paths import base_dir, locate
from engines.pngmeta import read_chunks
from isengard_desktop.context import AppContext
from isengard_desktop.core import generation
from tests.engines.comfyui.flux_shaped import start_comfyui

LOCATED = locate() if os.environ.get("ISENGARD_COMFYUI_DIR") else "ISENGARD_COMFYUI_DIR is not set"
pytestmark = pytest.mark.skipif(
    isinstance(LOCATED, str),
    reason=f"needs a real ComfyUI: set ISENGARD_COMFYUI_DIR and ISENGARD_COMFYUI_PYTHON ({LOCATED})",
)
CACHE = Path(os.environ.get("ISENGARD_TEST_CACHE", Path.home() / ".cache" / "isengard-tests"))


@pytest.fixture(scope="module")
def comfy_ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppContext]:
    from engines.comfyui.fast_test_models import FILES, ensure

    # Module-wide, and undone after the module: no other test inherits this mode.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ISENGARD_MODE", "fast-test")
        checkout, python = LOCATED  # type: ignore[misc]
        checkpoint = ensure(CACHE, checkout, python)["checkpoint"]  # built once into the test cache
        root = tmp_path_factory.mktemp("comfy") / "vol"
        ctx = AppContext.open(root, "fast-test")
        (ctx.volume.models_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        os.link(checkpoint, ctx.volume.models_dir / FILES["checkpoint"])  # where fast-test mode builds it
        start_comfyui(ctx)
        yield ctx
        ctx.close()
        assert ctx.service("comfyui").status().state == "stopped"


def _submit(ctx: AppContext, **kwargs):
    request = generation.build_request(ctx.volume, ctx.mode, "comfyui", kwargs.pop("prompt", "a photo of ohwx_ada"),
                                       kwargs.pop("loras", []), **{"seed": 11, "steps": 4, **kwargs})
    return ctx.jobs.submit("generation", "comfyui", request.to_dict())


def test_images_come_back_with_comfyui_and_a1111_metadata(comfy_ctx: AppContext) -> None:
    ctx = comfy_ctx
    seen: list[str] = []
    ctx.jobs.subscribe(lambda _jid, event: seen.append(event["event"]))
    final = ctx.jobs.wait(_submit(ctx, batch_count=2, aspect="2:3").id, timeout=120)
    assert final.state == "succeeded", final.error
    assert len(final.result["images"]) == 2 and {"progress", "preview", "image"} <= set(seen)
    chunks = read_chunks(Path(final.result["images"][1]))
    assert '"class_type": "KSampler"' in chunks["prompt"]  # ComfyUI's own API workflow, for drag-and-drop
    assert "Seed: 12" in chunks["parameters"] and "Engine: comfyui" in chunks["parameters"]
    assert final.progress["step"] == final.progress["total"] == 8
    rows = generation.gallery(ctx.db, ctx.volume)
    assert {row.params["seed"] for row, _ in rows[:2]} == {11, 12}
    # Each image is kept once in the volume: ComfyUI's own copy went once the app's was written.
    assert not list((base_dir(ctx.volume.root) / "output").rglob("*.png"))


def test_a_missing_lora_is_refused_before_anything_runs(comfy_ctx: AppContext, tmp_path: Path) -> None:
    ctx = comfy_ctx
    option = generation.LoraOption(1, 1, "Ada", tmp_path / "not-in-the-volume.safetensors", "x", "diffusers", 4, "")
    final = ctx.jobs.wait(_submit(ctx, loras=[(option, 0.8)]).id, timeout=60)
    assert final.state == "failed" and "does not list the LoRA not-in-the-volume.safetensors" in final.error


def test_a_flux_lora_on_a_non_flux_base_is_refused_with_the_reason(comfy_ctx: AppContext) -> None:
    import torch
    from safetensors.torch import save_file

    ctx = comfy_ctx
    path = ctx.volume.loras_dir / "ada-flux.safetensors"
    save_file({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(2, 8)}, str(path),
              metadata={"isengard.base_model": "tiny-flux (fast-test)"})
    option = generation.LoraOption(1, 1, "Ada", path, "tiny-flux", "diffusers", 4, "")
    final = ctx.jobs.wait(_submit(ctx, loras=[(option, 1.0)]).id, timeout=60)
    assert final.state == "failed" and "Ada's LoRA was trained on the tiny FLUX" in final.error
    assert "built-in engine" in final.error  # fast-test: the LoRA runs there, not on ComfyUI's SD1.5-shaped model


def test_a_lora_dropped_into_the_volume_is_listed_by_comfyui_at_once(comfy_ctx: AppContext) -> None:
    from engines.comfyui.client import ComfyUIClient

    ctx = comfy_ctx
    (ctx.volume.loras_dir / "fresh.safetensors").write_bytes(b"")
    assert "fresh.safetensors" in ComfyUIClient(ctx.service("comfyui").status().url).models("loras")


def test_cancel_interrupts_comfyui_and_it_serves_the_next_job(comfy_ctx: AppContext) -> None:
    ctx = comfy_ctx
    job = _submit(ctx, steps=150, batch_count=3, seed=40)
    started = threading.Event()
    ctx.jobs.subscribe(lambda jid, e: started.set() if jid == job.id and e.get("event") == "progress" else None)
    assert started.wait(60)
    ctx.jobs.cancel(job.id)
    final = ctx.jobs.wait(job.id, timeout=60)
    assert final.state == "cancelled" and final.progress["step"] < 150
    after = ctx.jobs.wait(_submit(ctx, seed=99).id, timeout=120)
    assert after.state == "succeeded", after.error


def test_a_comfyui_job_runs_in_the_apps_own_process_with_the_same_record(comfy_ctx: AppContext) -> None:
    """ComfyUI's engine is an HTTP client (``needs_worker_process=False``): its job runs in a thread here, no worker
    process starts, and the job keeps the same record as a worker's: its events with one final done, its log (E7)."""
    import json

    import psutil

    ctx = comfy_ctx
    final = ctx.jobs.wait(_submit(ctx, seed=5).id, timeout=120)
    assert final.state == "succeeded", final.error
    assert final.result["worker_pid"] == os.getpid()
    workers = [p for p in psutil.Process().children(recursive=True) if "isengard_desktop.jobs.worker" in
               " ".join(p.cmdline())]
    assert workers == []
    folder = ctx.jobs.job_dir(final)
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    assert [e for e in events if e["event"] == "done"] == [{"event": "done", "state": "succeeded"}] == events[-1:]
    assert [e["event"] for e in events].count("image") == 1
    log = [json.loads(line) for line in (folder / "job.log").read_text().splitlines()]
    assert {"worker_started", "worker_finished"} <= {r["event"] for r in log}
    assert {r["job_id"] for r in log} == {final.id}


def test_toggles_say_what_is_missing(comfy_ctx: AppContext, monkeypatch: pytest.MonkeyPatch) -> None:
    from isengard_desktop.core.engines import load

    # Production's verdicts (fast-test builds tiny toggle models instead: tests/jobs/test_comfyui_fast_test.py).
    monkeypatch.setenv("ISENGARD_MODE", "production")
    readiness = load(comfy_ctx.volume, "comfyui").advanced_readiness()
    assert not readiness["upscale"].available and "upscale model" in readiness["upscale"].reason
    assert not readiness["controlnet"].available and "ControlNet model" in readiness["controlnet"].reason
    request = generation.build_request(comfy_ctx.volume, "production", "comfyui", "a photo", [], seed=1, steps=4,
                                       advanced={"upscale": {}})
    final = comfy_ctx.jobs.wait(comfy_ctx.jobs.submit("generation", "comfyui", request.to_dict()).id, timeout=60)
    assert final.state == "failed" and "upscale model" in final.error
