"""The one exception type the diffusers engine raises for problems a person can act on.

Its message is a full sentence naming the thing and the reason (an empty dataset, an unreadable
image, too little disk); the worker turns it into an ``error`` event shown to the user as is.
"""

from __future__ import annotations


class TrainingError(Exception):
    """Training cannot start or go on, for a reason stated in the message."""


class GenerationError(Exception):
    """An image cannot be generated, for a reason stated in the message (a missing LoRA, a wrong model)."""
