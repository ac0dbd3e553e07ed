"""Production or fast-test mode (SPEC §5), and whether a CUDA GPU is present — without importing torch.

The GUI process must not load torch (it belongs to worker processes), so the GPU is detected the
way the NVIDIA driver exposes it: ``/proc/driver/nvidia/gpus`` on Linux, ``nvidia-smi -L`` elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from isengard_desktop.base.errors import ValidationError

PRODUCTION = "production"
FAST_TEST = "fast-test"
MODES = (PRODUCTION, FAST_TEST)


@dataclass(frozen=True)
class GpuInfo:
    present: bool
    names: tuple[str, ...] = ()
    detail: str = ""

    @property
    def summary(self) -> str:
        if self.present:
            return ", ".join(self.names) or "NVIDIA GPU"
        return "No CUDA GPU" + (f" ({self.detail})" if self.detail else "")


@lru_cache(maxsize=1)
def detect_gpu() -> GpuInfo:
    """The CUDA GPUs this machine has, found through the NVIDIA driver."""
    proc_dir = Path("/proc/driver/nvidia/gpus")
    if sys.platform.startswith("linux") and proc_dir.is_dir():
        names = []
        for info in sorted(proc_dir.glob("*/information")):
            for line in info.read_text(errors="replace").splitlines():
                if line.startswith("Model:"):
                    names.append(line.split(":", 1)[1].strip())
        if names:
            return GpuInfo(True, tuple(names))
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return GpuInfo(False, detail="no NVIDIA driver found")
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return GpuInfo(False, detail=f"nvidia-smi failed: {exc}")
    names = tuple(
        line.split(":", 1)[1].split("(UUID")[0].strip() for line in out.stdout.splitlines() if line.startswith("GPU ")
    )
    return GpuInfo(bool(names), names, "" if names else "nvidia-smi lists no GPU")


QUERY = "name,driver_version,memory.total,memory.used,compute_cap"


def query_gpus() -> list:
    """Each NVIDIA GPU with its driver, memory and compute capability (a list of nvidia.Gpu; empty without one).

    Asked of ``nvidia-smi --query-gpu`` (about 50 ms, no CUDA context), else of NVML through nvidia-ml-py."""
    from isengard_desktop.base.nvidia import parse_nvidia_smi

    smi = shutil.which("nvidia-smi")
    if smi is not None:
        try:
            out = subprocess.run([smi, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"], capture_output=True,
                                 text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            out = None
        if out is not None and out.returncode == 0:
            gpus = parse_nvidia_smi(out.stdout)
            if gpus:
                return gpus
    return _query_nvml()


def _query_nvml() -> list:
    from isengard_desktop.base.nvidia import Gpu

    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []  # no driver: no GPU
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            cc = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            gpus.append(Gpu(name.decode() if isinstance(name, bytes) else name, driver,
                            memory.total // 2**20, memory.used // 2**20, (int(cc[0]), int(cc[1]))))
        return gpus
    except pynvml.NVMLError:
        return []
    finally:
        pynvml.nvmlShutdown()


def resolve_mode() -> str:
    """``ISENGARD_MODE`` if set; otherwise production with a CUDA GPU, fast-test without."""
    value = os.environ.get("ISENGARD_MODE", "").strip().lower()
    if value:
        if value not in MODES:
            raise ValidationError(
                f"ISENGARD_MODE is {value!r}, which is not a mode; use 'production' or 'fast-test'."
            )
        return value
    return PRODUCTION if detect_gpu().present else FAST_TEST


def describe_mode(mode: str) -> str:
    """One sentence for the status bar and the CLI."""
    if mode == FAST_TEST:
        reason = "" if os.environ.get("ISENGARD_MODE") else f" ({detect_gpu().summary})"
        return (
            f"Fast-test mode{reason}: a tiny built-in model trains for real on the CPU in seconds; "
            "its sample images are noise."
        )
    return "Production mode: real engines and real base models on the GPU."
