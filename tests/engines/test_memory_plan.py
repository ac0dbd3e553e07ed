"""The GPU memory plan as pure functions: against published measurements (resources/memory_plan.json "checks",
each with its stated tolerance) and on the recorded nvidia-smi answers of real cards."""

from __future__ import annotations

from pathlib import Path

import pytest

from isengard_desktop.base import memory_plan as mp
from isengard_desktop.base.gpu_cards import cards_from, parse_display_query
from isengard_desktop.base.memory_plan import Card, ModelSizes, TrainingSetup, plan_training
from isengard_desktop.base.nvidia import parse_nvidia_smi
from isengard_desktop.core.training_plan import plan_for_preset

CARDS = Path(__file__).resolve().parents[1] / "core" / "fixtures" / "gpus"
SIZES = ModelSizes.from_catalogue()
CHECKS = {check["id"]: check for check in mp.figures()["checks"]}


def within(predicted: float, check_id: str) -> None:
    check = CHECKS[check_id]
    error = abs(predicted - check["published_gib"]) / check["published_gib"]
    assert error <= check["tolerance"], (check_id, round(predicted, 2), check["published_gib"], f"{error:.1%}")


def card(name: str, display: bool = False) -> Card:
    return Card.from_gpu(parse_nvidia_smi((CARDS / f"{name}.txt").read_text())[0], display)


def test_sizes_come_from_the_catalogue_before_any_download() -> None:
    # FLUX.1-dev: 11.9B transformer (diffusers' count 11,901,408,320 + its 4.67M LoRA in the QLoRA post), 4.76B T5.
    assert abs(SIZES.transformer - 11_901_408_320) / SIZES.transformer < 1e-4
    assert 4.7e9 < SIZES.t5 < 4.8e9 and 1.2e8 < SIZES.clip < 1.3e8 and 8e7 < SIZES.vae < 9e7
    assert round(mp.weights_gib(SIZES.transformer, "bf16"), 1) == 22.2  # the 22.2 GiB


def qlora_blog_peak(precision: str) -> float:
    # rank 4 on to_q/to_k/to_v/to_out.0 = 4,669,440 weights; 512x768 = 1536 image tokens + 77 T5 tokens; 8-bit Adam;
    # embeddings and latents cached, so neither text encoder nor VAE is on the card.
    return (mp.weights_gib(SIZES.transformer, precision) + mp.lora_gib(4_669_440, "adamw8bit")
            + mp.train_activations_gib(1536 + 77))


def test_diffusers_qlora_and_bf16_lora_peaks() -> None:
    within(qlora_blog_peak("nf4"), "diffusers_qlora_nf4")  # calibration: the constant reproduces its source
    within(qlora_blog_peak("bf16"), "diffusers_lora_bf16")  # independent check


def test_generation_pipeline_in_bf16() -> None:
    loaded = sum(mp.weights_gib(n, "bf16") for n in (SIZES.transformer, SIZES.t5, SIZES.clip, SIZES.vae))
    within(loaded, "diffusers_pipeline_bf16_loaded")
    peak = loaded + max(mp.inference_activations_gib(4096 + 512), mp.vae_gib(1024 * 1024, "decode"))
    within(peak, "diffusers_pipeline_bf16_peak")


def test_aitoolkit_needs_a_24_gb_card_like_its_readme_says() -> None:
    example = TrainingSetup("aitoolkit", (512, 768, 1024), rank=16, low_vram=True)  # train_lora_flux_24gb.yaml
    assert plan_training(example, Card.nominal(24), SIZES).ok
    refused = plan_training(example, Card.nominal(20), SIZES)
    assert refused.verdict == "refused" and refused.needs_gb == 24
    assert "24 GB card" in refused.reason


def test_kohya_fp8_figures() -> None:
    def peak(batch: int) -> float:
        return (mp.weights_gib(SIZES.transformer, "qfloat8") + mp.lora_gib(mp.lora_params(16), "adamw8bit")
                + mp.train_activations_gib(4096 + 512, batch))

    assert mp.required_gb(peak(2), Card.nominal(24)) <= 24  # "24GB: basic settings work fine (batch size 2)"
    assert mp.required_gb(peak(1), Card.nominal(16)) > 16  # "16GB: batch size 1 and --blocks_to_swap"


@pytest.mark.parametrize("preset", ["quick", "balanced"])
def test_a_desktop_3090_with_a_display_gets_low_vram_written(preset: str) -> None:
    plan = plan_for_preset("aitoolkit", preset, card("rtx3090", display=True))
    assert plan.verdict == "adjusted" and plan.settings["low_vram"] and plan.settings["quantize"]
    assert "display" in " ".join(plan.changes)


def test_free_memory_below_the_quantization_peak_also_gets_low_vram() -> None:
    # A 4090 with 0.4 GB in use and no display: quantizing on the GPU peaks at the bf16 transformer (22.2 GB).
    plan = plan_for_preset("aitoolkit", "balanced", card("rtx4090"))
    assert plan.verdict == "adjusted" and plan.settings["low_vram"]
    bare = plan_for_preset("aitoolkit", "balanced", Card.nominal(24))
    assert bare.verdict == "fits" and not bare.settings["low_vram"]


def test_high_quality_on_24_gb_is_quantized_and_says_what_it_would_need() -> None:
    plan = plan_for_preset("aitoolkit", "high", card("rtx3090", display=True))
    assert plan.verdict == "adjusted" and plan.settings["quantize"] and plan.settings["quantize_te"]
    assert plan.configured_needs_gb == 48
    assert plan_for_preset("aitoolkit", "high", card("a100")).verdict == "fits"


