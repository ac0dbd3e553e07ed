"""A tiny random-weight FLUX-architecture model, built locally for fast-test mode and the tests.

It is a complete diffusers folder (transformer, VAE, CLIP and T5 text encoders with their tokenizers,
flow-matching scheduler) that ``FluxPipeline.from_pretrained`` loads like FLUX.1-dev, only with
widths shrunk so that everything runs on a CPU in milliseconds. Nothing is downloaded: the tokenizers
are built from Python objects, because ``tokenizers``' trainers do not give the same vocabulary twice,
and the weights come from a fixed seed, so every build is byte-identical (about 1 MB).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import structlog

from isengard_desktop.base import atomic

log = structlog.get_logger(__name__)

TINY_NAME = "tiny-flux"
SEED = 0

# Words that appear in captions and sample prompts get whole-word tokens, so the tiny text encoders
# see short, meaningful sequences; anything else still tokenizes (CLIP falls back to byte tokens,
# T5 to single characters or <unk>).
WORDS = (
    "a an the of and in on at with without to for from by is are photo photograph portrait picture image "
    "close up closeup face head shot headshot person man woman boy girl child people smiling smile looking "
    "camera standing sitting walking wearing shirt dress jacket hat glasses hair beard red green blue black "
    "white yellow brown gray grey orange purple pink dark light bright background studio outdoor outdoors "
    "indoor indoors street park beach city forest garden room office window sunlight night day sky "
    "mountain water sea tree trees flowers cinematic lighting high quality detailed style painting drawing "
    "sketch oil watercolor digital art realistic young old front side view profile full body half "
    "ohwx sks tok trigger character"
).split()

# Per-character pieces for T5 so that any text made of these characters avoids <unk>.
T5_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-_()[]/&+*#@%=<>"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from the 256 byte values to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(printable, chars, strict=True)}


def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary: every byte (so any text tokenizes) plus merges that make WORDS whole.

    The merges come from a tiny BPE training run over WORDS written out here, with ties broken by
    sorting, so it is deterministic; applying BPE merges in their learned order reproduces the
    training segmentation, so each of WORDS becomes one token.
    """
    symbols = list(_bytes_to_unicode().values())
    vocab_list = symbols + [symbol + "</w>" for symbol in symbols]
    words = [list(word[:-1]) + [word[-1] + "</w>"] for word in dict.fromkeys(WORDS)]
    merges: list[tuple[str, str]] = []
    while True:
        counts: dict[tuple[str, str], int] = {}
        for parts in words:
            for pair in zip(parts, parts[1:], strict=False):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        if best[0] + best[1] not in vocab_list:  # two merge paths may spell the same token
            vocab_list.append(best[0] + best[1])
        words = [_merge(parts, best) for parts in words]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(vocab_list)}, merges


def _merge(parts: list[str], pair: tuple[str, str]) -> list[str]:
    merged: list[str] = []
    index = 0
    while index < len(parts):
        if index + 1 < len(parts) and (parts[index], parts[index + 1]) == pair:
            merged.append(parts[index] + parts[index + 1])
            index += 2
        else:
            merged.append(parts[index])
            index += 1
    return merged


def t5_vocab() -> list[tuple[str, float]]:
    """A unigram vocabulary: the three specials, whole words (preferred by score), then single characters."""
    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(f"▁{word}", -1.0) for word in WORDS]
    pieces += [(char, -5.0) for char in T5_CHARS]
    pieces += [(f"▁{char}", -4.0) for char in T5_CHARS]
    return pieces


def _components() -> dict[str, object]:
    # Imported here: this module must stay importable without torch for the worker's cheap paths.
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

    vocab, merges = clip_vocab_and_merges()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    # FluxPipeline pads T5 prompts to max_sequence_length; the tiny model keeps that short (see
    # engines.diffusers.text.sequence_length) so a 64 px step is not dominated by 512 text tokens.
    tokenizer_2 = T5TokenizerFast(vocab=t5_vocab(), extra_ids=0, model_max_length=32)

    torch.manual_seed(SEED)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )
    torch.manual_seed(SEED + 1)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=8,
        sample_size=64,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.1159,
        scaling_factor=0.3611,
    )
    torch.manual_seed(SEED + 2)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            projection_dim=32,
            hidden_act="quick_gelu",
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    torch.manual_seed(SEED + 3)
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2),
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            feed_forward_proj="gated-gelu",
            is_encoder_decoder=False,
            pad_token_id=0,
            eos_token_id=1,
        )
    )
    # FLUX.1-dev's scheduler settings: static shift 3 for training, resolution-dependent shift at inference.
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    return {
        "scheduler": scheduler,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "text_encoder_2": text_encoder_2,
        "tokenizer_2": tokenizer_2,
        "transformer": transformer,
    }


def build_tiny_flux(dest: Path) -> Path:
    """Write the tiny FLUX model as a diffusers folder at ``dest`` (created; must not hold another model)."""
    import torch
    from diffusers import FluxPipeline

    dest = Path(dest)
    # Seeding inside fork_rng leaves the caller's global random state as it was.
    with torch.random.fork_rng(devices=[]):
        pipe = FluxPipeline(**_components())
    pipe.save_pretrained(dest, safe_serialization=True)
    _portable_tokenizer_configs(dest)
    portable_clip_keys(dest)
    log.info("tiny_model_built", path=str(dest))
    return dest


def _portable_tokenizer_configs(dest: Path) -> None:
    """Make the saved tokenizers loadable by transformers 4.x too (AI-Toolkit's and ComfyUI's environments).

    transformers 5 writes ``"extra_special_tokens": []``; 4.x reads that key as a dict and fails on a
    list. An empty list means "none", which is also what leaving the key out means to both. And 4.x's
    slow CLIPTokenizer (which AI-Toolkit uses) reads vocab.json and merges.txt, which 5 no longer writes.
    """
    import json

    vocab, merges = clip_vocab_and_merges()
    atomic.write_text(dest / "tokenizer" / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    atomic.write_text(dest / "tokenizer" / "merges.txt",
                      "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))

    for config_path in sorted(dest.glob("tokenizer*/tokenizer_config.json")):
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if config.get("extra_special_tokens") == []:
            del config["extra_special_tokens"]
            atomic.write_text(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def portable_clip_keys(dest: Path) -> None:
    """Write the CLIP text encoder's keys with their ``text_model.`` prefix, as transformers 4.x reads them.

    transformers 5 saves CLIPTextModel without the prefix; AI-Toolkit's transformers 4.57 then matches none of the
    keys and quietly starts CLIP from fresh random values ("newly initialized"). Both versions read prefixed keys.
    """
    from safetensors.torch import load_file, save_file

    path = dest / "text_encoder" / "model.safetensors"
    state = load_file(str(path))
    save_file({(k if k.startswith("text_model.") else f"text_model.{k}"): v for k, v in state.items()}, str(path),
              metadata={"format": "pt"})


def ensure_tiny_flux(models_dir: Path) -> Path:
    """The tiny model's folder in ``models_dir``, built there first if it is absent.

    Built in a temporary sibling folder and renamed into place, so a crash or a concurrent build never
    leaves a half-written model under the final name.
    """
    models_dir = Path(models_dir)
    target = models_dir / TINY_NAME
    if (target / "model_index.json").is_file():
        return target
    staging = atomic.staging_dir(models_dir, TINY_NAME)
    try:
        build_tiny_flux(staging)
        atomic.publish_dir(staging, target)
    except OSError:
        # Another worker published it first (the target is now a complete, non-empty folder): use theirs.
        if not (target / "model_index.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
