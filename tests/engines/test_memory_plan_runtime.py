"""No silent fallbacks: the built-in engine refuses the CPU for FLUX.1-dev-sized models or when a driver is present,
and this machine's cards (memory in use, display attached) are read from nvidia-smi — here a stand-in script on
PATH that answers the two queries the way the real tool does for a desktop RTX 3090."""

from __future__ import annotations

from pathlib import Path

import pytest

from engines.diffusers import models
from engines.diffusers.errors import TrainingError
from isengard_desktop.base import gpu_cards, mode


def test_flux_is_never_trained_on_the_cpu_by_accident() -> None:
    if models.torch.cuda.is_available() or mode.detect_gpu().present:
        pytest.skip("this machine has a GPU")
    with pytest.raises(TrainingError, match="GB of RAM in fp32"):
        models.resolve_runtime("auto", 1, transformer_params=11_901_477_020)
    assert models.resolve_runtime("auto", 1, transformer_params=81_664).device.type == "cpu"  # the tiny model
    assert models.resolve_runtime("cpu", 1, transformer_params=11_901_477_020).device.type == "cpu"  # asked for


def test_a_driver_with_a_cpu_torch_is_refused_with_the_doctors_fix(desktop_3090) -> None:
    if models.torch.cuda.is_available():
        pytest.skip("this torch has CUDA")
    with pytest.raises(TrainingError, match="RTX 3090.*isengard doctor"):
        models.resolve_runtime("auto", 1, transformer_params=81_664)


def test_the_local_card_says_it_drives_a_display(desktop_3090) -> None:
    card = gpu_cards.training_card(fresh=True)
    assert card is not None and card.display and card.name == "NVIDIA GeForce RTX 3090"
    assert round(card.total_gb, 1) == 24.0 and round(card.used_gb, 2) == 1.0
    from isengard_desktop.core.training_plan import plan_for_preset

    plan = plan_for_preset("aitoolkit", "quick", card)
    assert plan.settings["low_vram"] and "drives a display" in plan.reason


def test_a_resumed_run_keeps_the_resolutions_its_first_start_planned(tiny_flux: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from engines.diffusers.preflight import memory_plan, save_plan
    from engines.interface import DatasetItem, TrainingSpec
    from isengard_desktop.base.memory_plan import Card

    spec = TrainingSpec(base_model=str(tiny_flux), base_model_name="tiny", output_dir=str(tmp_path / "run"),
                        dataset=[DatasetItem("x.png", "ohwx")], trigger_word="ohwx", lora_name="ada",
                        resolutions=[512, 768, 1024], sample_prompts=["ohwx"], low_vram=True)
    (tmp_path / "run").mkdir()
    first = memory_plan(spec, Card.nominal(4.7), bitsandbytes=True)  # the tiny weights: activations decide
    assert first.verdict == "adjusted" and first.settings["resolutions"] == [512, 768]
    save_plan(spec, first)
    # Resumed when the card has more room: the data order of the checkpoints needs the same buckets.
    again = memory_plan(replace(spec, resume=True), Card.nominal(48), bitsandbytes=True)
    assert again.settings["resolutions"] == [512, 768]


def test_aitoolkit_nan_loss_is_caught() -> None:
    from engines.aitoolkit import progress
    from engines.aitoolkit.engine import _Run
    from engines.interface import TrainingSpec

    line = "ada:  50%|#####     | 3/6 [00:14<00:14,  4.70s/it, lr: 1.0e-04 loss: nan]"
    bar = progress.parse_bar(line, "ada")
    assert bar is not None and bar.step == 3 and bar.loss != bar.loss
    events: list[dict] = []
    run = _Run(TrainingSpec(base_model="b", base_model_name="b", output_dir="o", dataset=[], trigger_word="t",
                            lora_name="ada"), events.append, Path("/nowhere"))
    run.handle(line)
    assert run.nan_step == 3 and not events  # no NaN progress event; the engine stops the run and says why
