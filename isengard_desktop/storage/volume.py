"""The volume: the one folder that holds everything a user makes. Every path in the app comes from here.

Resolved once at start-up (CONVENTIONS 6): ``--volume DIR``, then ``VOLUME_ROOT``, then the folder
the user chose in Settings (remembered outside the volume, in the per-user config dir), then the
per-OS user data dir from platformdirs. Nothing here runs at import time.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from isengard_desktop.base import atomic
from isengard_desktop.base.errors import VolumeError

APP_DIR_NAME = "isengard-desktop"
LOCATION_FILE = "volume-location.json"


def _config_dir() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP_DIR_NAME, appauthor=False))


def default_volume_root() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_DIR_NAME, appauthor=False))


def remembered_volume_root() -> Path | None:
    """The folder chosen in Settings, if any."""
    try:
        data = json.loads((_config_dir() / LOCATION_FILE).read_text(encoding="utf-8"))
        return Path(data["volume"]).expanduser()
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember_volume_root(root: Path) -> None:
    """Remember ``root`` as the volume for the next start (Settings → Volume folder)."""
    atomic.write_text(_config_dir() / LOCATION_FILE, json.dumps({"volume": str(root)}))


def resolve_volume_root(cli_value: str | None = None) -> tuple[Path, str]:
    """Return the volume root and where it came from ("--volume", "VOLUME_ROOT", "settings", "default")."""
    if cli_value:
        return Path(cli_value).expanduser().resolve(), "--volume"
    env = os.environ.get("VOLUME_ROOT")
    if env:
        return Path(env).expanduser().resolve(), "VOLUME_ROOT"
    remembered = remembered_volume_root()
    if remembered is not None:
        return remembered.resolve(), "settings"
    return default_volume_root().resolve(), "default"


@dataclass(frozen=True)
class Volume:
    """Every folder and file of one volume. Create with ``Volume.open``."""

    root: Path

    @classmethod
    def open(cls, root: Path) -> Volume:
        """Create the folder layout if needed and check it can be written."""
        volume = cls(Path(root))
        try:
            for folder in volume.folders():
                folder.mkdir(parents=True, exist_ok=True)
            # A name of this process's own: two processes opening the volume at once (two imports) must not
            # delete each other's check file.
            probe = volume.root / f".write-check-{os.getpid()}-{threading.get_ident()}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise VolumeError(
                f"The volume folder {volume.root} cannot be written ({exc.strerror or exc}); "
                "choose another folder with --volume or in Settings."
            ) from exc
        return volume

    def folders(self) -> list[Path]:
        return [
            self.root,
            self.images_dir,
            self.thumbnails_dir,
            self.models_dir,
            self.loras_dir,
            self.jobs_dir,
            self.outputs_dir,
            self.logs_dir,
            self.trash_dir,
        ]

    @property
    def database_path(self) -> Path:
        return self.root / "isengard.db"

    @property
    def settings_path(self) -> Path:
        return self.root / "settings.json"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def thumbnails_dir(self) -> Path:
        return self.root / "thumbnails"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def loras_dir(self) -> Path:
        return self.models_dir / "loras"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    @property
    def engines_dir(self) -> Path:
        """Where ``isengard engines install`` puts the upstream engines (one folder each, plus install logs)."""
        return self.root / "engines"

    def engine_dir(self, name: str) -> Path:
        """Engine ``name``'s folder: its install (src/, venv/) and its run state. The one place this is computed;
        engines receive it in their EngineContext (isengard_desktop/core/engines.py)."""
        return self.engines_dir / name

    @property
    def outputs_dir(self) -> Path:
        return self.root / "outputs"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def trash_dir(self) -> Path:
        return self.root / "trash"

    def image_path(self, sha256: str, ext: str) -> Path:
        """Where an imported image lives: content-addressed, so the same bytes are stored once."""
        return self.images_dir / sha256[:2] / f"{sha256}{ext}"

    def thumbnail_path(self, sha256: str) -> Path:
        return self.thumbnails_dir / sha256[:2] / f"{sha256}.jpg"

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def app_log_path(self, day: datetime | None = None) -> Path:
        day = day or datetime.now()
        return self.logs_dir / f"app-{day:%Y-%m-%d}.jsonl"

    def new_trash_folder(self, label: str) -> Path:
        """A fresh folder in the trash for one delete operation, named by time and what was deleted."""
        from isengard_desktop.storage.names import safe_filename

        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        folder = self.trash_dir / f"{stamp}-{safe_filename(label, 40)}"
        folder.mkdir(parents=True, exist_ok=False)
        return folder
