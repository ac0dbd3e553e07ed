"""Filing a job's results into the volume as its worker reports them: images, LoRAs and captions.

A worker writes into its job folder; the ``image`` and ``artifact`` events it emits name the files. Filing moves
or copies them into the volume's library (outputs, LoRAs), records them in the database, and keeps what each job
produced (its ``result``) until the job ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from isengard_desktop.base import atomic
from isengard_desktop.storage.jobs_repo import JobRepository, JobRow
from isengard_desktop.storage.names import safe_filename
from isengard_desktop.storage.volume import Volume

log = structlog.get_logger(__name__)

# What a generation's database row keeps of its request (for the gallery and "Reuse parameters").
GENERATION_PARAMS = ("prompt", "loras", "aspect", "width", "height", "steps", "guidance", "seed", "batch_count",
                     "sampler", "scheduler", "advanced", "base_model_name")


def files_something(event: dict[str, Any]) -> bool:
    """Whether an event names a result to file (a finished image, LoRA or caption)."""
    return event.get("event") == "image" or (event.get("event") == "artifact"
                                             and event.get("kind") in ("lora", "caption"))


class Filing:
    def __init__(self, volume: Volume, repo: JobRepository) -> None:
        self.volume = volume
        self.repo = repo
        self._results: dict[str, dict[str, Any]] = {}

    def note(self, job_id: str, key: str, value: Any) -> None:
        """Something else the job's result keeps (e.g. the worker's pid)."""
        self._results.setdefault(job_id, {})[key] = value

    def take(self, job_id: str) -> dict[str, Any]:
        """What the job produced, once it ended (forgotten here)."""
        return self._results.pop(job_id, {})

    def file(self, job: JobRow, event: dict[str, Any]) -> dict[str, Any]:
        """File the result an event names; returns the fields the listeners' copy of the event gains."""
        if event.get("event") == "image":
            return self._image(job, event)
        if event.get("kind") == "lora":
            return self._lora(job, Path(event["path"]))
        return self._caption(job, event)

    def _caption(self, job: JobRow, event: dict[str, Any]) -> dict[str, Any]:
        """Store an automatic caption as the photo's own (a person's caption is kept unless the job overwrites)."""
        from isengard_desktop.core.autocaption import store_caption

        outcome = store_caption(self.repo.db, job.params.get("spec", {}), event)
        counts = self._results.setdefault(job.id, {})
        key = "captions_stored" if outcome["stored"] else "captions_kept"
        counts[key] = counts.get(key, 0) + 1
        return outcome

    def _image(self, job: JobRow, event: dict[str, Any]) -> dict[str, Any]:
        """Move a finished image into the volume's outputs and record the generation with its parameters."""
        source = Path(event["path"])
        target = self.volume.outputs_dir / job.created_at[:10] / f"{job.id}_{int(event.get('index', 0)):02d}.png"
        atomic.move_file(source, target)
        spec = job.params.get("spec", {})
        params = {key: spec.get(key) for key in GENERATION_PARAMS}
        params["seed"] = event.get("seed", spec.get("seed"))
        generation_id = self.repo.add_generation(job.id, str(target.relative_to(self.volume.root)), job.engine,
                                                 params, event.get("parameters", ""), int(event.get("index", 0)))
        self._results.setdefault(job.id, {}).setdefault("images", []).append(str(target))
        log.info("image_registered", job_id=job.id, path=str(target), correlation_id=job.correlation_id)
        return {"library_path": str(target), "generation_id": generation_id}

    def _lora(self, job: JobRow, source: Path) -> dict[str, Any]:
        """Copy a finished LoRA into the volume's LoRAs and record it for the character."""
        spec = job.params.get("spec", {})
        name = safe_filename(spec.get("lora_name") or "lora", 60)
        target = self.volume.loras_dir / f"{name}-{job.id}.safetensors"
        atomic.copy_file(source, target)
        self.repo.add_lora(job.character_id, job.id, str(target.relative_to(self.volume.root)),
                           spec.get("base_model_name", "?"), job.engine, int(spec.get("steps", 0)),
                           int(spec.get("rank", 0)))
        self._results.setdefault(job.id, {})["lora"] = str(target)
        log.info("lora_registered", job_id=job.id, path=str(target), correlation_id=job.correlation_id)
        return {"library_path": str(target)}
