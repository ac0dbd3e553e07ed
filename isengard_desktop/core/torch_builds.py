"""Which PyTorch build runs on this machine's NVIDIA GPUs: the rule, as pure functions over resources/torch_builds.json.

The rule, in two halves (the data and its sources are in the JSON file):

1. Driver -> newest CUDA runtime it runs. Every CUDA toolkit publishes the minimum driver it needs (Linux and
   Windows figures differ: e.g. CUDA 12.8 needs 570.26 on Linux and 570.65 on Windows, 13.0 needs 580.65.06 and
   580.88, 13.2 needs 595.45.04 on Linux). A driver runs a torch build of CUDA X.Y when it is at least X.Y's
   minimum. (Minor-version compatibility would start some newer runtimes on older drivers of the same major
   branch, without PTX JIT; the rule does not count on it.)
2. Compute capability -> builds that carry its kernels. Each torch release publishes a few CUDA builds, each
   compiled for a list of architectures: for torch 2.12-2.14, cu126 carries Maxwell 5.0 to Hopper 9.0 and is the
   only one with Pascal (GTX 10xx) and Volta (V100); cu130 and cu132 carry Turing 7.5 to Blackwell 10.0/12.0 (+PTX).
   A card runs a build with its own architecture or an older one of the same major version (sm_86 kernels run
   on an RTX 4090, 8.9), or PTX for an architecture not newer than the card.

``choose_build`` prefers the build PyPI ships for that torch release, then stable builds from the newest CUDA
down, then legacy and experimental ones; the first that every GPU can run with this driver wins. When cards of
different generations share no build, the build for the card with the most memory is chosen and the others are
named as unsupported. When nothing fits, ``TorchBuildError`` says what to do (update the driver to N or newer).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from isengard_desktop.base.errors import IsengardError
from isengard_desktop.base.nvidia import Gpu
from isengard_desktop.base.resources import resource_path

INDEX = "https://download.pytorch.org/whl/"
STATUS_ORDER = {"stable": 0, "legacy": 1, "experimental": 2}


class TorchBuildError(IsengardError):
    """No PyTorch build runs on this machine's GPUs as they are; the message says what to change."""


@dataclass(frozen=True)
class TorchBuild:
    """The torch build to install: ``pip install <requirement(...)> <pip_args>``."""

    tag: str  # "cu130", "cu126", "cpu"
    index_url: str
    pip_args: tuple[str, ...]  # the index options for pip
    reason: str  # one sentence: why this build
    cuda: str | None = None
    unsupported: tuple[str, ...] = field(default=())  # GPUs present that this build cannot run on

    def requirement(self, package: str, version: str) -> str:
        """``torch==2.14.1+cu130``: the exact build, so no other wheel (a CPU one on local disk) can stand in."""
        return f"{package}=={version}+{self.tag}"


