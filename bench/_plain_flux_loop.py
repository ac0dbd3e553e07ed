"""A minimal plain diffusers + peft FLUX LoRA loop: the baseline for bench/train_overhead.py.

Each step does what diffusers' own ``examples/dreambooth/train_dreambooth_lora_flux.py`` does with
``--cache_latents`` (the recipe the app's trainer follows, engines/diffusers/flow.py), so both sides do the same
work: a fresh sample of each photo's cached latent distribution, the timestep from
``compute_density_for_timestep_sampling`` (its default density), ``timestep=timesteps / 1000``, and the per-sample
squared error averaged as the script writes it. Its sigma lookup is a plain index (the script's runs a Python loop),
and it has no accelerate, tqdm or logging: a lower bound of that script's step.

Usage: python bench/_plain_flux_loop.py MODEL_DIR IMAGES_DIR STEPS OUT_LORA
Prints one JSON line: {"wall_s", "loop_s", "steps", "s_per_step", "loop_start", "loop_end"} (the last two are
epoch seconds, so the benchmark can split the whole process into before, during and after the loop).
"""

import json
import sys
import time

T0 = time.perf_counter()

import torch  # noqa: E402
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel  # noqa: E402
from diffusers.training_utils import compute_density_for_timestep_sampling  # noqa: E402
from peft import LoraConfig, get_peft_model_state_dict  # noqa: E402
from PIL import Image  # noqa: E402


def main() -> None:
    model, images_dir, steps, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    pipe = FluxPipeline.from_pretrained(model, torch_dtype=torch.float32)
    with torch.no_grad():
        prompt_embeds, pooled, text_ids = pipe.encode_prompt("a photo of ohwx_ada", None, max_sequence_length=32)
    vae: AutoencoderKL = pipe.vae
    from pathlib import Path

    latents_cache = []  # one latent distribution per photo, as the script's --cache_latents keeps them
    for path in sorted(Path(images_dir).iterdir()):
        image = Image.open(path).convert("RGB").resize((64, 48))
        pixels = torch.from_numpy(__import__("numpy").array(image)).permute(2, 0, 1).float() / 127.5 - 1
        with torch.no_grad():
            latents_cache.append(vae.encode(pixels.unsqueeze(0)).latent_dist)
    transformer: FluxTransformer2DModel = pipe.transformer
    transformer.requires_grad_(False)
    # The same layers the app adapts: every attention and MLP projection of the double and single blocks.
    double = ["attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj", "attn.add_k_proj",
              "attn.add_v_proj", "attn.to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj",
              "ff_context.net.2"]
    single = ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp", "proj_out"]
    targets = [f"transformer_blocks.{i}.{n}" for i in range(len(transformer.transformer_blocks)) for n in double]
    targets += [f"single_transformer_blocks.{i}.{n}" for i in range(len(transformer.single_transformer_blocks))
                for n in single]
    transformer.add_adapter(LoraConfig(r=16, lora_alpha=16, init_lora_weights="gaussian", target_modules=targets))
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=4e-4)
    scheduler: FlowMatchEulerDiscreteScheduler = pipe.scheduler
    timesteps_table, sigmas_table = scheduler.timesteps, scheduler.sigmas
    num_train_timesteps = scheduler.config.num_train_timesteps
    shift, scale = vae.config.shift_factor, vae.config.scaling_factor
    b, c, h, w = latents_cache[0].mean.shape
    image_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, "cpu", torch.float32)
    guidance = torch.full((b,), 3.5)
    loop_start, loop_start_epoch = time.perf_counter(), time.time()
    for step in range(steps):
        latents = (latents_cache[step % len(latents_cache)].sample() - shift) * scale
        noise = torch.randn_like(latents)
        u = compute_density_for_timestep_sampling(weighting_scheme="none", batch_size=b)
        indices = (u * num_train_timesteps).long()
        timesteps = timesteps_table[indices]
        sigma = sigmas_table[indices].view(b, 1, 1, 1)
        noisy = (1 - sigma) * latents + sigma * noise
        packed = FluxPipeline._pack_latents(noisy, b, c, h, w)
        pred = transformer(hidden_states=packed, timestep=timesteps / 1000, guidance=guidance,
                           pooled_projections=pooled, encoder_hidden_states=prompt_embeds, txt_ids=text_ids,
                           img_ids=image_ids, return_dict=False)[0]
        pred = FluxPipeline._unpack_latents(pred, h * 8, w * 8, 8)
        target = noise - latents
        loss = torch.mean(((pred.float() - target.float()) ** 2).reshape(b, -1), 1).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.detach().item()  # the script logs each step's loss
    loop_s, loop_end_epoch = time.perf_counter() - loop_start, time.time()
    FluxPipeline.save_lora_weights(out, transformer_lora_layers=get_peft_model_state_dict(transformer),
                                   weight_name="plain.safetensors")
    print(json.dumps({"wall_s": time.perf_counter() - T0, "loop_s": loop_s, "steps": steps,
                      "s_per_step": loop_s / steps, "loop_start": loop_start_epoch,
                      "loop_end": loop_end_epoch}), flush=True)


if __name__ == "__main__":
    main()
