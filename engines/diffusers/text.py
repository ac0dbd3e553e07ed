"""Text embeddings of every caption and sample prompt, computed once before training.

The LoRA trains the transformer only, so each caption always maps to the same embeddings: the two
text encoders (T5-XXL alone is 9 GB in bf16 for FLUX.1-dev) are loaded, run over every distinct text
once, and freed before the transformer is loaded. The embeddings are kept in
``output_dir/cache/text.safetensors`` so a resumed run skips the encoders altogether.
"""

from __future__ import annotations

import gc
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import structlog
import torch
from safetensors.torch import load_file, save

from engines.diffusers.models import settle_imports
from isengard_desktop.base import atomic

log = structlog.get_logger(__name__)

MAX_T5_TOKENS = 512  # FLUX.1-dev's limit and its training length


@dataclass
class TextEmbedding:
    """FLUX's conditioning for one text: T5 token states and CLIP's pooled vector (batch of one)."""

    prompt_embeds: torch.Tensor  # [1, tokens, joint_attention_dim]
    pooled: torch.Tensor  # [1, pooled_projection_dim]


def sequence_length(tokenizer_2: object) -> int:
    """How many T5 tokens to pad prompts to: 512 for FLUX.1-dev, less when the model says so.

    The tiny model declares a short ``model_max_length`` so that a 64 px step is not dominated by
    attention over 512 padding tokens; a real T5 tokenizer declares 512.
    """
    declared = getattr(tokenizer_2, "model_max_length", MAX_T5_TOKENS) or MAX_T5_TOKENS
    return int(min(MAX_T5_TOKENS, declared))


def encode_texts(
    base_model: Path, texts: list[str], cache_file: Path, device: torch.device, dtype: torch.dtype
) -> dict[str, TextEmbedding]:
    """Embeddings for each distinct text, read from ``cache_file`` when it holds them all."""
    distinct = sorted(set(texts))
    fingerprint = _fingerprint(base_model, distinct)
    cached = _read_cache(cache_file, fingerprint, distinct)
    if cached is not None:
        log.info("text_cache_used", path=str(cache_file), texts=len(distinct))
        return cached
    embeddings = _encode(base_model, distinct, device, dtype)
    tensors: dict[str, torch.Tensor] = {}
    for number, text in enumerate(distinct):
        tensors[f"{number}.prompt_embeds"] = embeddings[text].prompt_embeds.float().cpu().contiguous()
        tensors[f"{number}.pooled"] = embeddings[text].pooled.float().cpu().contiguous()
    metadata = {"fingerprint": fingerprint, "texts": json.dumps(distinct)}
    atomic.write_bytes(cache_file, save(tensors, metadata=metadata))
    log.info("text_cache_written", path=str(cache_file), texts=len(distinct))
    return embeddings


def _encode(base_model: Path, texts: list[str], device: torch.device, dtype: torch.dtype) -> dict[str, TextEmbedding]:
    from diffusers import FluxPipeline
    from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5TokenizerFast

    settle_imports()  # the gc.collect below then walks only the text half it frees
    started = time.perf_counter()
    # A pipeline holding only the text half: its encode_prompt is exactly what inference will use.
    pipe = FluxPipeline(
        scheduler=None,
        vae=None,
        transformer=None,
        tokenizer=CLIPTokenizer.from_pretrained(base_model, subfolder="tokenizer"),
        tokenizer_2=T5TokenizerFast.from_pretrained(base_model, subfolder="tokenizer_2"),
        text_encoder=CLIPTextModel.from_pretrained(base_model, subfolder="text_encoder", dtype=dtype).to(device),
        text_encoder_2=T5EncoderModel.from_pretrained(base_model, subfolder="text_encoder_2", dtype=dtype).to(device),
    )
    length = sequence_length(pipe.tokenizer_2)
    out: dict[str, TextEmbedding] = {}
    with torch.no_grad():
        for text in texts:
            prompt_embeds, pooled, _ = pipe.encode_prompt(
                prompt=text, prompt_2=text, device=device, max_sequence_length=length
            )
            out[text] = TextEmbedding(prompt_embeds.float().cpu(), pooled.float().cpu())
    del pipe
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    log.info("texts_encoded", texts=len(texts), tokens=length, seconds=round(time.perf_counter() - started, 3))
    return out


def _read_cache(cache_file: Path, fingerprint: str, texts: list[str]) -> dict[str, TextEmbedding] | None:
    if not cache_file.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(cache_file), framework="pt") as handle:
        if (handle.metadata() or {}).get("fingerprint") != fingerprint:
            return None
    tensors = load_file(str(cache_file))
    return {
        text: TextEmbedding(tensors[f"{number}.prompt_embeds"], tensors[f"{number}.pooled"])
        for number, text in enumerate(texts)
    }


def _fingerprint(base_model: Path, texts: list[str]) -> str:
    # The text encoders' configs and weight sizes stand for the model; the texts are part of the key.
    digest = hashlib.sha256()
    for sub in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"):
        for path in sorted((base_model / sub).glob("*")):
            if path.is_file():
                digest.update(f"{sub}/{path.name}:{path.stat().st_size}".encode())
                if path.suffix == ".json":
                    digest.update(path.read_bytes())
    digest.update(json.dumps(texts).encode("utf-8"))
    return digest.hexdigest()
