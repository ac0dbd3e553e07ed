"""The GPU memory plan of a FLUX.1-dev run, phase by phase, and whether it fits a card: pure functions.

A training run goes through phases that hold different things on the card (text encoding, latent
caching, the training steps, sampling); a run fits when its largest phase, plus the CUDA context and
some headroom for the allocator, fits what the card has free. The plan decides, for an engine and its
settings on a card: run as configured ("fits"), run with named lower-memory settings ("adjusted":
a quantized transformer, AI-Toolkit's ``low_vram``, smaller resolutions), or refuse with the reason
and the size of the card it would need ("refused").

The figures (bytes per weight, activations per token, context, headroom) and where each comes from
are data in resources/memory_plan.json; the weights come from the model catalogue's file sizes, so a
plan can be made before the base model is downloaded (``isengard train --plan-for-vram GB``).
No torch and no Qt here: the window, the CLI and the engines' pre-flight all ask the same functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from isengard_desktop.base.resources import resource_path
from isengard_desktop.base.safetensors_header import read_header

GIB = 2**30
ENGINES = ("diffusers", "aitoolkit")


@cache
def figures() -> dict[str, Any]:
    return json.loads(resource_path("memory_plan.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class ModelSizes:
    """Parameter counts of a FLUX model's parts."""

    transformer: int
    t5: int
    clip: int
    vae: int

    @classmethod
    def from_catalogue(cls, model_id: str = "flux1-dev") -> ModelSizes:
        """From the catalogue's file sizes (bf16 files: bytes / 2), without the files themselves."""
        from isengard_desktop.base import catalogue

        files = catalogue.get(model_id).files.values()

        def params(folder: str) -> int:
            return sum(f.size or 0 for f in files if f.path.startswith(folder + "/") and
                       f.path.endswith(".safetensors")) // 2

        return cls(params("transformer"), params("text_encoder_2"), params("text_encoder"), params("vae"))

    @classmethod
    def from_folder(cls, base: Path) -> ModelSizes:
        """From a diffusers folder's safetensors headers (a few kilobytes read, no weights loaded)."""
        return cls(*(_count(base / sub) for sub in ("transformer", "text_encoder_2", "text_encoder", "vae")))


def _count(folder: Path) -> int:
    total = 0
    for path in sorted(folder.glob("*.safetensors")):
        for name, info in read_header(path).items():
            if name != "__metadata__":
                size = 1
                for dim in info["shape"]:
                    size *= dim
                total += size
    return total


@dataclass(frozen=True)
class Card:
    """One GPU as the plan sees it: its memory, what others hold on it now, whether it drives a display."""

    total_gb: float
    used_gb: float = 0.0  # display, compositor, other programs (and our own context when measured from inside)
    display: bool = False
    name: str = ""
    compute_capability: tuple[int, int] | None = None
    context_in_used: bool = False  # ``used_gb`` already counts this process's CUDA context

    @classmethod
    def nominal(cls, gb: float) -> Card:
        """A card of that size with nothing else on it (a rented or a second card)."""
        return cls(float(gb), name=f"{gb:g} GB card")

    @classmethod
    def from_gpu(cls, gpu: Any, display: bool = False) -> Card:
        """From ``nvidia.Gpu`` (nvidia-smi's answer): total and used MiB, compute capability."""
        return cls((gpu.memory_total_mib or 0) / 1024, (gpu.memory_used_mib or 0) / 1024, display, gpu.name,
                   gpu.compute_capability)

    @property
    def free_gb(self) -> float:
        return max(0.0, self.total_gb - self.used_gb)

    @property
    def label(self) -> str:
        name = self.name or f"{self.total_gb:.0f} GB card"
        extra = []
        if self.display:
            extra.append("drives a display")
        if self.used_gb >= 0.05 and not self.context_in_used:
            extra.append(f"{self.used_gb:.1f} GB already in use")
        return name + (f" ({', '.join(extra)})" if extra else "")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "total_gb": round(self.total_gb, 2), "used_gb": round(self.used_gb, 2),
                "display": self.display,
                "compute_capability": None if self.compute_capability is None else
                "{}.{}".format(*self.compute_capability)}


