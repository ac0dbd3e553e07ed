"""Generation jobs through the job manager with the real built-in generator on the tiny FLUX model."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engines.pngmeta import read_chunks
from isengard_desktop.context import AppContext
from isengard_desktop.core import generation
from isengard_desktop.core.training import build_spec


def _pixels(path: str | Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def _generate(ctx: AppContext, loras=(), **kwargs):
    request = generation.build_request(ctx.volume, ctx.mode, "diffusers", kwargs.pop("prompt", "a photo of ohwx_ada"),
                                       list(loras), **{"seed": 7, "steps": 4, **kwargs})
    job = ctx.jobs.submit("generation", "diffusers", request.to_dict())
    final = ctx.jobs.wait(job.id, timeout=120)
    assert final.state == "succeeded", final.error
    return final


@pytest.fixture
def lora_ctx(trained_ctx: AppContext) -> AppContext:
    """A volume whose character has a LoRA trained hard enough to change the tiny model's pictures."""
    character = trained_ctx.characters.resolve("Ada Lovelace")
    spec, check = build_spec(trained_ctx.volume, trained_ctx.dataset, character, trained_ctx.mode, "quick",
                             {"steps": 30, "learning_rate": 1e-2, "save_every": 30, "sample_every": 100})
    assert check.ok, check.problems
    job = trained_ctx.jobs.submit("training", "diffusers", spec.to_dict(), character.id)
    assert trained_ctx.jobs.wait(job.id, timeout=180).state == "succeeded"
    return trained_ctx


def test_images_land_in_outputs_with_metadata_and_a_gallery_row(trained_ctx: AppContext) -> None:
    ctx = trained_ctx
    final = _generate(ctx, batch_count=2, aspect="16:9")
    images = final.result["images"]
    assert len(images) == 2
    for index, path in enumerate(images):
        assert Path(path).parent.parent == ctx.volume.outputs_dir
        with Image.open(path) as image:
            assert image.width > image.height  # 16:9, scaled down for the tiny model
        text = read_chunks(Path(path))["parameters"]
        prompt, settings = text.split("\n")
        assert prompt == "a photo of ohwx_ada"
        pairs = dict(item.split(": ", 1) for item in settings.split(", "))
        assert pairs["Seed"] == str(7 + index) and pairs["Steps"] == "4" and pairs["Sampler"] == "Euler"
    rows = generation.gallery(ctx.db, ctx.volume)
    # Newest first: the second image of the batch (seed 8) heads the gallery.
    assert [str(path) for _row, path in rows] == [str(images[1]), str(images[0])]
    assert [row.params["seed"] for row, _ in rows] == [8, 7]
    assert all(row.params["prompt"] == "a photo of ohwx_ada" for row, _ in rows)


def test_same_seed_same_image_and_the_pipeline_stays_loaded(trained_ctx: AppContext) -> None:
    ctx = trained_ctx
    first = _generate(ctx)
    second = _generate(ctx)
    other = _generate(ctx, seed=8)
    assert np.array_equal(_pixels(first.result["images"][0]), _pixels(second.result["images"][0]))
    assert not np.array_equal(_pixels(first.result["images"][0]), _pixels(other.result["images"][0]))
    # One serving worker made all three.
    assert first.result["worker_pid"] == second.result["worker_pid"] == other.result["worker_pid"]
    logs = [json.loads(line) for line in (ctx.jobs.job_dir(second) / "job.log").read_text().splitlines()]
    events = [record.get("event") for record in logs]
    assert "pipeline_reused" in events and "pipeline_loaded" not in events


def test_lora_changes_the_image_and_strength_zero_equals_none(lora_ctx: AppContext) -> None:
    ctx = lora_ctx
    options = generation.lora_options(ctx.volume, ctx.db)
    lora = generation.lora_for_character(options, "ada lovelace")
    plain = _pixels(_generate(ctx).result["images"][0])
    full = _generate(ctx, loras=[(lora, 1.0)])
    zero = _pixels(_generate(ctx, loras=[(lora, 0.0)]).result["images"][0])
    again = _pixels(_generate(ctx).result["images"][0])  # the LoRA is switched off again afterwards
    assert np.abs(_pixels(full.result["images"][0]) - plain).mean() > 1.0
    assert np.array_equal(zero, plain) and np.array_equal(again, plain)
    text = read_chunks(Path(full.result["images"][0]))["parameters"]
    assert f"<lora:{lora.path.stem}:1>" in text and "Lora weights" in text


