"""This machine's GPUs as the memory plan sees them: memory in use and whether each drives a display.

AI-Toolkit's README asks for ``model.low_vram`` when the GPU drives monitors, and a desktop's
compositor holds memory on that card; the driver says which card has a display through
``nvidia-smi --query-gpu=display_active,display_mode`` (NVML: nvmlDeviceGetDisplayActive / DisplayMode).
No torch here (the window must not load it): nvidia-smi first, NVML second, nothing without a driver.
"""

from __future__ import annotations

import shutil
import subprocess
import time

from isengard_desktop.base.memory_plan import Card

DISPLAY_QUERY = "index,display_active,display_mode"
CACHE_SECONDS = 30.0  # the Training tab asks on every change of the form; a card's state changes slowly
_cache: tuple[float, list[Card]] | None = None


def parse_display_query(csv_text: str) -> dict[int, bool]:
    """{index: drives a display} from ``nvidia-smi --query-gpu=index,display_active,display_mode
    --format=csv,noheader``; "Enabled" in either field counts ("[N/A]" and "Disabled" do not)."""
    out: dict[int, bool] = {}
    for line in csv_text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3 or not parts[0].isdigit():
            continue
        out[int(parts[0])] = any(p.lower() == "enabled" for p in parts[1:])
    return out


def query_displays() -> dict[int, bool]:
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        try:
            proc = subprocess.run([smi, f"--query-gpu={DISPLAY_QUERY}", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            proc = None
        if proc is not None and proc.returncode == 0:
            return parse_display_query(proc.stdout)
    return _nvml_displays()


def _nvml_displays() -> dict[int, bool]:
    try:
        import pynvml
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return {}
    try:
        out = {}
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            out[index] = bool(pynvml.nvmlDeviceGetDisplayActive(handle) or pynvml.nvmlDeviceGetDisplayMode(handle))
        return out
    except pynvml.NVMLError:
        return {}
    finally:
        pynvml.nvmlShutdown()


def cards_from(gpus: list, displays: dict[int, bool]) -> list[Card]:
    """Cards from ``nvidia.Gpu`` answers (in nvidia-smi's order) and the display answer."""
    return [Card.from_gpu(gpu, displays.get(index, False)) for index, gpu in enumerate(gpus)]


def local_cards(fresh: bool = False) -> list[Card]:
    """This machine's cards (empty without an NVIDIA driver), asked at most every 30 s unless ``fresh``."""
    global _cache
    now = time.monotonic()
    if not fresh and _cache is not None and now - _cache[0] < CACHE_SECONDS:
        return _cache[1]
    from isengard_desktop.base.mode import query_gpus

    gpus = query_gpus()
    cards = cards_from(gpus, query_displays() if gpus else {})
    _cache = (now, cards)
    return cards


def cached_cards() -> tuple[list[Card] | None, bool]:
    """What the last query found (None if never asked) and whether it is older than CACHE_SECONDS.

    For a caller that must not wait for nvidia-smi (the window's event loop): it uses this answer and asks
    ``local_cards(fresh=True)`` again in the background when it is stale."""
    if _cache is None:
        return None, True
    return _cache[1], time.monotonic() - _cache[0] >= CACHE_SECONDS


def training_card(fresh: bool = False) -> Card | None:
    """The card a job trains on: the first (CUDA's device 0 when CUDA_VISIBLE_DEVICES is unset)."""
    cards = local_cards(fresh)
    return cards[0] if cards else None
