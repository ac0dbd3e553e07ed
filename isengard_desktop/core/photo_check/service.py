"""Check photos from the window and the CLI: submit the check job for a character, and read its report.

The report is rebuilt from the cache (cheap, no OpenCV) whenever asked, so it always matches the character's
photos as they are now: a photo deleted since the check drops out, a new one shows as not checked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from isengard_desktop.base.errors import ValidationError
from isengard_desktop.core.dataset import DatasetImage, ImageFilter
from isengard_desktop.core.photo_check import embedder as embedders
from isengard_desktop.core.photo_check.analyse import PhotoInput, Report, build_report
from isengard_desktop.core.photo_check.cache import PhotoCheckCache, analyser_id
from isengard_desktop.storage.jobs_repo import JobRow

if TYPE_CHECKING:
    from isengard_desktop.context import AppContext

KIND = "dataset_check"  # the job's kind: the manager runs it on its CPU lane
ENGINE = "photo_check"  # recorded on the job (no engine plugin runs it: the worker calls core.photo_check.job)


class PhotoCheckService:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.cache = PhotoCheckCache(ctx.db)

    def _images(self, character_id: int) -> list[DatasetImage]:
        return self.ctx.dataset.list(ImageFilter(character_id=character_id))

    def embedder(self) -> embedders.EmbedderChoice:
        return embedders.resolve(self.ctx.mode, self.ctx.volume.models_dir)

    def submit(self, character_id: int) -> JobRow:
        """Queue the check job of one character (it runs on the CPU lane, beside a training run)."""
        images = self._images(character_id)
        if not images:
            raise ValidationError("This character has no photos to check; import some first.")
        running = self.active_job(character_id)
        if running is not None:
            return running
        spec = {
            "character_id": character_id, "volume_root": str(self.ctx.volume.root), "mode": self.ctx.mode,
            "images": [{"id": i.id, "sha256": i.row.sha256, "path": str(i.path), "orientation": i.row.orientation,
                        "too_small": i.too_small} for i in images],
        }
        return self.ctx.jobs.submit(KIND, ENGINE, spec, character_id=character_id)

    def active_job(self, character_id: int) -> JobRow | None:
        """The character's check that is queued or running, if any (a second press follows it instead)."""
        for job in self.ctx.jobs.list(kind=KIND):
            if job.character_id == character_id and job.state in ("queued", "running"):
                return job
        return None

    def report(self, character_id: int) -> Report:
        images = self._images(character_id)
        choice = self.embedder()
        found = self.cache.get_many([i.row.sha256 for i in images], analyser_id(choice.id))
        photos = [PhotoInput(i.id, i.too_small, found.get(i.row.sha256)) for i in images]
        return build_report(photos, {"ready": choice.ready, "embedder": choice.id, "reason": choice.reason})

    def preflight_lines(self, character_id: int) -> list[str]:
        """The Training pre-flight's lines on the character's photos, naming the photos behind the verdict."""
        names = {i.id: i.row.source_name for i in self._images(character_id)}
        return self.report(character_id).preflight_lines(names)
