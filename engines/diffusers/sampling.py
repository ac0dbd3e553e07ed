"""Generating images from a loaded FluxPipeline: the trainer's samples and the Generate screen's images.

The starting noise comes from a CPU generator seeded with ``seed``, so a seed gives the same image on
any device and whatever ran before. A prompt can be given as text (the pipeline's text encoders
encode it) or as embeddings computed earlier (the trainer freed its text encoders long ago).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
import torch
from PIL import Image

from engines.diffusers.text import TextEmbedding, sequence_length
from engines.interface import TrainingSpec
from isengard_desktop.base import atomic

if TYPE_CHECKING:
    from diffusers import FluxPipeline

log = structlog.get_logger(__name__)

DEFAULT_GUIDANCE = 3.5  # FLUX.1-dev's usual guidance scale


def generate_image(
    pipe: FluxPipeline,
    prompt: str | TextEmbedding,
    *,
    seed: int,
    steps: int,
    width: int,
    height: int,
    guidance: float = DEFAULT_GUIDANCE,
    on_step: Callable[[int], bool] | None = None,
) -> Image.Image | None:
    """One image of ``width`` x ``height`` (multiples of 16) for ``prompt``, reproducible from ``seed``.

    ``on_step(done_steps)`` is called after every denoising step; when it returns True the remaining
    steps are skipped and None is returned (the user cancelled).
    """
    if width % 16 or height % 16:
        raise ValueError(f"Image sides must be multiples of 16, not {width}x{height}.")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    if isinstance(prompt, TextEmbedding):
        dtype = pipe.transformer.dtype
        device = pipe._execution_device
        text = {
            "prompt_embeds": prompt.prompt_embeds.to(device=device, dtype=dtype),
            "pooled_prompt_embeds": prompt.pooled.to(device=device, dtype=dtype),
        }
    else:
        text = {"prompt": prompt, "max_sequence_length": sequence_length(pipe.tokenizer_2)}
    stopped = False
    extra = {}
    if on_step is not None:

        def step_end(pipeline: FluxPipeline, step: int, _timestep: object, kwargs: dict) -> dict:
            nonlocal stopped
            if on_step(step + 1):
                stopped = True
                pipeline._interrupt = True  # FluxPipeline skips the remaining steps when this is set
            return kwargs

        extra["callback_on_step_end"] = step_end
    result = pipe(
        **text,
        width=width,
        height=height,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=generator,
        output_type="pil",
        **extra,
    )
    return None if stopped else result.images[0]


class Sampler:
    """The trainer's sample images: every prompt of the spec at the first resolution, square."""

    def __init__(
        self,
        base_model: Path,
        transformer: torch.nn.Module,
        vae: torch.nn.Module,
        folder: Path,
        spec: TrainingSpec,
        texts: dict[str, TextEmbedding],
    ) -> None:
        from diffusers import FluxPipeline

        from engines.diffusers.models import load_scheduler

        # The pipeline shares the training transformer (LoRA active) and VAE; it gets its own
        # scheduler because sampling changes the scheduler's state.
        self.pipe = FluxPipeline(
            scheduler=load_scheduler(base_model),
            vae=vae,
            transformer=transformer,
            text_encoder=None,
            tokenizer=None,
            text_encoder_2=None,
            tokenizer_2=None,
        )
        self.pipe.set_progress_bar_config(disable=True)
        self.folder = folder
        self.spec = spec
        self.texts = texts
        # Small for the tiny model (64 px), the preset's size for FLUX.1-dev.
        self.size = max(16, int(spec.resolutions[0]) // 16 * 16)

    def sample(self, step: int, only_missing: bool = False) -> list[tuple[str, Path]]:
        """Write ``samples/step_{step:06d}_{i}.png`` for each prompt; returns (prompt, path) of each written."""
        transformer = self.pipe.transformer
        was_training = transformer.training
        transformer.eval()
        written: list[tuple[str, Path]] = []
        try:
            for index, prompt in enumerate(self.spec.sample_prompts):
                path = self.folder / f"step_{step:06d}_{index}.png"
                if only_missing and path.is_file():
                    continue
                started = time.perf_counter()
                image = generate_image(
                    self.pipe,
                    self.texts[prompt],
                    seed=self.spec.sample_seed,
                    steps=self.spec.sample_steps,
                    width=self.size,
                    height=self.size,
                )
                atomic.write_png(path, image)
                log.info("sample_saved", step=step, path=str(path), seconds=round(time.perf_counter() - started, 3))
                written.append((prompt, path))
        finally:
            transformer.train(was_training)
        return written