@dataclass(frozen=True)
class TrainingSetup:
    """What the plan needs of a training run: the engine and the preset's memory-relevant values."""

    engine: str
    resolutions: tuple[int, ...]
    rank: int
    batch_size: int = 1
    low_vram: bool = True  # the preset asks for a quantized frozen transformer
    sample: bool = True  # sample images during training
    bitsandbytes: bool = True  # installed in the engine's environment (4-bit transformer, 8-bit AdamW)

    @classmethod
    def from_values(cls, engine: str, values: dict[str, Any], bitsandbytes: bool = True) -> TrainingSetup:
        return cls(engine, tuple(int(r) for r in values["resolutions"]), int(values["rank"]),
                   int(values.get("batch_size", 1)), bool(values.get("low_vram", False)),
                   bool(values.get("sample_every", 1)), bitsandbytes)


@dataclass(frozen=True)
class Plan:
    engine: str
    verdict: str  # "fits" | "adjusted" | "refused"
    peak_gb: float
    phases: dict[str, float]
    settings: dict[str, Any]
    reason: str
    card: Card
    changes: tuple[str, ...] = ()
    needs_gb: float | None = None  # the smallest card size on which some plan fits
    configured_needs_gb: float | None = None  # ... on which the run fits as configured

    @property
    def ok(self) -> bool:
        return self.verdict != "refused"

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "peak_gb": round(self.peak_gb, 1),
                "phases": {k: round(v, 1) for k, v in self.phases.items()}, "settings": self.settings,
                "reason": self.reason, "engine": self.engine, "changes": list(self.changes),
                "needs_gb": self.needs_gb, "configured_needs_gb": self.configured_needs_gb,
                "card": self.card.to_json()}


# --- the parts -------------------------------------------------------------------------------------------------

def weights_gib(params: int, precision: str, unquantized: int = 0) -> float:
    """Weights in GiB at ``precision``; ``unquantized`` of them stay bf16 (embeddings are not quantized)."""
    bpp = figures()["bytes_per_param"]
    if precision == "bf16":
        unquantized = 0
    return ((params - unquantized) * bpp[precision] + unquantized * bpp["bf16"]) / GIB


def lora_params(rank: int) -> int:
    flux = figures()["flux"]
    return flux["lora_units_per_rank"] * rank * flux["hidden"]


def lora_gib(params: int, optimizer: str) -> float:
    """LoRA weights, their gradients and the optimizer's state."""
    lora = figures()["lora"]
    return params * (lora["weight_bytes"] + lora["grad_bytes"] + lora["optimizer_bytes"][optimizer]) / GIB


