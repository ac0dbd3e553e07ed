"""The "dataset_check" job, run by the worker process (never the window's): measure every photo of a character
not yet in the cache, two photos at a time on the CPU, embed the faces, cache the figures per content hash, write
the report to the job folder (``report.json``) and announce it as an artifact.

Spec: ``{"character_id", "volume_root", "mode", "images": [{"id", "sha256", "path", "orientation", "too_small"}]}``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import structlog

from isengard_desktop.base import atomic
from isengard_desktop.core.lifeline import die_with_parent
from isengard_desktop.core.photo_check import embedder as embedders
from isengard_desktop.core.photo_check.analyse import PhotoInput, build_report
from isengard_desktop.core.photo_check.cache import PhotoCheckCache, analyser_id
from isengard_desktop.core.photo_check.measure import Measures, measure
from isengard_desktop.storage.db import Database
from isengard_desktop.storage.volume import Volume

log = structlog.get_logger(__name__)

Emit = Callable[[dict[str, Any]], None]
REPORT_FILE = "report.json"
PROGRESS_INTERVAL_S = 0.25


def workers() -> int:
    # Two at most: the check shares the machine with the window and perhaps a training run's data loader.
    return max(1, min(2, os.cpu_count() or 1))


def _measure_one(path: str, orientation: int) -> Measures | str:
    """Pool task: the measures, or a sentence saying why the photo could not be read."""
    try:
        return measure(Path(path), orientation)
    except Exception as exc:  # one unreadable photo must not end the check of the others
        return f"{Path(path).name} could not be read ({exc})."


def run(spec: dict[str, Any], emit: Emit, should_stop: Callable[[], bool], models_dir: Path) -> str:
    volume = Volume.open(Path(spec["volume_root"]))
    db = Database(volume.database_path)
    try:
        return _run(spec, emit, should_stop, models_dir, PhotoCheckCache(db))
    finally:
        db.close()


def _run(spec: dict[str, Any], emit: Emit, should_stop: Callable[[], bool], models_dir: Path,
         cache: PhotoCheckCache) -> str:
    images = spec["images"]
    choice = embedders.resolve(spec["mode"], models_dir, build=True)
    model = embedders.Embedder(choice) if choice.ready else None
    analyser = analyser_id(choice.id)
    cached = cache.get_many([i["sha256"] for i in images], analyser)
    todo: dict[str, dict[str, Any]] = {}
    for image in images:
        if image["sha256"] not in cached:
            todo.setdefault(image["sha256"], image)
    per_hash = Counter(i["sha256"] for i in images)  # a photo imported into the character twice counts twice
    total = len(images)
    done = first_done = total - sum(per_hash[sha] for sha in todo)
    emit({"event": "progress", "step": done, "total": total, "unit": "photos"})
    log.info("photo_check_started", images=total, cached=done, analyser=analyser)
    started, last = time.monotonic(), 0.0
    if todo:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers(), mp_context=context, initializer=die_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            pending: dict[Future, str] = {
                pool.submit(_measure_one, i["path"], int(i.get("orientation") or 1)): sha for sha, i in todo.items()}
            while pending:
                if should_stop():
                    for future in pending:
                        future.cancel()
                    log.info("photo_check_stopped", done=done, total=total)
                    return "cancelled"
                finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in finished:
                    sha = pending.pop(future)
                    result = future.result()
                    if isinstance(result, str):
                        emit({"event": "log", "level": "warning", "message": result})
                    else:
                        face = result.face_crop
                        vector = model.embed(face) if model is not None and face is not None else None
                        cache.put(sha, analyser, result, vector)
                        cached[sha] = cache.get_many([sha], analyser)[sha]
                    done += per_hash[sha]
                now = time.monotonic()
                if now - last >= PROGRESS_INTERVAL_S or not pending:
                    last = now
                    rate = (done - first_done) / max(now - started, 1e-6)
                    emit({"event": "progress", "step": min(done, total), "total": total, "unit": "photos",
                          "it_per_s": round(rate, 2)})
    report = build_report([PhotoInput(i["id"], bool(i.get("too_small")), cached.get(i["sha256"])) for i in images],
                          {"ready": choice.ready, "embedder": choice.id, "reason": choice.reason})
    path = Path(spec["output_dir"]) / REPORT_FILE
    atomic.write_text(path, json.dumps(report.to_json(), indent=1))
    emit({"event": "artifact", "kind": "photo_check", "path": str(path)})
    log.info("photo_check_finished", images=total, flagged=report.summary["flagged"],
             verdict=report.summary["verdict"], seconds=round(time.monotonic() - started, 2))
    return "succeeded"
