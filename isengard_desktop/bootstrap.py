"""One start for the window and the CLI: the volume found and opened once, logging into it, the mode, the context.

``open_volume`` is separate so each front end can handle an unusable volume its own way (the window offers another
folder; ``isengard doctor`` explains it); ``start`` then builds the ``AppContext`` on that same open volume.
Imported by ui/app.py only once the window has to open its volume: nothing here is on the path to importing Qt.
"""

from __future__ import annotations

import logging

from isengard_desktop.base import log as app_log
from isengard_desktop.base.mode import resolve_mode
from isengard_desktop.context import AppContext
from isengard_desktop.storage.volume import Volume, resolve_volume_root


def open_volume(volume_cli_value: str | None) -> Volume:
    """The volume ``--volume``, ``VOLUME_ROOT`` or the remembered folder names (else the default), created and checked
    writable (VolumeError saying what to do when it is not)."""
    root, _source = resolve_volume_root(volume_cli_value)
    return Volume.open(root)


def start(volume: Volume, mode: str | None = None, *, stderr_level: int = logging.WARNING,
          stderr_for_people: bool = False) -> AppContext:
    """The app on ``volume``: logs written into it, the mode (``ISENGARD_MODE``, else from the GPU) and the context."""
    app_log.configure(volume.logs_dir, stderr_level=stderr_level, stderr_for_people=stderr_for_people)
    return AppContext.from_volume(volume, mode or resolve_mode())
