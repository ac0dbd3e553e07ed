"""Reading AI-Toolkit's console output: the tqdm training bar and the save markers.

The bar is redrawn with carriage returns on stderr, e.g.
``ada:  50%|█████     | 3/6 [00:14<00:14,  4.70s/it, lr: 1.0e-04 loss: 1.483e+00]``;
checkpoints are announced with ``Saving at step N`` and ``Saved checkpoint to PATH``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BAR = re.compile(
    r"(?P<step>\d+)/(?P<total>\d+) \[(?P<elapsed>[\d:]+)<(?P<remaining>[\d:?]+),\s*"
    r"(?P<rate>[\d.]+)(?P<unit>s/it|it/s)(?:,\s*lr: (?P<lr>[\d.e+-]+))?(?:\s*loss: (?P<loss>nan|[-+]?inf|[\d.e+-]+))?"
)
_SAVING = re.compile(r"Saving at step (\d+)")
_SAVED = re.compile(r"Saved checkpoint to (.+\.safetensors)")


@dataclass(frozen=True)
class Progress:
    step: int
    total: int
    it_per_s: float
    eta_s: float | None
    lr: float | None
    loss: float | None


def split_redraws(chunk: str) -> list[str]:
    """Lines of console output, with each carriage-return redraw as a line of its own."""
    return [part for part in chunk.replace("\r", "\n").split("\n") if part.strip()]


def _seconds(clock: str) -> float | None:
    if "?" in clock:
        return None
    total = 0.0
    for part in clock.split(":"):
        total = total * 60 + float(part)
    return total


def parse_bar(line: str, name: str) -> Progress | None:
    """The training bar's progress (the bar whose label is the job's name), or None for any other line."""
    if not line.lstrip().startswith(f"{name}:"):
        return None
    match = _BAR.search(line)
    if not match:
        return None
    rate = float(match["rate"])
    it_per_s = rate if match["unit"] == "it/s" else (1.0 / rate if rate else 0.0)
    return Progress(
        step=int(match["step"]),
        total=int(match["total"]),
        it_per_s=it_per_s,
        eta_s=_seconds(match["remaining"]),
        lr=float(match["lr"]) if match["lr"] else None,
        loss=float(match["loss"]) if match["loss"] else None,
    )


def parse_saving(line: str) -> int | None:
    match = _SAVING.search(line)
    return int(match.group(1)) if match else None


def parse_saved(line: str) -> str | None:
    match = _SAVED.search(line)
    return match.group(1).strip() if match else None
