"""An NVIDIA GPU as ``nvidia-smi`` (or NVML) reports it, and the parsing of nvidia-smi's answer.

In the base layer because both sides ask: the app (doctor, torch builds, remotes, the memory plan's cards) and the
engines (GPU detection in base/mode.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Gpu:
    """One NVIDIA GPU as nvidia-smi (or NVML) reports it."""

    name: str
    driver_version: str
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None
    compute_capability: tuple[int, int] | None = None

    @property
    def vram_gb(self) -> float | None:
        return None if self.memory_total_mib is None else round(self.memory_total_mib / 1024, 1)

    @property
    def cc(self) -> str:
        return "unknown" if self.compute_capability is None else "{}.{}".format(*self.compute_capability)

    @property
    def generation(self) -> str:
        return generation(self.compute_capability)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "driver_version": self.driver_version, "memory_total_mib": self.memory_total_mib,
                "memory_used_mib": self.memory_used_mib, "compute_capability": self.cc}


def generation(cc: tuple[int, int] | None) -> str:
    if cc is None:
        return "unknown"
    names = {5: "Maxwell", 6: "Pascal", 8: "Ampere", 9: "Hopper", 10: "Blackwell", 12: "Blackwell"}
    if cc[0] == 7:
        return "Turing" if cc[1] >= 5 else "Volta"
    if cc == (8, 9):
        return "Ada Lovelace"
    return names.get(cc[0], "unknown")


def _number(text: str) -> int | None:
    text = text.strip()
    try:
        return int(float(text))
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


def parse_nvidia_smi(csv_text: str) -> list[Gpu]:
    """The GPUs in the answer of ``nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,compute_cap
    --format=csv,noheader,nounits``; unreadable lines are skipped."""
    gpus = []
    for line in csv_text.splitlines():
        if not line.strip() or line.lower().startswith("name,"):
            continue
        fields = [part.strip() for part in line.rsplit(",", 4)]  # a name may hold a comma; the numbers do not
        if len(fields) != 5:
            continue
        name, driver, total, used, cap = fields
        cc = None
        if cap.count(".") == 1 and all(p.isdigit() for p in cap.split(".")):
            major, minor = cap.split(".")
            cc = (int(major), int(minor))
        gpus.append(Gpu(name, driver, _number(total), _number(used), cc))
    return gpus
