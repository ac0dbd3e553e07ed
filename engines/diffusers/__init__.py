"""The built-in FLUX LoRA engine on diffusers + peft, and the tiny-model factory for fast-test mode.

Importing this package is cheap: torch, diffusers and peft are imported only when training starts.
"""

from engines.diffusers.engine import DiffusersEngine

__all__ = ["DiffusersEngine"]
