"""The AI-Toolkit engine: its config from each preset (golden files of our own output), its availability,
and — when a checkout and its environment are given — a real run through the job manager."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engines.aitoolkit.config import build_config
from engines.aitoolkit.engine import AIToolkitEngine, failure_message
from engines.interface import DatasetItem, TrainingSpec
from isengard_desktop.core.presets import PRESET_NAMES, load_preset

GOLDEN = Path(__file__).parent / "fixtures" / "aitoolkit"


def spec_for(preset_name: str) -> TrainingSpec:
    values = load_preset(preset_name).values(fast_test=False)
    return TrainingSpec(
        base_model="/volume/models/FLUX.1-dev", base_model_name="FLUX.1-dev", output_dir="/volume/jobs/j1",
        dataset=[DatasetItem("/volume/images/ab/ab.jpg", "a photo of ohwx_ada")], trigger_word="ohwx_ada",
        lora_name="ada", preset=preset_name, steps=values["steps"], learning_rate=values["learning_rate"],
        rank=values["rank"], alpha=values["alpha"], resolutions=values["resolutions"], batch_size=values["batch_size"],
        save_every=values["save_every"], sample_every=values["sample_every"], sample_steps=values["sample_steps"],
        sample_prompts=["a photo of ohwx_ada"], low_vram=values["low_vram"],
    )


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_config_matches_golden(preset: str) -> None:
    config = build_config(spec_for(preset), Path("/volume/jobs/j1/data"), Path("/volume/jobs/j1/aitoolkit"), "cuda:0")
    golden = GOLDEN / f"config_{preset}.json"
    if os.environ.get("ISENGARD_UPDATE_GOLDEN") == "1":  # as the ComfyUI goldens: "0" or unset only compares
        golden.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    assert config == json.loads(golden.read_text())
    process = config["config"]["process"][0]
    assert process["network"]["linear_alpha"] == process["network"]["linear"]  # no alpha keys in its LoRAs
    assert process["model"]["quantize"] == (preset != "high")


def test_unavailable_without_a_checkout(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ISENGARD_AITOOLKIT_DIR", raising=False)
    from engines.interface import EngineContext

    # An engine folder in the volume with nothing installed in it (what `isengard engines install` fills).
    context = EngineContext("aitoolkit", tmp_path, tmp_path / "engines" / "aitoolkit", tmp_path / "models")
    availability = AIToolkitEngine(context).availability()
    assert not availability.available and "isengard engines install aitoolkit" in availability.reason


def test_failures_become_advice() -> None:
    assert "low-VRAM" in failure_message(["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate"], 1)
    assert "token" in failure_message(["huggingface_hub.errors.GatedRepoError: 403"], 1)
    assert "disk is full" in failure_message(["OSError: [Errno 28] No space left on device"], 1)
    assert "exit code 2" in failure_message(["something else broke"], 2)


needs_checkout = pytest.mark.skipif(
    not os.environ.get("ISENGARD_AITOOLKIT_DIR") or AIToolkitEngine().availability().available is False,
    reason="needs an AI-Toolkit checkout (ISENGARD_AITOOLKIT_DIR) and its python (ISENGARD_AITOOLKIT_PYTHON)",
)


@needs_checkout
@pytest.mark.slow
def test_real_aitoolkit_run_cancel_resume_and_load(tmp_path: Path, tiny_flux: Path) -> None:
    import threading

    from PIL import Image

    from isengard_desktop.context import AppContext
    from isengard_desktop.core.training import build_spec

    ctx = AppContext.open(tmp_path / "vol", "fast-test")
    try:
        character = ctx.characters.create("Ada", "ohwx_ada")
        photos = tmp_path / "photos"
        photos.mkdir()
        for i in range(4):
            Image.new("RGB", (96, 80), (40 * i, 120, 160)).save(photos / f"{i}.png")
        ctx.importer.run(character.id, [photos])
        spec, check = build_spec(ctx.volume, ctx.dataset, character, "fast-test", "quick",
                                 {"steps": 8, "save_every": 4, "sample_every": 4, "rank": 4, "alpha": 4})
        spec.base_model = str(tiny_flux)
        job = ctx.jobs.submit("training", "aitoolkit", spec.to_dict(), character.id)
        fired = threading.Event()

        def cancel_after_checkpoint(job_id: str, event: dict) -> None:
            if event.get("event") == "checkpoint" and not fired.is_set():
                fired.set()
                ctx.jobs.cancel(job_id)

        ctx.jobs.subscribe(cancel_after_checkpoint)
        assert ctx.jobs.wait(job.id, timeout=600).state == "cancelled"
        final = ctx.jobs.wait(ctx.jobs.resume(job.id).id, timeout=600)
        assert final.state == "succeeded", final.error
        events = ctx.jobs.events(job.id)
        assert any(e["event"] == "sample" for e in events) and any(e["event"] == "progress" for e in events)
        # The resumed run continued from the checkpoint's step, and the loss curve goes on from there.
        cut = next(i for i, e in enumerate(events) if e["event"] == "done" and e.get("state") == "cancelled")
        checkpoint = next(e["step"] for e in events[:cut] if e["event"] == "checkpoint")
        before = [e for e in events[:cut] if e["event"] == "progress" and e.get("loss") is not None]
        after = [e for e in events[cut:] if e["event"] == "progress" and e.get("loss") is not None]
        # AI-Toolkit prints a step's bar after saving it, so the cancelled run may end one step before its checkpoint.
        assert checkpoint == 4 and before and before[-1]["step"] >= checkpoint - 1, before
        assert after and after[0]["step"] == checkpoint + 1, (checkpoint, after[0])  # not from step 1 again
        curve = [(e["step"], e["loss"]) for e in before if e["step"] <= checkpoint] + [
            (e["step"], e["loss"]) for e in after]
        steps = [step for step, _ in curve]
        assert steps == sorted(steps) and steps[-1] == 8, steps  # one curve, on from where it stopped
        assert all(0 < loss < 100 for _, loss in curve)
        job_log = (ctx.jobs.job_dir(final) / "job.log").read_text(encoding="utf-8")
        assert "RESUMING FROM" in job_log and "_000000004.safetensors" in job_log
        assert "Loading optimizer state" in job_log
        stopped = next(e["message"] for e in events[:cut] if e["event"] == "log" and "Stopped at" in e["message"])
        assert "-" not in stopped.split(", so ")[1], stopped  # never "-1 step(s) will be trained again"
        from safetensors import safe_open

        with safe_open(final.result["lora"], "pt") as handle:
            meta = handle.metadata()
            keys = list(handle.keys())
        assert meta["isengard.engine"] == "aitoolkit" and meta["isengard.trigger_word"] == "ohwx_ada"
        assert all(k.startswith("transformer.") for k in keys)
        from diffusers import FluxPipeline

        pipe = FluxPipeline.from_pretrained(str(tiny_flux))
        pipe.load_lora_weights(final.result["lora"])  # diffusers reads AI-Toolkit's keys
    finally:
        ctx.jobs.shutdown(wait=10)
        ctx.close()
