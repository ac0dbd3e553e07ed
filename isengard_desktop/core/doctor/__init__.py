"""The doctor: every check of the machine, the volume, the GPU, its driver and torch builds, the engines, the models,
the Hugging Face token and ComfyUI's network exposure, each with a fix a person can follow.

``run_checks`` is what ``isengard doctor`` and the Settings page call. It never imports torch: torch builds are
asked about in a subprocess of the interpreter that carries them (machine.py, torch_probe.py, software.py hold
the checks). Slow checks (an environment's python importing torch takes seconds) run side by side on threads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from isengard_desktop.context import AppContext

log = structlog.get_logger(__name__)

OK, WARN, FAIL = "ok", "warn", "fail"
NOTHING_TO_DO = "Nothing to do."


@dataclass
class Check:
    name: str
    status: str  # "ok" | "warn" | "fail"
    detail: str
    fix: str
    action: str | None = None  # "install_engine:<name>", "download_model:<model>:<engine>", "set_token", ...

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Facts:
    """What every check may look at, gathered once per run."""

    ctx: AppContext
    gpus: list  # nvidia.Gpu
    fast_test: bool
    online: bool


def run_checks(ctx: AppContext, online: bool = True, *, gpus: list | None = None) -> list[Check]:
    """Every check, in the order a person reads them. ``gpus`` replaces the probe of this machine's GPUs (tests)."""
    from isengard_desktop.base.mode import FAST_TEST, query_gpus
    from isengard_desktop.core.doctor import machine, software, torch_probe

    facts = Facts(ctx, query_gpus() if gpus is None else list(gpus), ctx.mode == FAST_TEST, online)
    groups = [
        lambda: machine.volume_checks(facts),
        lambda: machine.gpu_checks(facts),
        lambda: machine.ram_check(facts),
        lambda: torch_probe.torch_checks(facts),
        lambda: software.engine_checks(facts),
        lambda: software.model_checks(facts),
        lambda: software.token_check(facts),
        lambda: software.comfyui_check(facts),
    ]
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="doctor") as pool:
        futures = [pool.submit(_guarded, group) for group in groups]
        checks = [check for future in futures for check in future.result()]
    log.info("doctor_ran", ok=sum(c.status == OK for c in checks), warn=sum(c.status == WARN for c in checks),
             fail=sum(c.status == FAIL for c in checks), online=online, gpus=len(facts.gpus))
    return checks


def _guarded(group) -> list[Check]:
    """A check that breaks is itself reported, and the others still run."""
    try:
        return group()
    except Exception as exc:  # a doctor that crashes on a broken machine would be no doctor at all
        log.error("doctor_check_crashed", error=repr(exc))
        return [Check("Doctor", WARN, f"A check could not run ({type(exc).__name__}: {exc}).",
                      "Export a debug bundle from Jobs & logs and report it; the other checks are still valid.")]


def summary(checks: list[Check]) -> dict[str, Any]:
    counts = {status: sum(c.status == status for c in checks) for status in (OK, WARN, FAIL)}
    if counts[FAIL]:
        text = f"{counts[FAIL]} problem{'s' * (counts[FAIL] > 1)} to fix"
    else:
        text = "Everything needed works"
    if counts[WARN]:
        text += f", {counts[WARN]} warning{'s' * (counts[WARN] > 1)}"
    return {**counts, "text": text + "."}


def report(checks: list[Check]) -> dict[str, Any]:
    """The JSON object of ``isengard doctor --json``."""
    return {"checks": [c.to_json() for c in checks], "summary": summary(checks)}