def test_sixteen_gb_cards() -> None:
    sixteen = Card.nominal(16)
    assert plan_for_preset("aitoolkit", "quick", sixteen).verdict == "refused"
    assert plan_for_preset("diffusers", "balanced", sixteen, bitsandbytes=True).verdict == "fits"
    high = plan_for_preset("diffusers", "high", sixteen, bitsandbytes=True)
    assert high.verdict == "adjusted" and high.settings["transformer"] == "nf4"


def test_without_bitsandbytes_the_builtin_plan_counts_bf16_and_refuses() -> None:
    plan = plan_for_preset("diffusers", "quick", card("rtx3090", display=True), bitsandbytes=False)
    assert plan.verdict == "refused" and plan.settings["transformer"] == "bf16"
    assert "pip install bitsandbytes" in plan.reason and plan.needs_gb == 32


@pytest.mark.parametrize("name", ["t4", "v100", "gtx1080ti"])
def test_cards_without_bf16_are_refused(name: str) -> None:
    plan = plan_for_preset("diffusers", "quick", card(name), bitsandbytes=True)
    assert plan.verdict == "refused" and "bf16" in plan.reason and "Ampere" in plan.reason


def test_two_cards_and_their_displays() -> None:
    text = (CARDS / "two_gpus_4090_3090.txt").read_text()
    displays = parse_display_query("0, Enabled, Enabled\n1, Disabled, [N/A]\n")
    cards = cards_from(parse_nvidia_smi(text), displays)
    assert [c.display for c in cards] == [True, False]
    assert parse_display_query("0, [N/A], [N/A]\nnot a line\n") == {0: False}
    assert cards[0].label.startswith("NVIDIA GeForce RTX 4090 (drives a display")


def test_plan_json_shape() -> None:
    data = plan_for_preset("aitoolkit", "balanced", Card.nominal(24)).to_json()
    assert set(data) >= {"verdict", "peak_gb", "phases", "settings", "reason"}
    assert set(data["phases"]) == {"model_loading", "latent_caching", "training", "sampling"}
    assert data["peak_gb"] == max(data["phases"].values())


def test_sizes_from_a_folder_match_its_headers(tiny_flux: Path) -> None:
    sizes = ModelSizes.from_folder(tiny_flux)
    assert sizes.transformer == 81_664  # FACTS.md: the tiny transformer's parameter count


@pytest.mark.parametrize("preset", ["balanced", "high"])
def test_aitoolkit_config_gets_the_plans_settings(preset: str) -> None:
    from engines.aitoolkit.config import build_config
    from tests.engines.test_aitoolkit_engine import spec_for

    spec = spec_for(preset)
    plan = plan_for_preset("aitoolkit", preset, card("rtx3090", display=True))
    config = build_config(spec, Path("/d"), Path("/t"), "cuda:0", plan.settings)
    process = config["config"]["process"][0]
    assert process["model"]["low_vram"] and process["model"]["quantize"] and process["model"]["quantize_te"]
    assert process["train"]["optimizer"] == "adamw8bit"
    expected = [512, 768, 1024] if preset == "balanced" else [512, 768]  # rank 32 beside a display: no 1024 bucket
    assert process["datasets"][0]["resolution"] == expected and process["sample"]["width"] == max(expected)
    # On the CPU (fast-test) the plan does not apply: nothing is quantized.
    cpu = build_config(spec, Path("/d"), Path("/t"), "cpu", plan.settings)["config"]["process"][0]
    assert not cpu["model"]["quantize"] and not cpu["model"]["low_vram"]


@pytest.mark.parametrize(("name", "bnb", "strategy"), [
    ("a100", True, "gpu"),  # 80 GB: everything in bf16 on the card
    ("rtx5090", True, "model_cpu_offload"),  # 32 GB: the bf16 transformer alone with its activations
    ("rtx3090", True, "nf4_gpu"),  # 24 GB: bf16 offload is borderline (22.2 GiB + activations), NF4 fits whole
    ("rtx3090", False, "sequential_cpu_offload"),  # ... and without bitsandbytes only layer by layer
    ("rtx4090", True, "nf4_gpu"),
])
def test_generator_strategy_per_card(name: str, bnb: bool, strategy: str) -> None:
    from isengard_desktop.base.memory_plan_generate import plan_generation

    plan = plan_generation(card(name, display=True), bitsandbytes=bnb)
    assert plan.settings["strategy"] == strategy, plan.reason
    assert plan.verdict == ("fits" if strategy == "gpu" else "adjusted")


def test_generator_on_16_gb_and_on_a_t4() -> None:
    from isengard_desktop.base.memory_plan_generate import plan_generation

    assert plan_generation(Card.nominal(16)).settings["strategy"] == "nf4_model_cpu_offload"
    assert plan_generation(card("t4")).verdict == "refused"


@pytest.mark.parametrize("preset", ["quick", "balanced", "high"])
def test_preset_figures_are_the_plans(preset: str) -> None:
    from isengard_desktop.core.presets import load_preset

    predicted = load_preset(preset).predicted
    for engine, gb in predicted["vram_gb_by_engine"].items():
        assert plan_for_preset(engine, preset, Card.nominal(24), bitsandbytes=True).configured_needs_gb == gb
    assert predicted["vram_gb"] == predicted["vram_gb_by_engine"]["aitoolkit"]  # the production default


def test_memory_held_by_other_programs_is_named() -> None:
    busy = Card(24.0, used_gb=9.0, name="NVIDIA GeForce RTX 4090")  # e.g. an idle generation worker's pipeline
    plan = plan_for_preset("aitoolkit", "balanced", busy)
    assert plan.verdict == "refused" and "Other programs hold 9.0 GB" in plan.reason
