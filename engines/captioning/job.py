"""The worker side of a job of kind "caption": caption each photo of the spec, one event per caption.

Spec (made by ``isengard_desktop.core.autocaption.submit``)::

    {"model": "tiny-qwen3-vl" | "<model folder>", "trigger": "ohwx", "keep_traits": false, "overwrite": false,
     "images": [{"id": 3, "path": "<absolute path>"}, ...], "max_new_tokens": 96}

Events: ``progress`` (step/total photos, photos per second, time left), one ``artifact`` of kind "caption" per photo
(image_id, caption, usable: whether the model's answer made the caption or the default was used), a ``log`` for a
photo that cannot be read (the others go on). The job manager stores each caption as it arrives, so a cancelled
job keeps the captions written so far. The worker is a process of its own: its GPU memory returns when it exits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from engines.captioning.tiny_model import TINY_NAME, ensure_tiny_captioner
from isengard_desktop.base import caption_text

log = structlog.get_logger(__name__)

Emit = Callable[[dict[str, Any]], None]


def model_folder(spec: dict[str, Any], models_dir: Path) -> Path:
    """The folder to load: the tiny model (built on first use) or the downloaded one."""
    if spec["model"] == TINY_NAME:
        return ensure_tiny_captioner(models_dir)
    return Path(spec["model"])


def run(spec: dict[str, Any], emit: Emit, should_stop: Callable[[], bool], models_dir: Path) -> str:
    """Caption every photo of ``spec``; returns "succeeded", or "cancelled" when asked to stop."""
    from engines.captioning.captioner import MAX_NEW_TOKENS, Captioner, load_image

    images = spec["images"]
    total = len(images)
    emit({"event": "progress", "step": 0, "total": total, "unit": "photos", "phase": "loading the captioning model"})
    tiny = spec["model"] == TINY_NAME
    # One thread for the tiny model: on a shared 2-core machine it is many times faster than two (FACTS.md).
    captioner = Captioner(model_folder(spec, models_dir), threads=1 if tiny else None)
    instruction = caption_text.instruction(bool(spec.get("keep_traits")))
    trigger = spec["trigger"]
    started = time.monotonic()
    usable = 0
    for index, item in enumerate(images, start=1):
        if should_stop():
            log.info("captioning_stopped", done=index - 1, total=total)
            return "cancelled"
        try:
            image = load_image(Path(item["path"]))
        except OSError as exc:  # a file gone or damaged since its import: say so, caption the rest
            emit({"event": "log", "level": "warning",
                  "message": f"Photo {item['id']} could not be read ({exc}); it keeps its caption."})
            continue
        answer = captioner.answer(image, instruction, should_stop,
                                  int(spec.get("max_new_tokens") or MAX_NEW_TOKENS))
        if should_stop():  # generation was cut short: that half answer is not stored
            return "cancelled"
        caption, ok = caption_text.finish_caption(answer.text, trigger, bool(spec.get("keep_traits")))
        usable += ok
        log.info("photo_captioned", image_id=item["id"], seconds=round(answer.seconds, 3), tokens=answer.new_tokens,
                 usable=ok)
        emit({"event": "artifact", "kind": "caption", "image_id": item["id"], "caption": caption, "usable": ok})
        elapsed = time.monotonic() - started
        rate = index / elapsed if elapsed > 0 else 0.0
        emit({"event": "progress", "step": index, "total": total, "unit": "photos", "it_per_s": round(rate, 3),
              "eta_s": round((total - index) / rate, 1) if rate else None, "phase": "captioning"})
    log.info("captioning_finished", photos=total, usable=usable, seconds=round(time.monotonic() - started, 3))
    return "succeeded"
