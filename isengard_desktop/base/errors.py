"""Errors a person can meet. Each message is one sentence naming the thing, the reason and what to do."""

from __future__ import annotations


class IsengardError(Exception):
    """Base of every error the app reports to a person (CLI: one line on stderr, UI: a message box)."""


class VolumeError(IsengardError):
    """The volume folder cannot be used (unwritable, or written by a newer version of the app)."""


class NotFoundError(IsengardError):
    """A character, image or job that the user named does not exist."""


class ValidationError(IsengardError):
    """User input that cannot be accepted (an empty name, a trigger word with spaces, ...)."""
