"""Isengard Desktop: train an identity LoRA from photos of a person, then generate images of them."""

__version__ = "0.1.0"
APP_NAME = "Isengard Desktop"

from isengard_desktop.lean_imports import import_structlog as _import_structlog  # noqa: E402

_import_structlog()  # before any module imports structlog: see lean_imports.py
