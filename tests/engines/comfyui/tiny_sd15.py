"""The name H6a's remote ComfyUI test still uses for fast-test mode's tiny SD1.5 checkpoint; the builder is
engines/comfyui/fast_test_models.py (delete this file once that test calls ``fast_test_models.ensure``)."""

from __future__ import annotations

from pathlib import Path

from engines.comfyui.fast_test_models import ensure


def ensure_tiny_sd15(folder: Path, checkout: Path, python: Path) -> Path:
    return ensure(folder, checkout, python)["checkpoint"]
