"""Turning names from outside (file names, character names) into safe file names (SPEC §8)."""

from __future__ import annotations

import re
import unicodedata

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(name: str, max_length: int = 80) -> str:
    """An ASCII file name made from ``name``: no separators, no leading dots, never empty."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    cleaned = _UNSAFE.sub("_", ascii_name).strip("._-")
    return (cleaned or "unnamed")[:max_length]
