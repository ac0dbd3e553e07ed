"""The tiny FLUX model: a complete, loadable diffusers folder, byte-identical on every build, ~1 MB."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import torch
from diffusers import FluxPipeline

from engines.diffusers.tiny_model import build_tiny_flux, ensure_tiny_flux


def tree_digest(root: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + data)
            size += len(data)
    return digest.hexdigest(), size


def test_builds_byte_identical_and_small(tmp_path: Path) -> None:
    started = time.perf_counter()
    first = build_tiny_flux(tmp_path / "a")
    seconds = time.perf_counter() - started
    second = build_tiny_flux(tmp_path / "b")
    (digest_a, size_a), (digest_b, _) = tree_digest(first), tree_digest(second)
    assert digest_a == digest_b
    assert size_a < 2 * 1024 * 1024
    assert seconds < 5  # ~0.3 s once torch and diffusers are imported; generous for a loaded CI box


def test_ensure_builds_once_in_place(tmp_path: Path) -> None:
    path = ensure_tiny_flux(tmp_path)
    stamp = (path / "model_index.json").stat().st_mtime_ns
    assert ensure_tiny_flux(tmp_path) == path == tmp_path / "tiny-flux"
    assert (path / "model_index.json").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-flux"]  # no staging folder left behind


def test_loads_as_flux_and_generates_reproducibly(tiny_flux: Path) -> None:
    from engines.diffusers.sampling import generate_image

    pipe = FluxPipeline.from_pretrained(tiny_flux)
    pipe.set_progress_bar_config(disable=True)
    assert sum(p.numel() for p in pipe.transformer.parameters()) < 200_000
    first = generate_image(pipe, "a photo of ohwx person", seed=3, steps=2, width=64, height=48)
    again = generate_image(pipe, "a photo of ohwx person", seed=3, steps=2, width=64, height=48)
    other = generate_image(pipe, "a photo of ohwx person", seed=4, steps=2, width=64, height=48)
    assert first.size == (64, 48)
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other.tobytes()


def test_any_prompt_tokenizes(tiny_flux: Path) -> None:
    pipe = FluxPipeline.from_pretrained(tiny_flux)
    clip, t5 = pipe.tokenizer, pipe.tokenizer_2
    # Common caption words are whole tokens: <bos> photo <eos>.
    assert len(clip("photo").input_ids) == 3
    assert t5("photo").input_ids[0] != t5.unk_token_id
    for prompt in ["Zürich at night, 35mm — 🙂", "ohwx", "", "x" * 500]:
        ids = clip(prompt, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        assert ids.shape == (1, 77)
        assert int(ids.max()) < pipe.text_encoder.config.vocab_size
        ids_2 = t5(prompt, padding="max_length", max_length=32, truncation=True, return_tensors="pt").input_ids
        assert int(ids_2.max()) < pipe.text_encoder_2.config.vocab_size
    with torch.no_grad():
        embeds, pooled, _ = pipe.encode_prompt("Zürich 🙂", prompt_2=None, max_sequence_length=32)
    assert embeds.shape == (1, 32, 32) and pooled.shape == (1, 32)
