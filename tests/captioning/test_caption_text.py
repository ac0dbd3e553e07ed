"""The rules that turn whatever the model says into a caption: the trigger word exactly once, fixed traits left out
by default, printable text, a length bound, and the default caption when the answer is not a description."""

from __future__ import annotations

import random

import pytest

from isengard_desktop.base.caption_text import (
    TARGET_LENGTH,
    default_caption,
    finish_caption,
    instruction,
    trigger_count,
)

TRIGGER = "ohwx_ada"
DESCRIPTION = ("The image shows a young woman with long blonde hair and blue eyes, wearing a red jacket, standing in a "
               "park in soft evening light. She is smiling at the camera.")


def test_a_good_answer_names_the_person_with_the_trigger_and_drops_fixed_traits() -> None:
    caption, usable = finish_caption(DESCRIPTION, TRIGGER)
    assert usable
    assert caption.startswith(f"a photo of {TRIGGER} woman")
    assert "red jacket" in caption and "park" in caption and "smiling" in caption
    for trait in ("blonde", "hair", "eyes", "young", "The image shows"):
        assert trait not in caption


def test_keep_traits_keeps_them() -> None:
    caption, usable = finish_caption(DESCRIPTION, TRIGGER, keep_traits=True)
    assert usable and "long blonde hair and blue eyes" in caption and trigger_count(caption, TRIGGER) == 1
    assert "hair" in instruction(keep_traits=True) and "Do not describe" in instruction()


@pytest.mark.parametrize("answer", [
    f"{TRIGGER} {TRIGGER} and OHWX_ADA stand in a kitchen holding a cup of coffee",  # the model repeats the trigger
    "Two dogs playing on a beach at sunset, waves in the background",  # nobody mentioned
    "Sure! Here is a caption: a close-up of a 30-year-old man in a grey suit in an office",
    "*Caption:* \"A person sitting at a desk\" \x00\x07 with a laptop, smiling",
])
def test_the_trigger_word_is_there_exactly_once(answer: str) -> None:
    caption, usable = finish_caption(answer, TRIGGER)
    assert usable
    assert trigger_count(caption, TRIGGER) == 1, caption
    assert caption.isprintable() and "*" not in caption and '"' not in caption
    assert not caption.lower().startswith(("sure", "here is", "caption"))


def test_a_trigger_inside_another_word_is_not_counted() -> None:
    assert trigger_count(f"{TRIGGER}s and x{TRIGGER} and {TRIGGER}-2", TRIGGER) == 0
    assert trigger_count(f"a photo of {TRIGGER}, smiling", TRIGGER) == 1


@pytest.mark.parametrize("answer", ["", "   ", "Fw\ufffd\ufffdCiH\n\x17w\ufffd'6I\ufffdW`B", "I can't help with that.",
                                    "hair eyes skin freckles"])
def test_an_answer_that_is_no_description_gives_the_default_caption(answer: str) -> None:
    assert finish_caption(answer, TRIGGER) == (default_caption(TRIGGER), False)


def test_a_rambling_or_looping_answer_is_bounded() -> None:
    loop = "a woman in a red coat " + "walking in the city " * 80
    caption, usable = finish_caption(loop, TRIGGER)
    assert usable and len(caption) <= TARGET_LENGTH and trigger_count(caption, TRIGGER) == 1
    assert caption.count("walking in the city") == 1  # a phrase said again and again is said once
    long = ". ".join(f"Sentence number {i} describes the background in some detail" for i in range(40))
    caption, _ = finish_caption(long, TRIGGER)
    assert len(caption) <= TARGET_LENGTH and caption.endswith(".")


def test_random_text_always_yields_a_valid_caption() -> None:
    """Whatever comes out of a random-weight model: the invariants hold for every answer."""
    rng = random.Random(12)
    alphabet = "abcdefghijklmnopqrstuvwxyz ,.;:!?'\"-\n\t*#" + TRIGGER + "\u00e9\u4e2d\ufffd\x00"
    words = "woman man person hair eyes young old red jacket beach smiling the a of in with".split()
    for _ in range(500):
        if rng.random() < 0.5:
            answer = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 600)))
        else:
            answer = " ".join(rng.choice(words + [TRIGGER]) for _ in range(rng.randint(0, 200)))
        caption, _usable = finish_caption(answer, TRIGGER, keep_traits=rng.random() < 0.5)
        assert trigger_count(caption, TRIGGER) == 1, (answer, caption)
        assert 0 < len(caption) <= TARGET_LENGTH and caption.isprintable() and caption == " ".join(caption.split())