def image_tokens(resolution: int) -> int:
    """FLUX tokens of an image of about ``resolution``² pixels (8x VAE, 2x2 patches); buckets keep the area."""
    return (resolution // 16) ** 2


def train_activations_gib(tokens: int, batch: int = 1) -> float:
    act = figures()["activations"]
    return act["fixed_gib"] + batch * tokens * act["per_token_mib"] / 1024


def inference_activations_gib(tokens: int) -> float:
    act = figures()["activations"]
    return act["inference_fixed_gib"] + tokens * act["inference_per_token_mib"] / 1024


def vae_gib(pixels: int, direction: str) -> float:
    return pixels * figures()["vae"][f"{direction}_bytes_per_pixel"] / GIB


def t5_gib(sizes: ModelSizes, precision: str) -> float:
    return weights_gib(sizes.t5, precision, figures()["flux"]["t5_embedding_params"])


# --- phases of each engine ----------------------------------------------------------------------------------------

def diffusers_phases(settings: dict[str, Any], sizes: ModelSizes) -> dict[str, float]:
    """The built-in trainer (engines/diffusers/trainer.py): text encoders alone, then the VAE, then the
    transformer with its LoRA (the VAE stays for samples); samples at the first resolution."""
    text = figures()["flux"]["t5_tokens"]
    res = settings["resolutions"]
    transformer = weights_gib(sizes.transformer, settings["transformer"])
    vae = weights_gib(sizes.vae, "bf16")
    lora = lora_gib(lora_params(settings["rank"]), settings["optimizer"])
    phases = {
        "text_encoding": weights_gib(sizes.clip, "bf16") + t5_gib(sizes, "bf16") + inference_activations_gib(text),
        "latent_caching": vae + vae_gib(max(res) ** 2, "encode"),
        "training": transformer + lora + (vae if settings["sample"] else 0.0)
        + train_activations_gib(image_tokens(max(res)) + text, settings["batch_size"]),
    }
    if settings["sample"]:
        size = res[0]
        phases["sampling"] = transformer + lora + vae + max(
            inference_activations_gib(image_tokens(size) + text), vae_gib(size * size, "decode"))
    return phases


def aitoolkit_phases(settings: dict[str, Any], sizes: ModelSizes) -> dict[str, float]:
    """AI-Toolkit at the pin (resources/memory_plan.json "aitoolkit"): everything stays on the card."""
    text = figures()["flux"]["t5_tokens"]
    res = settings["resolutions"]
    bf16 = weights_gib(sizes.transformer, "bf16")
    transformer = weights_gib(sizes.transformer, "qfloat8") if settings["quantize"] else bf16
    t5 = t5_gib(sizes, "qfloat8" if settings["quantize_te"] else "bf16")
    # Quantized on the GPU unless low_vram: the bf16 transformer is on the card first.
    first = bf16 if settings["quantize"] and not settings["low_vram"] else transformer
    clip, vae = weights_gib(sizes.clip, "bf16"), weights_gib(sizes.vae, "bf16")
    resident = transformer + t5 + clip + vae
    lora = lora_gib(lora_params(settings["rank"]), settings["optimizer"])
    phases = {
        "model_loading": max(first, transformer + t5_gib(sizes, "bf16")),
        "latent_caching": resident + vae_gib(max(res) ** 2, "encode"),
        "training": resident + lora + train_activations_gib(image_tokens(max(res)) + text, settings["batch_size"]),
    }
    if settings["sample"]:
        size = max(res)
        phases["sampling"] = resident + lora + max(inference_activations_gib(image_tokens(size) + text),
                                                   vae_gib(size * size, "decode"))
    return phases


PHASES = {"diffusers": diffusers_phases, "aitoolkit": aitoolkit_phases}


# --- deciding -------------------------------------------------------------------------------------------------------

def required_gb(peak: float, card: Card) -> float:
    """What the card must have free for a run whose largest phase allocates ``peak``."""
    cfg = figures()["card"]
    return peak * (1 + cfg["headroom_fraction"]) + (0.0 if card.context_in_used else cfg["cuda_context_gib"])


def fits_card(peak: float, card: Card) -> bool:
    return required_gb(peak, card) <= card.free_gb


def smallest_card(peak: float) -> float | None:
    for size in figures()["card"]["sizes_gb"]:
        if fits_card(peak, Card.nominal(size)):
            return float(size)
    return None


@dataclass
class _Candidate:
    settings: dict[str, Any]
    changes: list[str] = field(default_factory=list)


def _candidates(setup: TrainingSetup, card: Card) -> tuple[_Candidate, list[_Candidate]]:
    """The run as configured, then lower-memory variants in the order to prefer them."""
    res = list(setup.resolutions)
    common = {"resolutions": res, "rank": setup.rank, "batch_size": setup.batch_size, "sample": setup.sample}
    smaller = [res[:n] for n in range(len(res) - 1, 0, -1)]  # drop the largest bucket first
    out: list[_Candidate] = []
    if setup.engine == "aitoolkit":
        eight = "adamw8bit" if setup.bitsandbytes else "adamw"
        configured = _Candidate({**common, "quantize": setup.low_vram, "quantize_te": setup.low_vram,
                                 "low_vram": False, "optimizer": eight if setup.low_vram else "adamw"})
        low = "low_vram (quantize on the CPU first)"
        quant = {"quantize": True, "quantize_te": True, "optimizer": eight}
        quant_names = ["8-bit transformer and T5 (quantize, quantize_te)"] if not setup.low_vram else []
        options = [configured, _Candidate({**configured.settings, "low_vram": True}, [low])]
        if not setup.low_vram:
            options += [_Candidate({**configured.settings, **quant}, quant_names),
                        _Candidate({**configured.settings, **quant, "low_vram": True}, quant_names + [low])]
        for sub in smaller:
            options.append(_Candidate({**configured.settings, **quant, "low_vram": True, "resolutions": sub},
                                      quant_names + [low, "resolutions " + "/".join(map(str, sub))]))
        if card.display:  # AI-Toolkit's README: set low_vram when the GPU drives monitors
            for option in options:
                if not option.settings["low_vram"]:
                    continue
                option.changes = [c if c != low else "low_vram (the card drives a display)" for c in option.changes]
            options = [o for o in options if o.settings["low_vram"]]
        out = options
    else:
        nf4 = setup.bitsandbytes
        wanted = setup.low_vram and nf4
        configured = _Candidate({**common, "transformer": "nf4" if wanted else "bf16",
                                 "optimizer": "adamw8bit" if wanted else "adamw"})
        if setup.low_vram and not nf4:
            configured.changes.append("bf16 transformer (bitsandbytes is not installed)")
        out = [configured]
        if nf4 and not wanted:
            out.append(_Candidate({**configured.settings, "transformer": "nf4", "optimizer": "adamw8bit"},
                                  ["4-bit transformer (NF4)"]))
        base = out[-1]
        for sub in smaller:
            out.append(_Candidate({**base.settings, "resolutions": sub},
                                  base.changes + ["resolutions " + "/".join(map(str, sub))]))
    return configured, out


def plan_training(setup: TrainingSetup, card: Card, sizes: ModelSizes | None = None) -> Plan:
    """The plan of a training run on ``card``: as configured, adjusted, or refused with the card it would need."""
    if setup.engine not in PHASES:
        raise ValueError(f"no memory plan for the engine {setup.engine!r}")
    sizes = sizes or ModelSizes.from_catalogue()
    phases_of = PHASES[setup.engine]
    configured, candidates = _candidates(setup, card)
    configured_peak = max(phases_of(configured.settings, sizes).values())
    evaluated = [(c, phases_of(c.settings, sizes)) for c in candidates]
    needs = min((n for n in (smallest_card(max(p.values())) for _, p in evaluated) if n is not None), default=None)
    configured_needs = smallest_card(configured_peak)
    minimum = tuple(figures()["card"]["min_compute_capability"])
    if card.compute_capability is not None and card.compute_capability < minimum:
        chosen, phases = evaluated[0]
        reason = (f"The {card.label} has compute capability {'{}.{}'.format(*card.compute_capability)}: it cannot "
                  "compute in bf16, which FLUX.1-dev needs (fp16 overflows its activations); train on an Ampere "
                  "(RTX 30xx, A100) or newer card.")
        return _plan(setup, card, "refused", chosen, phases, reason, needs, configured_needs)
    for chosen, phases in evaluated:
        peak = max(phases.values())
        if fits_card(peak, card):
            verdict = "adjusted" if chosen.changes else "fits"
            worst = max(phases, key=phases.__getitem__)
            if verdict == "fits":
                reason = (f"Fits the {card.label}: the largest phase ({worst.replace('_', ' ')}) needs "
                          f"{required_gb(peak, card):.1f} GB of the {card.free_gb:.1f} GB free.")
            else:
                reason = (f"Runs on the {card.label} with {', '.join(chosen.changes)}: the largest phase "
                          f"({worst.replace('_', ' ')}) then needs {required_gb(peak, card):.1f} GB of the "
                          f"{card.free_gb:.1f} GB free; as configured it needs "
                          f"{required_gb(configured_peak, card):.1f} GB.")
            return _plan(setup, card, verdict, chosen, phases, reason, needs, configured_needs)
    chosen, phases = evaluated[-1]
    peak = max(phases.values())
    worst = max(phases, key=phases.__getitem__)
    tried = f" even with {', '.join(chosen.changes)}" if chosen.changes else ""
    where = f"a {needs:g} GB card" if needs is not None else "a larger card than any the plan knows"
    reason = (f"Does not fit the {card.label}:{tried} the {worst.replace('_', ' ')} phase needs "
              f"{required_gb(peak, card):.1f} GB and {card.free_gb:.1f} GB is free; it needs {where}"
              + (" with nothing else on it" if card.display or card.used_gb >= 0.5 else "") + ".")
    if card.used_gb >= 0.5 and fits_card(peak, replace(card, used_gb=0.0, context_in_used=False)):
        reason += (f" Other programs hold {card.used_gb:.1f} GB of it (another model loaded, a running ComfyUI): "
                   "close them and start again.")
    if setup.engine == "diffusers" and not setup.bitsandbytes:
        with_bnb = plan_training(replace(setup, bitsandbytes=True), card, sizes)
        if with_bnb.ok:
            reason += (" With bitsandbytes installed in the app's environment (pip install bitsandbytes) it "
                       "would run with a 4-bit transformer.")
    return _plan(setup, card, "refused", chosen, phases, reason, needs, configured_needs)


def _plan(setup: TrainingSetup, card: Card, verdict: str, chosen: _Candidate, phases: dict[str, float], reason: str,
          needs: float | None, configured_needs: float | None) -> Plan:
    return Plan(setup.engine, verdict, max(phases.values()), phases, dict(chosen.settings), reason, card,
                tuple(chosen.changes), needs, configured_needs)