def test_cancel_stops_between_steps_and_the_worker_serves_the_next_job(trained_ctx: AppContext) -> None:
    ctx = trained_ctx
    request = generation.build_request(ctx.volume, ctx.mode, "diffusers", "a photo", seed=1, steps=150,
                                       batch_count=4)
    job = ctx.jobs.submit("generation", "diffusers", request.to_dict())
    started = threading.Event()
    events: list[dict] = []

    def listen(jid: str, event: dict) -> None:
        if jid == job.id:
            events.append(event)
            if event.get("event") == "progress" and event["step"] >= 3:
                started.set()

    ctx.jobs.subscribe(listen)
    assert started.wait(60)
    ctx.jobs.cancel(job.id)
    final = ctx.jobs.wait(job.id, timeout=60)
    assert final.state == "cancelled"
    # The stop came inside the first image, between two of its 150 steps: not at the end of an image or batch.
    steps = [e for e in events if e.get("event") == "progress"]
    assert {e["index"] for e in steps} == {0}
    assert 3 <= steps[-1]["step"] < 150, steps[-1]
    assert not [e for e in events if e.get("event") == "image"] and not final.result.get("images")
    assert not list(ctx.jobs.job_dir(final).rglob("*.png")) and not list(ctx.volume.outputs_dir.rglob("*.png"))
    after = _generate(ctx)
    assert after.result["worker_pid"] == final.result["worker_pid"]


def test_a_killed_generation_worker_fails_its_job_and_a_new_one_takes_over(trained_ctx: AppContext) -> None:
    import os
    import signal

    ctx = trained_ctx
    request = generation.build_request(ctx.volume, ctx.mode, "diffusers", "a photo", seed=1, steps=150, batch_count=4)
    job = ctx.jobs.submit("generation", "diffusers", request.to_dict())
    started = threading.Event()
    ctx.jobs.subscribe(lambda jid, e: started.set() if jid == job.id and e.get("event") == "progress" else None)
    assert started.wait(60)
    os.kill(ctx.jobs.get(job.id).pid, signal.SIGKILL)
    final = ctx.jobs.wait(job.id, timeout=60)
    assert final.state == "failed" and "ended unexpectedly" in final.error
    assert _generate(ctx).result["worker_pid"] != final.result["worker_pid"]


def test_bad_requests_are_refused_with_the_reason(trained_ctx: AppContext) -> None:
    from isengard_desktop.base.errors import NotFoundError, ValidationError

    ctx = trained_ctx
    with pytest.raises(ValidationError, match="Write a prompt"):
        generation.build_request(ctx.volume, ctx.mode, "diffusers", "   ")
    with pytest.raises(ValidationError, match="Steps must be between 1 and 150"):
        generation.build_request(ctx.volume, ctx.mode, "diffusers", "a photo", steps=0)
    with pytest.raises(NotFoundError, match="no character has a trained LoRA yet"):
        generation.lora_for_character(generation.lora_options(ctx.volume, ctx.db), "Ada Lovelace")
    request = generation.build_request(ctx.volume, ctx.mode, "diffusers", "a photo", seed=1, steps=2,
                                       advanced={"upscale": {"model": "x"}})
    job = ctx.jobs.wait(ctx.jobs.submit("generation", "diffusers", request.to_dict()).id, timeout=60)
    assert job.state == "failed" and "does not do upscale" in job.error


def test_training_after_generation_gets_the_memory_back(trained_ctx: AppContext) -> None:
    import psutil

    ctx = trained_ctx
    freed: list[bool] = []
    ctx.jobs.before_training.append(lambda: freed.append(True))  # e.g. ComfyUI unloading its models
    generated = _generate(ctx)
    server = generated.result["worker_pid"]
    assert psutil.pid_exists(server)  # idle, pipeline loaded, waiting for the next request
    character = ctx.characters.resolve("Ada Lovelace")
    spec, _check = build_spec(ctx.volume, ctx.dataset, character, ctx.mode, "quick",
                              {"steps": 2, "save_every": 2, "sample_every": 100})
    trained = ctx.jobs.wait(ctx.jobs.submit("training", "diffusers", spec.to_dict(), character.id).id, timeout=120)
    assert trained.state == "succeeded", trained.error
    assert freed == [True]
    proc = psutil.Process(server) if psutil.pid_exists(server) else None
    assert proc is None or proc.status() == psutil.STATUS_ZOMBIE  # the generation worker has ended
    assert _generate(ctx).result["worker_pid"] != server  # the next generation starts a fresh one
