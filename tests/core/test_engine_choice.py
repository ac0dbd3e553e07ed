"""Which engine runs a job when the person names none: the engines' declared preference (traits.rank), the
settings' default first, and in fast-test mode only the engines that declare they run there unasked."""

from __future__ import annotations

import pytest

from engines.interface import Availability
from engines.registry import EngineInfo, engine_class
from isengard_desktop.base.errors import ValidationError
from isengard_desktop.core.engines import choose_engine


def infos(**ready: bool) -> list[EngineInfo]:
    """The real engines' traits, each ready or not (with a reason) as given."""
    return [EngineInfo(name, engine_class(name).traits, Availability(ok, "" if ok else f"{name} is not here."))
            for name, ok in ready.items()]


def test_production_trains_with_ai_toolkit_first_and_fast_test_with_the_built_in_engine() -> None:
    both = infos(diffusers=True, aitoolkit=True)
    assert choose_engine("training", None, both, "production") == "aitoolkit"
    assert choose_engine("training", None, both, "fast-test") == "diffusers"
    assert choose_engine("training", None, infos(diffusers=True, aitoolkit=False), "production") == "diffusers"


def test_images_come_from_the_settings_default_then_by_preference() -> None:
    both = infos(comfyui=True, diffusers=True)
    assert choose_engine("image", None, both, "production", default="comfyui") == "comfyui"
    assert choose_engine("image", None, both, "production", default=None) == "diffusers"
    assert choose_engine("image", None, infos(comfyui=False, diffusers=True), "production", "comfyui") == "diffusers"


def test_a_named_engine_is_used_or_refused_with_its_reason() -> None:
    listed = infos(comfyui=False, diffusers=True, aitoolkit=True)
    assert choose_engine("image", "diffusers", listed, "production") == "diffusers"
    with pytest.raises(ValidationError, match="comfyui is not here"):
        choose_engine("image", "comfyui", listed, "production")
    with pytest.raises(ValidationError, match="no image engine called 'aitoolkit'; image engines: .*diffusers"):
        choose_engine("image", "aitoolkit", listed, "production")


def test_nothing_ready_says_why_for_each_engine() -> None:
    with pytest.raises(ValidationError, match="aitoolkit is not here.*diffusers is not here"):
        choose_engine("training", None, infos(diffusers=False, aitoolkit=False), "production")
