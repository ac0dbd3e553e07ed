"""Whether each torch on this machine (the app's own, each installed engine's) runs on its GPUs.

torch is never imported here: the interpreter that carries it is asked in a subprocess, with a timeout, for its
version, CUDA version and the architectures it has kernels for; core/torch_builds.py judges the answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from isengard_desktop.core.doctor import FAIL, NOTHING_TO_DO, OK, WARN, Check, Facts

PROBE = "import torch, json; print(json.dumps([torch.__version__, torch.version.cuda, torch.cuda.get_arch_list()]))"
TIMEOUT_S = 90  # importing torch from a cold disk takes a while on a busy machine


@dataclass(frozen=True)
class TorchInfo:
    version: str
    cuda: str | None
    arch_list: list[str]


def probe(python: Path | str, timeout: float = TIMEOUT_S) -> TorchInfo | str:
    """What torch ``python`` carries, or one sentence saying why it could not be asked."""
    try:
        out = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return f"{python} did not answer within {timeout:.0f} s"
    except OSError as exc:
        return f"{python} cannot be started ({exc.strerror or exc})"
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return f"{python} cannot import torch ({last[:200]})"
    try:
        version, cuda, arch_list = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return f"{python} gave an answer that is not torch's ({out.stdout[:100]!r})"
    return TorchInfo(str(version), cuda, list(arch_list or []))


_APP_ANSWERS: dict[tuple[str, int], TorchInfo] = {}
_APP_LOCK = threading.Lock()


def probe_app() -> TorchInfo | str:
    """The app's own torch, asked once per install: the answer is kept until torch/version.py changes (a reinstall
    rewrites it), which ``find_spec`` tells without importing torch."""
    from importlib.util import find_spec

    spec = find_spec("torch")
    if spec is None or spec.origin is None:
        return f"{sys.executable} has no torch installed"
    version_file = Path(spec.origin).with_name("version.py")
    try:
        key = (str(version_file), version_file.stat().st_mtime_ns)
    except OSError:
        return probe(sys.executable)
    with _APP_LOCK:  # the driver check and the torch check ask at the same time: one probe for both
        if key not in _APP_ANSWERS:
            answer = probe(sys.executable)
            if isinstance(answer, str):
                return answer
            _APP_ANSWERS[key] = answer
        return _APP_ANSWERS[key]


def _engine_pythons(facts: Facts) -> dict[str, Path]:
    """The python of each installed engine (the dev variables first: found as the engine finds it)."""
    from isengard_desktop.core.engines import upstream
    from isengard_desktop.core.engines_status import pins

    found = {}
    for name in pins()["engines"]:
        located = upstream(name).locate(facts.ctx.volume.engine_dir(name), name)
        if not isinstance(located, str):
            found[name] = located[1]
    return found


def judge(label: str, info: TorchInfo | str, facts: Facts, fix: str, action: str | None) -> Check:
    from isengard_desktop.core.torch_builds import supports

    name = f"PyTorch ({label})"
    if isinstance(info, str):
        return Check(name, FAIL, f"{info}.", fix, action)
    build = f"torch {info.version}" + (f" (CUDA {info.cuda})" if info.cuda else " (CPU build)")
    if not facts.gpus:
        status = OK if facts.fast_test or info.cuda is None else WARN
        return Check(name, status, f"{build}; no NVIDIA GPU here, so it runs on the CPU (fast-test).",
                     NOTHING_TO_DO if status == OK else "Start the app in fast-test mode on a machine without a GPU.")
    verdicts = [(gpu, *supports(gpu, info.cuda, info.arch_list)) for gpu in facts.gpus]
    failing = [why for _gpu, ok, why in verdicts if not ok]
    if not failing:
        return Check(name, OK, f"{build} runs on {', '.join(g.name for g in facts.gpus)}.", NOTHING_TO_DO)
    some_ok = len(failing) < len(verdicts)
    return Check(name, WARN if some_ok else FAIL, f"{build}: {'; '.join(failing)}.", fix, action)


def app_fix(facts: Facts, version: str) -> str:
    """The command that puts the right build into the app's own environment."""
    from isengard_desktop.core.torch_builds import TorchBuildError, choose_build, rules

    base = version.split("+")[0]
    try:
        build = choose_build(facts.gpus, base)
    except TorchBuildError as exc:
        return str(exc)
    if getattr(sys, "frozen", False):
        # The bundle carries its own torch and no pip: the fix is the download built for CUDA, not a command.
        return (f"This Isengard Desktop bundle was built with a torch that cannot use this card; it needs a bundle "
                f"built with the {build.tag} torch (README, 'Build the installer bundle', on a machine with that "
                "torch installed) or the app run from source, then run the doctor again.")
    command = f"{sys.executable} -m pip install {build.requirement('torch', base)} {' '.join(build.pip_args)}"
    bnb = f"{sys.executable} -m pip install bitsandbytes=={rules()['bitsandbytes']['version']}"
    return (f"Reinstall the app's torch for this card: in a terminal run `{command}`, then `{bnb}` for the "
            "low-VRAM presets.")


def torch_checks(facts: Facts) -> list[Check]:
    from concurrent.futures import ThreadPoolExecutor

    pythons = _engine_pythons(facts)
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="doctor-torch") as pool:
        futures = {"app": pool.submit(probe_app), **{name: pool.submit(probe, py) for name, py in pythons.items()}}
        answers = {name: future.result() for name, future in futures.items()}
    checks = []
    for label, info in answers.items():
        if label == "app":
            version = info.version if isinstance(info, TorchInfo) else "2.13.0"
            fix = app_fix(facts, version)
            # The button copies the command; when no build runs here, the fix is the driver update (no button).
            checks.append(judge("app", info, facts, fix, "install_torch:app" if "`" in fix else None))
        else:
            fix = (f"Reinstall {label} from Settings → Engines: the install puts in the torch build for this card "
                   f"(or run `isengard engines install {label}`).")
            checks.append(judge(label, info, facts, fix, f"install_engine:{label}"))
    return checks