def version_key(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.strip().split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


@cache
def rules() -> dict[str, Any]:
    return json.loads(resource_path("torch_builds.json").read_text(encoding="utf-8"))


def _system(system: str | None) -> str:
    system = system or sys.platform
    return "windows" if system.startswith(("win", "cygwin")) else "linux"


def minimum_driver(cuda: str, system: str | None = None) -> str | None:
    """NVIDIA's minimum driver for CUDA ``cuda`` ("12.8") on this system, or None if not published."""
    for row in rules()["drivers"]["table"]:
        if row["cuda"] == cuda:
            return row[_system(system)]
    return None


def newest_cuda(driver_version: str, system: str | None = None) -> str | None:
    """The newest CUDA runtime (of the table) that ``driver_version`` runs, or None if older than all."""
    for row in rules()["drivers"]["table"]:  # newest first
        minimum = row[_system(system)]
        if minimum and version_key(driver_version) >= version_key(minimum):
            return row["cuda"]
    return None


def _arches(arch_list: list[str]) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """(SASS architectures, PTX architectures) from "sm_86"/"compute_120" (torch) or "8.6"/"12.0+PTX" (the JSON)."""
    sass, ptx = set(), set()
    for item in arch_list:
        text = item.strip()
        if text.startswith(("sm_", "compute_")):
            digits = "".join(ch for ch in text.split("_", 1)[1] if ch.isdigit())
            if len(digits) < 2:
                continue
            cc = (int(digits[:-1]), int(digits[-1]))
            (ptx if text.startswith("compute_") else sass).add(cc)
            continue
        base, _, extra = text.partition("+")
        if base.count(".") != 1:
            continue
        cc = tuple(int(p) for p in base.split("."))
        sass.add(cc)  # type: ignore[arg-type]
        if extra.upper() == "PTX":
            ptx.add(cc)  # type: ignore[arg-type]
    return sass, ptx


def _runs_kernels(cc: tuple[int, int], arch_list: list[str]) -> bool:
    sass, ptx = _arches(arch_list)
    return any(a[0] == cc[0] and a[1] <= cc[1] for a in sass) or any(p <= cc for p in ptx)


def supports(gpu: Gpu, torch_cuda: str | None, arch_list: list[str], system: str | None = None) -> tuple[bool, str]:
    """Whether a torch built for CUDA ``torch_cuda`` with kernels for ``arch_list`` runs on ``gpu``, and why."""
    if not torch_cuda:
        return False, "this torch is a CPU-only build"
    if gpu.compute_capability is None:
        return False, f"the compute capability of the {gpu.name} is unknown"
    if not _runs_kernels(gpu.compute_capability, arch_list):
        kept = ", ".join(sorted(arch_list)) or "none"
        return False, (f"this CUDA {torch_cuda} build has no kernels for the {gpu.name} "
                       f"({gpu.generation}, compute capability {gpu.cc}; it carries {kept})")
    minimum = minimum_driver(_major_minor(torch_cuda), system)
    if minimum and version_key(gpu.driver_version) < version_key(minimum):
        return False, (f"CUDA {torch_cuda} needs NVIDIA driver {minimum} or newer; this machine has "
                       f"{gpu.driver_version}")
    return True, f"the CUDA {torch_cuda} build runs on the {gpu.name} (compute capability {gpu.cc})"


def _major_minor(cuda: str) -> str:
    return ".".join(cuda.split(".")[:2])


def release(torch_version: str) -> dict[str, Any]:
    key = ".".join(torch_version.split("+")[0].split(".")[:2])
    releases = rules()["torch"]["releases"]
    if key not in releases:
        raise TorchBuildError(f"There is no record of the CUDA builds of torch {torch_version}; add them to "
                              f"resources/torch_builds.json (known: {', '.join(sorted(releases))}).")
    return releases[key]


def _candidates(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    builds = data["builds"]
    return sorted(builds.items(), key=lambda item: (item[0] != data["pypi"], STATUS_ORDER.get(item[1]["status"], 3),
                                                     tuple(-n for n in version_key(item[1]["cuda"]))))


def _build(tag: str, cuda: str | None, reason: str, unsupported: tuple[str, ...] = ()) -> TorchBuild:
    url = INDEX + tag
    return TorchBuild(tag, url, ("--index-url", url), reason, cuda, unsupported)


def choose_build(gpus: list[Gpu], torch_version: str, system: str | None = None) -> TorchBuild:
    """The build of ``torch_version`` to install for ``gpus`` (all on one driver), or TorchBuildError with the fix."""
    if not gpus:
        return _build("cpu", None, "No NVIDIA GPU: the CPU build.")
    data = release(torch_version)
    driver = min((g.driver_version for g in gpus), key=version_key)
    candidates = _candidates(data)

    def driver_ok(build: dict[str, Any]) -> bool:
        minimum = minimum_driver(build["cuda"], system)
        return bool(minimum) and version_key(driver) >= version_key(minimum)

    def runs(build: dict[str, Any], gpu: Gpu) -> bool:
        return gpu.compute_capability is not None and _runs_kernels(gpu.compute_capability, build["arches"])

    names = " and ".join(f"{g.name} ({g.cc})" for g in gpus)
    for tag, build in candidates:
        if driver_ok(build) and all(runs(build, g) for g in gpus):
            return _build(tag, build["cuda"], f"torch {torch_version} {tag} (CUDA {build['cuda']}) carries kernels for "
                                              f"{names} and runs on driver {driver}.")
    # No build runs every card: serve the card with the most memory, name the others.
    main = max(gpus, key=lambda g: g.memory_total_mib or 0)
    for tag, build in candidates:
        if driver_ok(build) and runs(build, main):
            others = tuple(g.name for g in gpus if not runs(build, g))
            return _build(tag, build["cuda"],
                          f"No torch {torch_version} build carries kernels for every GPU here; {tag} runs the "
                          f"{main.name} ({main.cc}) but not the {', '.join(others)}, which jobs will not use.", others)
    fitting = [(tag, b) for tag, b in candidates if runs(b, main)]
    if fitting:
        needs = sorted((minimum_driver(b["cuda"], system) for _, b in fitting if minimum_driver(b["cuda"], system)),
                       key=version_key)
        if needs:
            raise TorchBuildError(f"The NVIDIA driver {driver} is too old for every torch {torch_version} build that "
                                  f"runs the {main.name}; update the NVIDIA driver to {needs[0]} or newer.")
        raise TorchBuildError(f"NVIDIA publishes no minimum driver on this system for the torch {torch_version} builds "
                              f"that run the {main.name}; install torch {torch_version} by hand from {INDEX}.")
    raise TorchBuildError(f"No torch {torch_version} build has kernels for the {main.name} ({main.generation}, "
                          f"compute capability {main.cc}); this card cannot run the app's GPU jobs with this torch, "
                          "so use a newer card or the fast-test mode on the CPU.")
