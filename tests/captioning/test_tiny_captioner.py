"""The tiny random-weight Qwen3-VL runs for real through transformers' generate, on real photographs, and its noise
still becomes valid captions."""

from __future__ import annotations

import hashlib
from pathlib import Path

from engines.captioning.captioner import Captioner, load_image
from engines.captioning.tiny_model import SPECIAL_TOKENS, TINY_NAME, build_tiny_qwen3_vl, ensure_tiny_captioner
from isengard_desktop.base.caption_text import TARGET_LENGTH, finish_caption, instruction, trigger_count
from tests.captioning.conftest import real_photos


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_the_tiny_model_is_a_qwen3_vl_folder_built_the_same_every_time(tmp_path: Path) -> None:
    import json

    first = ensure_tiny_captioner(tmp_path / "models")
    assert first.name == TINY_NAME and ensure_tiny_captioner(tmp_path / "models") == first  # built once
    config = json.loads((first / "config.json").read_text())
    assert config["architectures"] == ["Qwen3VLForConditionalGeneration"] and config["model_type"] == "qwen3_vl"
    assert {"model.safetensors", "tokenizer.json", "preprocessor_config.json", "generation_config.json"} <= {
        p.name for p in first.iterdir()}
    assert _digest(build_tiny_qwen3_vl(tmp_path / "again")) == _digest(first)


def test_generate_runs_on_real_photos_and_every_caption_is_valid(tmp_path: Path) -> None:
    captioner = Captioner(ensure_tiny_captioner(tmp_path / "models"), threads=1)
    # The prompt carries one <|image_pad|> per merged 2x2 patch of the resized photo, as Qwen3-VL's processor does.
    photo = load_image(next(real_photos(tmp_path / "photos", ("astronaut",)).iterdir()))
    batch = captioner.inputs(photo, instruction())
    pads = int((batch["input_ids"] == captioner.image_token_id).sum())
    assert pads == int(batch["image_grid_thw"][0].prod()) // 4 and pads == int(batch["mm_token_type_ids"].sum())
    assert batch["pixel_values"].shape[0] == int(batch["image_grid_thw"][0].prod())

    for photo_path in sorted(real_photos(tmp_path / "more", ("astronaut", "chelsea", "coffee")).iterdir()):
        answer = captioner.answer(load_image(photo_path), instruction(), max_new_tokens=40)
        assert answer.new_tokens > 0 and answer.text.strip()  # random weights, real tokens out of generate
        assert not any(token in answer.text for token in SPECIAL_TOKENS)
        caption, _usable = finish_caption(answer.text, "ohwx_ada")
        assert trigger_count(caption, "ohwx_ada") == 1 and len(caption) <= TARGET_LENGTH and caption.isprintable()
    again = captioner.answer(load_image(photo_path), instruction(), max_new_tokens=40)
    assert again.text == answer.text  # greedy: the same photo gives the same answer


def test_a_stop_request_ends_generation_at_the_next_token(tmp_path: Path) -> None:
    captioner = Captioner(ensure_tiny_captioner(tmp_path / "models"), threads=1)
    photo = load_image(next(real_photos(tmp_path / "photos", ("coffee",)).iterdir()))
    asked = iter(range(1000))
    answer = captioner.answer(photo, instruction(), should_stop=lambda: next(asked) >= 3, max_new_tokens=96)
    assert answer.new_tokens <= 4
