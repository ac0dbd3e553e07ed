"""Machine load for the Training tab: GPU utilisation, VRAM and temperature through NVML, or CPU and RAM."""

from __future__ import annotations

from typing import Any

_nvml_ready: bool | None = None


def _nvml() -> bool:
    global _nvml_ready
    if _nvml_ready is None:
        try:
            import pynvml

            pynvml.nvmlInit()
            _nvml_ready = pynvml.nvmlDeviceGetCount() > 0
        except Exception:  # no driver, no GPU, or no library: fall back to CPU figures
            _nvml_ready = False
    return _nvml_ready


def sample() -> dict[str, Any]:
    import psutil

    memory = psutil.virtual_memory()
    data: dict[str, Any] = {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "ram_used_mb": round((memory.total - memory.available) / 2**20),
        "ram_total_mb": round(memory.total / 2**20),
    }
    if _nvml():
        import pynvml

        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        info = pynvml.nvmlDeviceGetMemoryInfo(handle)
        data.update(
            gpu_util=pynvml.nvmlDeviceGetUtilizationRates(handle).gpu,
            vram_used_mb=round(info.used / 2**20),
            vram_total_mb=round(info.total / 2**20),
            temp_c=pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU),
        )
    return data
