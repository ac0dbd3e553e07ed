"""How sizes and durations are written for people: ``23.8 GB``, ``4m 05s``, ``1h 02m``."""

from __future__ import annotations


def human_bytes(count: float | None) -> str:
    """Decimal units, as the hub and file managers show sizes (1 GB = 10^9 bytes)."""
    if count is None:
        return "–"
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m {seconds % 60:02d}s"


def transfer_text(event: dict) -> str:
    """A download's progress event as one line: ``3.2 GB of 57.3 GB · 85.0 MB/s · 10m 36s left``."""
    done, total = event.get("step", 0), event.get("total") or 0
    parts = [f"{human_bytes(done)} of {human_bytes(total)}"]
    if event.get("phase") == "verify":
        parts[0] = f"checking {human_bytes(done)} of {human_bytes(total)}"
    if event.get("speed"):
        parts.append(f"{human_bytes(event['speed'])}/s")
    if event.get("eta") is not None and event.get("speed"):
        parts.append(f"{human_duration(event['eta'])} left")
    return " · ".join(parts)
