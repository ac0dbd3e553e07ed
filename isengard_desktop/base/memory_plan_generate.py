"""The memory plan of the built-in generator: which way of holding FLUX.1-dev on a card fits it.

Generating holds the text encoders, the transformer and the VAE; they can all sit on the card in bf16
(about 31.4 GiB, 36 GiB at the peak of a 1024x1024 image: the 40 GB class), or move to the card only
while each runs (model CPU offload: the transformer's 22.2 GiB plus its activations), or use a 4-bit
transformer (NF4), or go layer by layer (slow). ``plan_generation`` picks the first that fits, in order
of quality, then speed. Pure functions over memory_plan's figures.
"""

from __future__ import annotations

from isengard_desktop.base.memory_plan import (
    Card,
    ModelSizes,
    Plan,
    figures,
    fits_card,
    image_tokens,
    inference_activations_gib,
    required_gb,
    smallest_card,
    t5_gib,
    vae_gib,
    weights_gib,
)


def generation_phases(strategy: str, width: int, height: int, sizes: ModelSizes) -> dict[str, float]:
    """What the card holds while the pipeline encodes the prompt, denoises, and decodes, for one strategy:
    "gpu" (everything in bf16 on the card), "model_cpu_offload" (each part on the card only while it runs),
    "nf4_gpu" / "nf4_model_cpu_offload" (the same with a 4-bit transformer), "sequential_cpu_offload"
    (layer by layer: slow, a last resort)."""
    text = figures()["flux"]["t5_tokens"]
    transformer = weights_gib(sizes.transformer, "nf4" if strategy.startswith("nf4") else "bf16")
    encoders = weights_gib(sizes.clip, "bf16") + t5_gib(sizes, "bf16")
    vae = weights_gib(sizes.vae, "bf16")
    denoise = inference_activations_gib(image_tokens(int((width * height) ** 0.5)) + text)
    decode = vae_gib(width * height, "decode")
    if strategy in ("gpu", "nf4_gpu"):
        resident = transformer + encoders + vae
        return {"text_encoding": resident + inference_activations_gib(text), "denoising": resident + denoise,
                "decoding": resident + decode}
    if strategy in ("model_cpu_offload", "nf4_model_cpu_offload"):
        return {"text_encoding": encoders + inference_activations_gib(text), "denoising": transformer + denoise,
                "decoding": vae + decode}
    if strategy == "sequential_cpu_offload":
        layer = 1.0  # the largest group of weights on the card at once, and transfer buffers: an estimate
        return {"text_encoding": layer + inference_activations_gib(text), "denoising": layer + denoise,
                "decoding": layer + decode}
    raise ValueError(f"unknown generation strategy {strategy!r}")


GENERATION_STRATEGIES = ("gpu", "model_cpu_offload", "nf4_gpu", "nf4_model_cpu_offload", "sequential_cpu_offload")
STRATEGY_NAMES = {
    "gpu": "everything on the GPU in bf16",
    "model_cpu_offload": "each part on the GPU only while it runs (model CPU offload)",
    "nf4_gpu": "a 4-bit transformer (NF4), everything on the GPU",
    "nf4_model_cpu_offload": "a 4-bit transformer (NF4) with model CPU offload",
    "sequential_cpu_offload": "layer-by-layer CPU offload (slow)",
}


def plan_generation(card: Card, width: int = 1024, height: int = 1024, bitsandbytes: bool = True,
                    sizes: ModelSizes | None = None) -> Plan:
    """How the built-in generator holds FLUX.1-dev on ``card``: the first strategy that fits, in order of
    quality then speed; "fits" only when everything sits on the card in bf16."""
    sizes = sizes or ModelSizes.from_catalogue()
    tried = [s for s in GENERATION_STRATEGIES if bitsandbytes or not s.startswith("nf4")]
    minimum = tuple(figures()["card"]["min_compute_capability"])
    needs = smallest_card(max(generation_phases("gpu", width, height, sizes).values()))
    for strategy in tried:
        phases = generation_phases(strategy, width, height, sizes)
        peak = max(phases.values())
        if card.compute_capability is not None and card.compute_capability < minimum:
            break
        if fits_card(peak, card):
            verdict = "fits" if strategy == "gpu" else "adjusted"
            changes = () if strategy == "gpu" else (STRATEGY_NAMES[strategy],)
            reason = (f"Generates {width}x{height} on the {card.label} with {STRATEGY_NAMES[strategy]}: "
                      f"{required_gb(peak, card):.1f} GB of the {card.free_gb:.1f} GB free.")
            return Plan("diffusers", verdict, peak, phases, {"strategy": strategy}, reason, card, changes, needs, needs)
    phases = generation_phases(tried[-1], width, height, sizes)
    reason = (f"The {card.label} cannot generate with FLUX.1-dev: it needs an Ampere or newer card with at least "
              f"{required_gb(max(phases.values()), Card.nominal(0)):.0f} GB.")
    return Plan("diffusers", "refused", max(phases.values()), phases, {"strategy": tried[-1]}, reason, card, (),
                needs, needs)
