"""Importing photos into a character: expand folders, check and store each file, dedupe, record.

The heavy part (read, hash, decode, thumbnail, store) runs in a pool of worker processes so both
cores decode; this module only hands out files, collects results and writes database rows in
batches. A bad file is refused with a reason and the rest of the import goes on. Cancelling
keeps everything imported so far.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from isengard_desktop.base.errors import NotFoundError
from isengard_desktop.base.image_probe import NOT_REGULAR, probe
from isengard_desktop.core import orphans
from isengard_desktop.core.lifeline import die_with_parent
from isengard_desktop.storage.repositories import ImageRepository
from isengard_desktop.storage.volume import Volume

log = structlog.get_logger(__name__)

# Below this many files a process pool costs more to start than it saves.
POOL_THRESHOLD = 8
MISSING = "there is no such file or folder"
LINKED_FOLDER = ("it is a linked folder (symlink), which is not followed inside a folder; give it as a path of its "
                 "own to import it")


@dataclass
class ImportProgress:
    done: int
    total: int
    current: str = ""


@dataclass
class ImportReport:
    imported: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)
    cancelled: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "duplicates": self.duplicates,
            "refused": self.refused,
            "cancelled": self.cancelled,
        }

    @property
    def summary(self) -> str:
        parts = [f"{len(self.imported)} imported"]
        if self.duplicates:
            parts.append(f"{len(self.duplicates)} already there")
        if self.refused:
            parts.append(f"{len(self.refused)} refused")
        if self.cancelled:
            parts.append("cancelled")
        return ", ".join(parts)


def collect_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[dict[str, str]]]:
    """Expand folders (recursively, skipping hidden files) into files; report what cannot be imported.

    Reported rather than skipped in silence: a path that does not exist, one that is not a regular file or
    folder (a named pipe, a device), and a linked folder (symlink) met inside a folder. Linked folders are
    not followed, because one can lead out of the folder given (or back into it, for ever); naming one as
    a path of its own imports it.
    """
    files: list[Path] = []
    refused: list[dict[str, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                for name in sorted(d for d in dirs if not d.startswith(".") and os.path.islink(os.path.join(root, d))):
                    refused.append({"file": os.path.join(root, name), "reason": LINKED_FOLDER})
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not os.path.islink(os.path.join(root, d)))
                files.extend(Path(root) / n for n in sorted(names) if not n.startswith("."))
        elif path.is_file():
            files.append(path)
        elif os.path.lexists(path) and path.exists():
            refused.append({"file": str(path), "reason": NOT_REGULAR})
        elif os.path.lexists(path):
            refused.append({"file": str(path), "reason": "it is a link to something that does not exist"})
        else:
            refused.append({"file": str(path), "reason": MISSING})
    return files, refused


def _workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class Importer:
    def __init__(self, volume: Volume, images: ImageRepository, min_training_side: int = 512) -> None:
        self.volume = volume
        self.images = images
        self.min_training_side = min_training_side

    def run(
        self,
        character_id: int,
        paths: Iterable[str | Path],
        on_progress: Callable[[ImportProgress], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> ImportReport:
        files, unusable = collect_files(paths)
        report = ImportReport(refused=list(unusable))
        known = self.images.hashes_for_character(character_id)
        total = len(files)
        pending_rows: list[dict[str, Any]] = []
        last_flush = time.monotonic()
        started = time.monotonic()
        log.info("import_started", character_id=character_id, files=total)

        def flush() -> None:
            nonlocal pending_rows, last_flush
            if pending_rows:
                try:
                    ids = self.images.insert_many([{k: v for k, v in r.items() if k != "too_small"}
                                                   for r in pending_rows])
                except sqlite3.IntegrityError as exc:  # the character was deleted meanwhile (foreign key)
                    raise NotFoundError(
                        f"The character was deleted while its photos were being imported; {len(report.imported)} "
                        "were recorded before that, the rest were not."
                    ) from exc
                for image_id, row in zip(ids, pending_rows, strict=True):
                    if image_id is None:  # another import into this character recorded these bytes first
                        report.duplicates.append({"file": row["source_path"], "sha256": row["sha256"]})
                        continue
                    report.imported.append(
                        {"id": image_id, "file": row["source_path"], "sha256": row["sha256"],
                         "width": row["width"], "height": row["height"], "too_small": row["too_small"]}
                    )
            pending_rows = []
            last_flush = time.monotonic()

        def handle(source: Path, result: dict[str, Any]) -> None:
            if "refused" in result:
                report.refused.append({"file": str(source), "reason": result["refused"]})
                log.info("import_refused", file=str(source), reason=result["refused"])
            elif result["sha256"] in known:
                report.duplicates.append({"file": str(source), "sha256": result["sha256"]})
            else:
                known.add(result["sha256"])
                too_small = min(result["width"], result["height"]) < self.min_training_side
                pending_rows.append({**result, "character_id": character_id, "source_path": str(source),
                                     "too_small": too_small})

        done = 0
        # While the guard is held, stored files without a row yet are this import's, not leftovers.
        with orphans.import_guard(self.volume):
            for source, result in self._results(files, should_cancel, report):
                handle(source, result)
                done += 1
                if len(pending_rows) >= 64 or time.monotonic() - last_flush > 0.5:
                    flush()
                if on_progress:
                    on_progress(ImportProgress(done, total, source.name))
            flush()
        log.info(
            "import_finished", character_id=character_id, imported=len(report.imported),
            duplicates=len(report.duplicates), refused=len(report.refused), cancelled=report.cancelled,
            seconds=round(time.monotonic() - started, 3),
        )
        return report

    def _results(self, files: list[Path], should_cancel: Callable[[], bool] | None, report: ImportReport):
        """Yield (file, probe result) as they finish, in a process pool when there are enough files."""
        args = (str(self.volume.images_dir), str(self.volume.thumbnails_dir))
        if len(files) < POOL_THRESHOLD:
            for source in files:
                if should_cancel and should_cancel():
                    report.cancelled = True
                    return
                yield source, probe(str(source), *args)
            return
        # spawn, not fork: the GUI process has Qt threads, and forking a threaded process can deadlock.
        context = multiprocessing.get_context("spawn")
        workers = _workers()
        queue = list(reversed(files))
        running: dict[Future, Path] = {}
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=die_with_parent,
                                     initargs=(os.getpid(),)) as pool:
                try:
                    while queue or running:
                        if should_cancel and should_cancel():
                            report.cancelled = True
                            return
                        while queue and len(running) < workers * 3:
                            source = queue.pop()
                            running[pool.submit(probe, str(source), *args)] = source
                        finished, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                        for future in finished:
                            source = running.pop(future)
                            result = future.result()
                            yield source, result
                finally:
                    for future in running:
                        future.cancel()
        except BrokenProcessPool as exc:
            # The pool could not start or a worker died (out of memory, a crashing decoder): finish here,
            # one file at a time, rather than lose the import.
            log.warning("import_pool_broken", error=str(exc), remaining=len(queue) + len(running))
            for source in [*running.values(), *reversed(queue)]:
                if should_cancel and should_cancel():
                    report.cancelled = True
                    return
                yield source, probe(str(source), *args)
