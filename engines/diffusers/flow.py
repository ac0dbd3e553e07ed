"""FLUX's rectified-flow training objective, following diffusers' ``train_dreambooth_lora_flux.py``.

A step draws a noise level sigma uniformly from the base model's training schedule, mixes
``noisy = (1 - sigma) * latents + sigma * noise``, and trains the transformer to predict the velocity
``noise - latents`` under mean squared error. For FLUX.1-dev the schedule's sigmas are evenly spaced:
its scheduler config sets ``use_dynamic_shifting``, so the ``shift: 3.0`` it also lists is not applied to
the training sigmas (diffusers' script draws from the same table). The guidance input is 3.5, the
script's default. AI-Toolkit trains the same presets differently, on purpose: guidance 1.0
(``train.cfg_scale``) and sigmoid-distributed timesteps (``train.timestep_type``), its own tested
defaults; each engine keeps its upstream's recipe (ERROR_LIST E15). Latents are packed into 2x2 patches
as FLUX expects. All randomness of a step comes from one generator
passed in, which is what makes a resumed run bitwise identical to an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# FLUX.1-dev is guidance-distilled: the transformer takes the guidance scale as an input, and
# diffusers' script trains with the value people generate with (AI-Toolkit and kohya train with 1.0).
TRAIN_GUIDANCE = 3.5
# Uniform timestep density over the schedule: the script's default ("none"). FLUX.1-dev's schedule is not
# shifted for training (use_dynamic_shifting), so sigmas are uniform in [0, 1].
WEIGHTING = "none"


@dataclass
class Conditioning:
    """The text side of a batch, already on the device in the compute dtype."""

    prompt_embeds: torch.Tensor  # [B, tokens, dim]
    pooled: torch.Tensor  # [B, pooled_dim]
    text_ids: torch.Tensor  # [tokens, 3]


class FlowMatching:
    """The noise schedule of one base model and the loss of one batch."""

    def __init__(self, scheduler: object, vae_shift: float, vae_scale: float) -> None:
        # The scheduler built from the model's config holds the shifted training sigmas (as the
        # script's ``noise_scheduler_copy``); timestep i has noise level sigmas[i].
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self.timesteps = scheduler.timesteps.detach().clone().float().cpu()
        self.sigmas = scheduler.sigmas.detach().clone().float().cpu()
        self.vae_shift = float(vae_shift)
        self.vae_scale = float(vae_scale)
        self._constants: dict[tuple, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._text_ids: dict[tuple[int, str], torch.Tensor] = {}

    def sample_sigmas(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(sigmas, timesteps) for a batch, both shaped [batch]."""
        from diffusers.training_utils import compute_density_for_timestep_sampling

        u = compute_density_for_timestep_sampling(
            weighting_scheme=WEIGHTING,
            batch_size=batch,
            logit_mean=0.0,
            logit_std=1.0,
            mode_scale=1.29,
            generator=generator,
        )
        indices = (u * self.num_train_timesteps).long().clamp(max=self.num_train_timesteps - 1)
        return self.sigmas[indices], self.timesteps[indices]

    def scale_latents(self, raw: torch.Tensor) -> torch.Tensor:
        """VAE latents into the transformer's range, with the VAE config's shift and scale."""
        return (raw - self.vae_shift) * self.vae_scale

    def loss(
        self,
        transformer: torch.nn.Module,
        latents: torch.Tensor,
        noise: torch.Tensor,
        sigmas: torch.Tensor,
        timesteps: torch.Tensor,
        text: Conditioning,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """MSE between the transformer's predicted velocity and ``noise - latents`` (fp32)."""
        batch, channels, height, width = latents.shape
        device = latents.device
        sigma = sigmas.to(device=device, dtype=latents.dtype).view(batch, 1, 1, 1)
        noisy = (1.0 - sigma) * latents + sigma * noise
        # Position ids and the guidance input depend only on the batch's shape: made once per bucket.
        key = (batch, height, width, str(device), dtype)
        if key not in self._constants:
            from diffusers import FluxPipeline

            image_ids = FluxPipeline._prepare_latent_image_ids(batch, height // 2, width // 2, device, dtype)
            guidance = None
            if getattr(transformer.config, "guidance_embeds", False):
                guidance = torch.full((batch,), TRAIN_GUIDANCE, device=device, dtype=torch.float32)
            self._constants[key] = (image_ids, guidance)
        image_ids, guidance = self._constants[key]
        prediction = transformer(
            hidden_states=_pack(noisy.to(dtype), batch, channels, height, width),
            # The transformer multiplies by 1000 internally; the script passes timesteps / 1000.
            timestep=(timesteps / 1000.0).to(device=device, dtype=dtype),
            guidance=guidance,
            pooled_projections=text.pooled.to(dtype),
            encoder_hidden_states=text.prompt_embeds.to(dtype),
            txt_ids=text.text_ids.to(dtype),
            img_ids=image_ids,
            return_dict=False,
        )[0]
        prediction = _unpack(prediction, batch, channels, height, width)
        target = noise - latents
        per_sample = ((prediction.float() - target.float()) ** 2).reshape(batch, -1).mean(dim=1)
        return per_sample.mean()

    def text_ids(self, tokens: int, device: torch.device) -> torch.Tensor:
        """FLUX's all-zero position ids of the text tokens, made once per length."""
        key = (tokens, str(device))
        if key not in self._text_ids:
            self._text_ids[key] = torch.zeros(tokens, 3, device=device)
        return self._text_ids[key]


def _pack(latents: torch.Tensor, batch: int, channels: int, height: int, width: int) -> torch.Tensor:
    """FLUX's 2x2 patches, as ``FluxPipeline._pack_latents``: [B, C, H, W] to [B, H/2 * W/2, C * 4]."""
    patches = latents.view(batch, channels, height // 2, 2, width // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(batch, (height // 2) * (width // 2), channels * 4)


def _unpack(packed: torch.Tensor, batch: int, channels: int, height: int, width: int) -> torch.Tensor:
    """Inverse of ``FluxPipeline._pack_latents`` in latent units (the pipeline's helper takes pixels)."""
    unpacked = packed.view(batch, height // 2, width // 2, channels, 2, 2)
    return unpacked.permute(0, 3, 1, 4, 2, 5).reshape(batch, channels, height, width)
