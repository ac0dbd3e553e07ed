"""A minimal plain diffusers + peft FLUX LoRA loop: the baseline for bench/train_overhead.py.

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

    pixels = []
    for path in sorted(Path(images_dir).iterdir()):
        image = Image.open(path).convert("RGB").resize((64, 48))
        pixels.append(torch.from_numpy(__import__("numpy").asarray(image)).permute(2, 0, 1).float() / 127.5 - 1)
    with torch.no_grad():
        latents_all = vae.encode(torch.stack(pixels)).latent_dist.sample()
    latents_all = (latents_all - vae.config.shift_factor) * vae.config.scaling_factor
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
    sigmas_table = scheduler.sigmas
    b, c, h, w = 1, latents_all.shape[1], latents_all.shape[2], latents_all.shape[3]
    image_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, "cpu", torch.float32)
    guidance = torch.full((b,), 3.5)
    loop_start, loop_start_epoch = time.perf_counter(), time.time()
    for step in range(steps):
        latents = latents_all[step % len(latents_all)].unsqueeze(0)
        noise = torch.randn_like(latents)
        index = torch.randint(0, len(sigmas_table) - 1, (b,))
        sigma = sigmas_table[index].view(b, 1, 1, 1)
        noisy = (1 - sigma) * latents + sigma * noise
        packed = FluxPipeline._pack_latents(noisy, b, c, h, w)
        pred = transformer(hidden_states=packed, timestep=sigma.view(b), guidance=guidance,
                           pooled_projections=pooled, encoder_hidden_states=prompt_embeds, txt_ids=text_ids,
                           img_ids=image_ids, return_dict=False)[0]
        pred = FluxPipeline._unpack_latents(pred, h * 8, w * 8, 8)
        loss = torch.nn.functional.mse_loss(pred, noise - latents)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    loop_s, loop_end_epoch = time.perf_counter() - loop_start, time.time()
    FluxPipeline.save_lora_weights(out, transformer_lora_layers=get_peft_model_state_dict(transformer),
                                   weight_name="plain.safetensors")
    print(json.dumps({"wall_s": time.perf_counter() - T0, "loop_s": loop_s, "steps": steps,
                      "s_per_step": loop_s / steps, "loop_start": loop_start_epoch,
                      "loop_end": loop_end_epoch}), flush=True)


if __name__ == "__main__":
    main()
