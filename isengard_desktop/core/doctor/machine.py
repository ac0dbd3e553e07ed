"""The doctor's checks of the machine: the volume (writable, free space for the next step), the GPU (VRAM, compute
capability), its driver, and the RAM the chosen preset needs."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psutil

from isengard_desktop.core.doctor import FAIL, NOTHING_TO_DO, OK, WARN, Check, Facts
from isengard_desktop.core.units import human_bytes

GB = 1024**3  # RAM, as the system reports it
DISK_GB = 1000**3  # disk and downloads, as the hub and file managers count them
APP_TORCH = "2.13.0"  # pyproject's pin, when the app's own torch cannot be asked
DEFAULT_PRESET = "balanced"
FAST_TEST_DISK_GB = 1  # a tiny-model run writes a few MB; leave room for logs and images


def _writable(folder: Path) -> str | None:
    """Why ``folder`` cannot take a new file, or None when it can."""
    if folder.exists() and not folder.is_dir():
        return f"{folder} is a file where a folder should be"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-", delete=True) as handle:
            handle.write(b"isengard")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        return f"{folder} cannot be written ({exc.strerror or exc})"
    return None


def _preset(name: str):
    from isengard_desktop.core.presets import load_preset

    return load_preset(name)


def _chosen_preset_name(facts: Facts) -> str:
    return getattr(facts.ctx.settings, "training_preset", None) or DEFAULT_PRESET


def _missing_model_bytes(facts: Facts) -> tuple[int, str]:
    """Bytes still to download for the default engines to have a base model (0 if one is there or unknown).

    Counted by the download plan, so a file two engines read (or one found elsewhere and linked) counts once."""
    from isengard_desktop.core.models import inventory, planning

    volume, extra = facts.ctx.volume, facts.ctx.extra_model_dirs()
    try:
        statuses = inventory.status(volume, extra)
    except Exception:  # the model check reports the model manager's own problems
        return 0, ""
    engines = {facts.ctx.settings.default_training_engine, facts.ctx.settings.default_image_engine}
    best = None
    for model in statuses:
        if model.model.role != "base":  # an optional helper model (face embedder, captioner) is not a base model
            continue
        wanted = [name for name in model.engines if name in engines] or list(model.engines)
        if any(model.engines[name].ready for name in wanted):
            return 0, ""
        try:
            needed = planning.plan_download(volume, extra, model.model.id, wanted, verify_reuse=False).download_bytes
        except Exception:
            continue
        if best is None or needed < best[0]:
            best = (needed, model.model.title)
    return best if best else (0, "")


def volume_checks(facts: Facts) -> list[Check]:
    volume = facts.ctx.volume
    problems = [why for why in (_writable(folder) for folder in volume.folders()) if why]
    if problems:
        writable = Check("Volume folder", FAIL, "; ".join(problems) + ".",
                         f"Choose another volume folder in Settings, or make {volume.root} writable for your user "
                         "(and put back any folder that was replaced by a file).", "open_settings:volume")
    else:
        writable = Check("Volume folder", OK, f"{volume.root} can be written.", NOTHING_TO_DO)
    try:
        free = shutil.disk_usage(volume.root).free
    except OSError as exc:
        return [writable, Check("Free disk space", FAIL, f"The free space of {volume.root} cannot be read ({exc}).",
                                "Check that the disk holding the volume folder is connected.", "open_settings:volume")]
    if facts.fast_test:
        need, what = FAST_TEST_DISK_GB * DISK_GB, "a fast-test run on the tiny model"
    else:
        preset = _preset(_chosen_preset_name(facts))
        need = int(preset.predicted.get("disk_gb", 3) * DISK_GB)
        what = f"training a LoRA with the {preset.label} preset ({preset.predicted.get('disk_gb', 3)} GB)"
        missing, title = _missing_model_bytes(facts)
        if missing:
            need += missing
            what = f"downloading {title} ({human_bytes(missing)}), then " + what
    detail = f"{human_bytes(free)} free on the disk of the volume; the next step, {what}, needs {human_bytes(need)}."
    if free < need:
        space = Check("Free disk space", FAIL, detail,
                      f"Free at least {human_bytes(need - free)} on that disk (empty the volume's trash, delete old "
                      "outputs), or choose a volume folder on a larger disk in Settings.", "open_settings:volume")
    else:
        space = Check("Free disk space", OK, detail, NOTHING_TO_DO)
    return [writable, space]


def gpu_checks(facts: Facts) -> list[Check]:
    from isengard_desktop.base.mode import detect_gpu
    from isengard_desktop.core.torch_builds import TorchBuildError, choose_build, newest_cuda, version_key

    if not facts.gpus:
        why = detect_gpu().summary
        if facts.fast_test:
            return [Check("GPU", OK, f"{why}: fast-test mode runs the tiny built-in model on the CPU, which needs "
                                     "no GPU.",
                          "To train real LoRAs, use a machine with an NVIDIA GPU of 12 GB or more (24 GB for "
                          "AI-Toolkit), or a remote one.")]
        return [Check("GPU", FAIL, f"{why}, but production mode trains and generates on an NVIDIA GPU.",
                      "Install the NVIDIA driver if this machine has an NVIDIA card, or start the app in fast-test "
                      "mode (ISENGARD_MODE=fast-test).")]
    lines = [f"{g.name}: {g.vram_gb if g.vram_gb is not None else '?'} GB VRAM, {g.generation} "
             f"(compute capability {g.cc})" for g in facts.gpus]
    checks = [Check("GPU", OK, "; ".join(lines) + ".", NOTHING_TO_DO)]
    checks.append(_vram_check(facts))
    driver = min((g.driver_version for g in facts.gpus), key=version_key)
    cuda = newest_cuda(driver)
    detail = f"NVIDIA driver {driver}; it runs CUDA {cuda} builds and older." if cuda else f"NVIDIA driver {driver}."
    from isengard_desktop.core.doctor.torch_probe import TorchInfo, probe_app

    app = probe_app()
    torch_version = app.version.split("+")[0] if isinstance(app, TorchInfo) else APP_TORCH
    try:
        build = choose_build(facts.gpus, torch_version)
    except TorchBuildError as exc:
        fix = str(exc).split("; ", 1)[-1]
        checks.append(Check("NVIDIA driver", FAIL, f"{detail} {exc}", fix[:1].upper() + fix[1:]))
    else:
        if build.unsupported:
            checks.append(Check("NVIDIA driver", WARN, f"{detail} {build.reason}",
                                f"Jobs run on the supported card; to use the {', '.join(build.unsupported)} too, it "
                                "needs a torch build of its own (not possible in one environment)."))
        else:
            checks.append(Check("NVIDIA driver", OK, f"{detail} Torch's {build.tag} build runs on it.", NOTHING_TO_DO))
    return checks


def _vram_check(facts: Facts) -> Check:
    """Which presets each training engine can run on the largest card, by the memory plan (its total memory: what
    else holds the card now changes from minute to minute; the Training tab plans with that)."""
    from isengard_desktop.base.memory_plan import Card
    from isengard_desktop.core.training_plan import presets_on_card

    gpu = max(facts.gpus, key=lambda g: g.vram_gb or 0)
    names = {"aitoolkit": "AI-Toolkit", "diffusers": "the built-in engine"}
    runs, smallest = [], None
    for engine, plans in presets_on_card(Card.nominal(gpu.vram_gb or 0)).items():
        labels = []
        for name, plan in plans.items():
            if plan.verdict != "refused":
                labels.append(_preset(name).label + (" (adjusted)" if plan.verdict == "adjusted" else ""))
            elif plan.needs_gb and (smallest is None or plan.needs_gb < smallest[0]):
                smallest = (plan.needs_gb, names[engine], _preset(name).label)
        if labels:
            runs.append(f"{names[engine]} runs {', '.join(labels)}")
    if runs:
        return Check("VRAM", OK, f"{gpu.vram_gb} GB: " + "; ".join(runs) + ".", NOTHING_TO_DO)
    need = f" needs about {smallest[0]:.0f} GB ({smallest[1]}, {smallest[2]})" if smallest else " is too small"
    return Check("VRAM", WARN if facts.fast_test else FAIL,
                 f"{gpu.vram_gb} GB of VRAM; the smallest FLUX.1-dev training{need}.",
                 "Train on a larger card, for example on a remote GPU machine (Settings).")


def ram_check(facts: Facts) -> list[Check]:
    total = psutil.virtual_memory().total
    if facts.fast_test:
        return [Check("RAM", OK, f"{total / GB:.1f} GB; fast-test runs need about 1 GB.", NOTHING_TO_DO)]
    chosen = _preset(_chosen_preset_name(facts))
    need = chosen.predicted.get("ram_gb", 0)
    # 32 GB of RAM shows as ~31.3 GiB once the firmware and the GPU take their share: allow 10 %.
    if total >= need * GB * 0.9:
        return [Check("RAM", OK, f"{total / GB:.1f} GB; the {chosen.label} preset needs about {need} GB.",
                      NOTHING_TO_DO)]
    smaller = [p.label for p in (_preset(n) for n in ("quick", "balanced", "high"))
               if total >= p.predicted.get("ram_gb", 0) * GB * 0.9]
    fix = (f"Choose the {smaller[0]} preset, or close other programs while training." if smaller else
           f"Add RAM (at least {need} GB), or train on a remote GPU machine (Settings).")
    return [Check("RAM", WARN if smaller else FAIL,
                  f"{total / GB:.1f} GB; the {chosen.label} preset needs about {need} GB (loading FLUX.1-dev).", fix)]
