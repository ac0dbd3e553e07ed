"""A tiny random-weight Qwen3-VL, built locally for fast-test mode and the tests: the captioner's code path runs for
real (image processor, tokenizer, vision tower, M-RoPE, ``generate``) in well under a second per photo on a CPU.

It is a folder like the real ``Qwen/Qwen3-VL-4B-Instruct`` (config.json, generation_config.json, model.safetensors,
preprocessor_config.json, tokenizer.json, tokenizer_config.json) with the widths shrunk. Nothing is downloaded and
every build is the same bytes: the weights come from a fixed seed, and the tokenizer is built from Python objects
(``tokenizers``' trainers do not give the same vocabulary twice): Qwen's chat and vision special tokens plus a
word-level vocabulary of caption words. Random weights then answer with random caption words ("jacket the smiling
hair blonde beach ...") rather than random bytes, so fast-test exercises every rule of ``base/caption_text.py``
(cleaning, leaving out fixed traits, the trigger word once, the length limit) on a real ``generate`` output.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import structlog

from isengard_desktop.base import atomic

log = structlog.get_logger(__name__)

TINY_NAME = "tiny-qwen3-vl"
SEED = 0
# Qwen's special tokens the captioner's prompt uses, in the order of the real vocabulary's added tokens.
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>")
# Small images: a 64x64 photo is 16 patches of 16 px, merged 2x2 into 4 visual tokens.
MIN_PIXELS, MAX_PIXELS = 32 * 32, 64 * 64


# Words a caption is made of, fixed traits included (so the filter that leaves them out has something to do).
WORDS = (
    "a an the of and in on at with to by is her his their photo portrait close-up half body full person woman man "
    "wearing shirt dress jacket hat glasses scarf sweater coat suit smiling laughing serious looking camera away "
    "standing sitting walking holding cup phone book outdoors indoors street park beach city forest garden room "
    "office cafe kitchen window sunlight soft light evening night day sky trees wall background blurred studio "
    "red green blue black white brown grey dark bright warm natural hair blonde long short curly eyes brown-eyed "
    "young old freckles skin"
).split()
UNKNOWN = "<unk>"


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: index for index, word in enumerate([UNKNOWN, *dict.fromkeys(WORDS)])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNKNOWN))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces
    tok.add_special_tokens([UNKNOWN, *SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=UNKNOWN, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")


def build_tiny_qwen3_vl(folder: Path) -> Path:
    """Write the tiny model's folder (the same bytes every time)."""
    import torch
    from transformers import GenerationConfig, Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from engines.captioning.captioner import image_processor_class

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16, "max_position_embeddings": 1024,
            # head_dim 16 -> 8 rotary frequencies split over (time, height, width) as the real model splits 64.
            "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [2, 3, 3],
                                "mrope_interleaved": True},
            "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": 16,
            "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": 32, "num_position_embeddings": 16,
            "deepstack_visual_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(SEED)
    model = Qwen3VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
                                               do_sample=False)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    image_processor_class()(patch_size=16, temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3,
                            image_std=[0.5] * 3,
                            size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}).save_pretrained(folder)
    log.info("tiny_captioner_built", folder=str(folder), parameters=sum(p.numel() for p in model.parameters()))
    return folder


def ensure_tiny_captioner(models_dir: Path) -> Path:
    """The tiny model's folder in ``models_dir``, built there first if it is absent (built in a temporary sibling
    and renamed into place, so a crash or a concurrent build never leaves half a model under the final name)."""
    target = Path(models_dir) / TINY_NAME
    if (target / "model.safetensors").is_file():
        return target
    staging = atomic.staging_dir(Path(models_dir), TINY_NAME)
    try:
        build_tiny_qwen3_vl(staging)
        atomic.publish_dir(staging, target)
    except OSError:
        if not (target / "model.safetensors").is_file():  # another worker published it first: use theirs
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
