"""The debug bundle: one zip with a job's folder, the app logs and facts about the machine, secrets redacted.

What a person sends when asking for help, so it holds only what helps and nothing that identifies them:
text files pass through the logs' secret redaction and have home-folder paths (the user's name) replaced
by ``~``; images of the person (a training job's samples) are left out unless asked for with
``include_images``; checkpoint tensors and other binary files are left out (large, unreadable for
redaction). ``bundle.json`` inside lists what was left out and why. The window (Jobs tab) and
``isengard jobs bundle`` make the same file.
"""

from __future__ import annotations

import getpass
import importlib.metadata
import json
import os
import platform
import re
import sys
import zipfile
from pathlib import Path

from isengard_desktop import __version__
from isengard_desktop.base.log import redact_text
from isengard_desktop.base.mode import detect_gpu
from isengard_desktop.storage.volume import Volume

TEXT_SUFFIXES = {".json", ".jsonl", ".log", ".txt", ".yaml", ".yml"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".gif"}
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


def _home_patterns() -> list[tuple[re.Pattern[str], str]]:
    home = str(Path.home()).rstrip("/\\")
    patterns = []
    if len(home) > 1:
        for form in {home, home.replace("\\", "\\\\"), home.replace("\\", "/")}:  # as is, JSON-escaped, slashes
            patterns.append((re.compile(re.escape(form) + r"(?=[/\\\"'\s:,;)\]}]|$)"), "~"))
    # Anyone's home (another account, a path copied from elsewhere) and removable disks named after the user.
    patterns.append((re.compile(r"(?:/home|/Users|[A-Za-z]:(?:\\\\|\\|/)Users)(?:\\\\|\\|/)[^/\\\s\"':]+"), "~"))
    patterns.append((re.compile(r"(/(?:run/)?media/)[^/\s\"':]+"), r"\1<user>"))
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no user name to be found (a container without a passwd entry)
        user = ""
    if len(user) >= 3:  # elsewhere, the user's name as a whole path component (e.g. /mnt/data/ada/...)
        patterns.append((re.compile(rf"(?<=[/\\]){re.escape(user)}(?=[/\\])"), "<user>"))
    return patterns


def redact_home(text: str, patterns: list[tuple[re.Pattern[str], str]] | None = None) -> str:
    """Home-folder paths as ``~`` and the user's name in other paths as ``<user>``."""
    for pattern, replacement in patterns if patterns is not None else _home_patterns():
        text = pattern.sub(replacement, text)
    return text


def person_images(job_folder: Path | None) -> list[Path]:
    """The job's images (a training run's samples show the person): left out unless asked for."""
    if job_folder is None or not job_folder.exists():
        return []
    return sorted(p for p in job_folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def bundle_summary(images: int, include_images: bool) -> str:
    """What the bundle holds, in one sentence for the window and the CLI."""
    if not images:
        pictures = "it holds no images"
    elif include_images:
        pictures = f"the job's {images} sample image(s), which show the person, are included"
    else:
        pictures = f"the job's {images} sample image(s) of the person are left out"
    return (f"Secrets and home-folder paths are redacted, checkpoints are left out, and {pictures}; "
            "bundle.json inside lists what was left out.")


class _Writer:
    def __init__(self, archive: zipfile.ZipFile, include_images: bool) -> None:
        self.archive = archive
        self.include_images = include_images
        self.patterns = _home_patterns()
        self.left_out: list[dict[str, str]] = []
        self.images = 0

    def text(self, name: str, text: str) -> None:
        self.archive.writestr(name, redact_home(redact_text(text), self.patterns))

    def add(self, path: Path, name: str) -> None:
        suffix = path.suffix.lower()
        if suffix in TEXT_SUFFIXES:
            self.text(name, path.read_text(encoding="utf-8", errors="replace"))
        elif suffix in IMAGE_SUFFIXES and self.include_images:
            self.archive.write(path, name)
            self.images += 1
        elif suffix in IMAGE_SUFFIXES:
            self.left_out.append({"file": name, "why": "an image (of the person): included only when asked for"})
        elif path.stat().st_size:  # checkpoints, caches, databases: large or unreadable for redaction
            self.left_out.append({"file": name, "why": "not a text file, so it cannot be checked for secrets"})


COMFYUI_LOG_TAIL = 2 * 1024 * 1024


def build_debug_bundle(volume: Volume, job_folder: Path | None, mode: str, target: Path,
                       include_images: bool = False) -> Path:
    """Write the zip to ``target`` (atomically: a temporary name, then renamed) and return it."""
    tmp = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        writer = _Writer(archive, include_images)
        writer.text("environment.json", json.dumps(environment_facts(mode), indent=2))
        if job_folder is not None and job_folder.exists():
            for path in sorted(job_folder.rglob("*")):
                if path.is_file():
                    writer.add(path, f"job/{path.relative_to(job_folder).as_posix()}")
        for path in sorted(volume.logs_dir.glob("*.jsonl"))[-3:]:
            writer.add(path, f"logs/{path.name}")
        comfyui_log = volume.logs_dir / "comfyui.log"
        if comfyui_log.is_file():  # ComfyUI's own output: its last part is what explains a failed generation
            with open(comfyui_log, "rb") as handle:
                handle.seek(max(0, comfyui_log.stat().st_size - COMFYUI_LOG_TAIL))
                tail = handle.read().decode("utf-8", "replace")
            writer.text("logs/comfyui.log", tail)
        writer.text("bundle.json", json.dumps({
            "redacted": "secrets (known token shapes, credentials, key=value secrets); home folders as ~",
            "images_of_the_person": "included" if include_images else "left out",
            "images_included": writer.images,
            "left_out": writer.left_out,
        }, indent=2))
    os.replace(tmp, target)
    return target
