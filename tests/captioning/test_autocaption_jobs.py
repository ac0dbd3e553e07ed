"""Caption jobs for real: a worker process on the GPU lane runs the tiny Qwen3-VL on real photographs and the job
manager stores each caption as the photo's own; a person's caption is kept unless asked; cancel stops it."""

from __future__ import annotations

import threading

import pytest

from isengard_desktop.base.caption_text import trigger_count
from isengard_desktop.base.errors import ValidationError
from isengard_desktop.context import AppContext
from isengard_desktop.core import autocaption
from isengard_desktop.core.dataset import ImageFilter
from isengard_desktop.jobs.lanes import GPU_LANE, lane_of
from tests.captioning.conftest import PERSON_CAPTION, PHOTOS, TRIGGER

pytestmark = pytest.mark.slow  # each job starts a worker that imports torch and transformers (~10 s here)


def _images(ctx: AppContext) -> list:
    return ctx.dataset.list(ImageFilter(character_id=ctx.characters.resolve("Eileen").id))


def test_captions_are_written_with_the_trigger_once_and_a_persons_caption_is_kept(caption_ctx: AppContext) -> None:
    ctx = caption_ctx
    assert lane_of(autocaption.JOB_KIND) == GPU_LANE  # never beside a training run
    job = autocaption.submit(ctx, "Eileen")
    assert len(job.params["spec"]["images"]) == len(PHOTOS) - 1 and job.params["kept_person_captions"] == 1
    final = ctx.jobs.wait(job.id, timeout=240)
    assert final.state == "succeeded", final.error
    assert final.result["captions_stored"] == len(PHOTOS) - 1
    images = _images(ctx)
    assert images[0].caption == PERSON_CAPTION and images[0].row.caption_source == "person"
    for image in images[1:]:
        assert image.has_own_caption and image.row.caption_source == "auto"
        assert trigger_count(image.caption, TRIGGER) == 1, image.caption
    events = ctx.jobs.events(final.id)
    steps = [e["step"] for e in events if e["event"] == "progress" and e.get("unit") == "photos"]
    assert steps[0] == 0 and steps[-1] == len(PHOTOS) - 1  # progress from 0 to every photo

    # Again: automatic captions are replaced, the person's is still kept; with overwrite it is replaced too.
    again = ctx.jobs.wait(autocaption.submit(ctx, "Eileen").id, timeout=240)
    assert again.state == "succeeded" and _images(ctx)[0].caption == PERSON_CAPTION
    forced = ctx.jobs.wait(autocaption.submit(ctx, "Eileen", overwrite=True).id, timeout=240)
    assert forced.state == "succeeded" and forced.result["captions_stored"] == len(PHOTOS)
    first = _images(ctx)[0]
    assert first.caption != PERSON_CAPTION and first.row.caption_source == "auto"
    assert trigger_count(first.caption, TRIGGER) == 1


def test_cancel_stops_the_job_and_keeps_the_captions_written_so_far(caption_ctx: AppContext) -> None:
    ctx = caption_ctx
    job = autocaption.submit(ctx, "Eileen")
    first_caption = threading.Event()

    def on_event(job_id: str, event: dict) -> None:
        if job_id == job.id and event.get("event") == "artifact" and not first_caption.is_set():
            first_caption.set()
            ctx.jobs.cancel(job.id)

    unsubscribe = ctx.jobs.subscribe(on_event)
    try:
        final = ctx.jobs.wait(job.id, timeout=240)
    finally:
        unsubscribe()
    assert final.state == "cancelled", final.error
    stored = final.result.get("captions_stored", 0)
    assert 1 <= stored < len(PHOTOS) - 1
    assert sum(1 for i in _images(ctx) if i.row.caption_source == "auto") == stored
    assert ctx.jobs.running_jobs() == []  # the worker is gone: its memory is returned


def test_the_caption_worker_is_gone_before_a_training_starts(caption_ctx: AppContext) -> None:
    import psutil

    from isengard_desktop.core.training import build_spec

    ctx = caption_ctx
    caption = autocaption.submit(ctx, "Eileen")
    person = ctx.characters.resolve("Eileen")
    spec, check = build_spec(ctx.volume, ctx.dataset, person, ctx.mode, "quick",
                             {"steps": 2, "save_every": 2, "sample_every": 100})
    assert check.ok, check.problems
    training = ctx.jobs.submit("training", "diffusers", spec.to_dict(), person.id, meta={"preset": "quick"})
    assert ctx.jobs.get(training.id).state == "queued"  # one GPU job at a time: it waits for the captions
    done = ctx.jobs.wait(caption.id, timeout=240)
    trained = ctx.jobs.wait(training.id, timeout=240)
    assert done.state == "succeeded" and trained.state == "succeeded", trained.error
    assert trained.started_at >= done.finished_at
    assert not psutil.pid_exists(done.result["worker_pid"])


def test_nothing_to_caption_says_why(caption_ctx: AppContext) -> None:
    ctx = caption_ctx
    empty = ctx.characters.create("Nobody", "ohwx_nobody")
    with pytest.raises(ValidationError, match="no photos yet"):
        autocaption.submit(ctx, empty.id)
