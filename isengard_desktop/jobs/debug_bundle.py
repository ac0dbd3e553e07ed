"""The debug bundle: one zip with a job's folder, the app logs and facts about the machine, secrets redacted.

What a person sends when asking for help. Checkpoint tensors are left out (large, and no help in
debugging); text files pass through the same redaction as the logs.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import sys
import zipfile
from pathlib import Path

from isengard_desktop import __version__
from isengard_desktop.core.log import redact_text
from isengard_desktop.core.mode import detect_gpu
from isengard_desktop.storage.volume import Volume

TEXT_SUFFIXES = {".json", ".jsonl", ".log", ".txt", ".yaml", ".yml"}
SKIP_SUFFIXES = {".pt", ".safetensors", ".bin", ".ckpt"}
PACKAGES = ("isengard-desktop", "torch", "diffusers", "peft", "transformers", "safetensors", "PySide6-Essentials",
            "pillow", "structlog")


def environment_facts(mode: str) -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"app_version": __version__, "python": sys.version, "platform": platform.platform(), "mode": mode,
            "gpu": detect_gpu().summary, "packages": versions}


def _add(archive: zipfile.ZipFile, path: Path, name: str) -> None:
    if path.suffix in SKIP_SUFFIXES:
        return
    if path.suffix in TEXT_SUFFIXES:
        archive.writestr(name, redact_text(path.read_text(encoding="utf-8", errors="replace")))
    else:
        archive.write(path, name)


COMFYUI_LOG_TAIL = 2 * 1024 * 1024


def build_debug_bundle(volume: Volume, job_folder: Path | None, mode: str, target: Path) -> Path:
    """Write the zip to ``target`` (atomically: a temporary name, then renamed) and return it."""
    tmp = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("environment.json", json.dumps(environment_facts(mode), indent=2))
        if job_folder is not None and job_folder.exists():
            for path in sorted(job_folder.rglob("*")):
                if path.is_file():
                    _add(archive, path, f"job/{path.relative_to(job_folder)}")
        for path in sorted(volume.logs_dir.glob("*.jsonl"))[-3:]:
            _add(archive, path, f"logs/{path.name}")
        comfyui_log = volume.logs_dir / "comfyui.log"
        if comfyui_log.is_file():  # ComfyUI's own output: its last part is what explains a failed generation
            with open(comfyui_log, "rb") as handle:
                handle.seek(max(0, comfyui_log.stat().st_size - COMFYUI_LOG_TAIL))
                tail = handle.read().decode("utf-8", "replace")
            archive.writestr("logs/comfyui.log", redact_text(tail))
    tmp.replace(target)
    return target
