"""User settings, stored as versioned JSON in the volume (``settings.json``), with numbered migrations."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import structlog

from isengard_desktop.base import atomic
from isengard_desktop.base.errors import VolumeError

log = structlog.get_logger(__name__)

SETTINGS_VERSION = 1


@dataclass
class Settings:
    schema_version: int = SETTINGS_VERSION
    # Images whose shorter side is below this are imported but flagged "too small for training".
    min_training_side: int = 512
    # Extra model folders (e.g. an existing ComfyUI models/ folder) the engines may read from.
    extra_model_dirs: list[str] = field(default_factory=list)
    default_training_engine: str = "aitoolkit"
    default_image_engine: str = "comfyui"
    # The first-run page (engines, base model, token) has been finished or skipped; Settings brings it back.
    first_run_done: bool = False
    # Remote GPU machines reached over SSH (core/remote/registry.py): name, user, host, port, key PATH, dir.
    remotes: list[dict[str, Any]] = field(default_factory=list)
    # A ComfyUI already running elsewhere, used instead of the embedded one ("" = embedded); its auth header is
    # in the OS keyring (core/secrets.py), never here.
    comfyui_url: str = ""
    # The tab the window was last left on ("" = Characters): the window reopens there.
    last_tab: str = ""


# version -> function upgrading a dict from that version to the next one.
_MIGRATIONS: dict[int, Any] = {}


def load(path: Path) -> Settings:
    """Read settings; a missing file gives the defaults. A newer file is refused, an older one migrated."""
    if not path.exists():
        return Settings()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("settings_unreadable", path=str(path), error=str(exc))
        return Settings()
    version = int(data.get("schema_version", 1))
    if version > SETTINGS_VERSION:
        raise VolumeError(
            f"The settings in {path} come from a newer version of Isengard Desktop (version {version}); "
            "update the app or choose another volume folder."
        )
    while version < SETTINGS_VERSION:
        data = _MIGRATIONS[version](data)
        version += 1
    known = {f.name for f in fields(Settings)}
    data = {k: v for k, v in data.items() if k in known}
    data["schema_version"] = SETTINGS_VERSION
    return Settings(**data)


def save(path: Path, settings: Settings) -> None:
    atomic.write_text(path, json.dumps(asdict(settings), indent=2, sort_keys=True))


def update(path: Path, held: Settings | None = None, **changes: Any) -> Settings:
    """Change only ``changes`` in the file, read again first, and return what it now holds.

    The window keeps its settings in memory for hours while a CLI command (``isengard remotes add``) or a second
    window may change the file: saving the whole copy held would silently undo their changes. ``held``, the
    copy a caller keeps (``ctx.settings``), is brought up to date too."""
    unknown = set(changes) - {f.name for f in fields(Settings)}
    if unknown:
        raise TypeError(f"not a setting: {', '.join(sorted(unknown))}")
    current = load(path)
    for name, value in changes.items():
        setattr(current, name, value)
    save(path, current)
    if held is not None:
        for item in fields(Settings):
            setattr(held, item.name, getattr(current, item.name))
    return current
