"""Issue 11 items 5 and 8: training overrides have checked limits (NaN and infinity refused), and the
fast-test disk check before a run asks for at least what the trainer's own check will ask."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from engines.interface import DatasetItem, TrainingSpec
from isengard_desktop.base.errors import ValidationError
from isengard_desktop.base.mode import FAST_TEST
from isengard_desktop.context import AppContext
from isengard_desktop.core.presets import LIMITS, all_presets, load_preset
from isengard_desktop.core.training import FAST_TEST_DISK_BYTES, build_spec
from tests.conftest import tmpfs

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("field", "value", "sentence"), [
    ("learning_rate", math.nan, "Learning rate must be a number between 1e-06 and 0.01, not nan."),
    ("learning_rate", math.inf, "Learning rate must be a number between 1e-06 and 0.01, not inf."),
    ("learning_rate", 0.5, "Learning rate must be a number between 1e-06 and 0.01, not 0.5."),
    ("steps", 99_999_999_999, "Steps must be a whole number between 1 and 100000, not 99999999999."),
    ("steps", 2.5, "Steps must be a whole number between 1 and 100000, not 2.5."),
    ("rank", 100_000, "Rank must be a whole number between 1 and 256, not 100000."),
    ("batch_size", 0, "Batch size must be a whole number between 1 and 16, not 0."),
    ("save_every", True, "Save every must be a whole number between 1 and 100000, not True."),
])
def test_an_override_out_of_range_is_refused_naming_the_field_and_its_range(field, value, sentence) -> None:
    with pytest.raises(ValidationError) as refused:
        load_preset("balanced").values(fast_test=False, overrides={field: value})
    assert str(refused.value) == sentence


def test_every_preset_is_within_the_limits_and_the_edges_are_accepted() -> None:
    for preset in all_presets():
        for fast in (False, True):
            preset.values(fast_test=fast)
    edges = {key: high for key, (_low, high) in LIMITS.items() if key != "seed"}
    assert load_preset("quick").values(False, edges)["steps"] == 100_000


def test_the_cli_refuses_nan_and_huge_values_before_any_job(tmp_path: Path) -> None:
    volume = tmp_path / "vol"

    def isengard(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "isengard_desktop", "--volume", str(volume), *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=120,
                              env={**os.environ, "ISENGARD_MODE": "fast-test"})

    assert isengard("characters", "create", "Ada", "--trigger", "ohwx_ada").returncode == 0
    photo = tmp_path / "ada.jpg"
    Image.new("RGB", (512, 512), "teal").save(photo)
    assert isengard("dataset", "import", "Ada", str(photo)).returncode == 0
    for flag, value, field in (("--learning-rate", "nan", "Learning rate"), ("--learning-rate", "inf", "Learning rate"),
                               ("--steps", "99999999999", "Steps"), ("--rank", "100000", "Rank")):
        done = isengard("train", "Ada", flag, value)
        assert done.returncode != 0 and f"isengard: {field} must be" in done.stderr and "between" in done.stderr
        assert "Traceback" not in done.stderr
    assert json.loads(isengard("jobs", "list", "--json").stdout) == [], "no run was started"


def test_the_fast_test_disk_check_asks_at_least_what_the_trainer_checks(tmp_path: Path) -> None:
    from engines.diffusers.preflight import disk_needed
    from engines.diffusers.tiny_model import ensure_tiny_flux

    model = ensure_tiny_flux(tmp_path / "models")
    photo = tmp_path / "a.png"
    Image.new("RGB", (64, 64)).save(photo)
    for preset in all_presets():
        values = preset.values(fast_test=True)
        spec = TrainingSpec(base_model=str(model), base_model_name="tiny", output_dir=str(tmp_path / "job"),
                            dataset=[DatasetItem(str(photo), "a photo")], trigger_word="ohwx", lora_name="ada",
                            preset=preset.name, steps=values["steps"], learning_rate=values["learning_rate"],
                            rank=values["rank"], alpha=values["alpha"], resolutions=values["resolutions"],
                            batch_size=values["batch_size"], save_every=values["save_every"],
                            sample_every=values["sample_every"], sample_prompts=["a"],
                            sample_steps=values["sample_steps"], seed=0, low_vram=False, device="cpu")
        assert FAST_TEST_DISK_BYTES >= disk_needed(spec), preset.name


def test_a_volume_too_small_for_the_trainer_is_refused_before_the_run(tmp_path: Path) -> None:
    """A 200 MB disk: more than the old 0.05 GB figure, less than the trainer's own check (0.27 GB)."""
    with tmpfs(tmp_path / "small", "200m") as mount:
        ctx = AppContext.open(mount / "vol", FAST_TEST)
        try:
            ada = ctx.characters.create("Ada", "ohwx_ada")
            Image.new("RGB", (512, 512), "teal").save(tmp_path / "ada.jpg")
            ctx.importer.run(ada.id, [tmp_path / "ada.jpg"])
            _spec, check = build_spec(ctx.volume, ctx.dataset, ada, FAST_TEST, "quick")
        finally:
            ctx.close()
        assert not check.ok and "GB free" in check.problems[0] and "0.28 GB" in check.problems[0]
