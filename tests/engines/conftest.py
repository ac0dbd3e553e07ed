"""Fixtures for the engine tests: the tiny FLUX model (built once per session) and a tiny dataset.

Everything runs for real on the CPU with the tiny random-weight model: no fakes of any engine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from engines.interface import DatasetItem, TrainingSpec

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The project's own warnings are errors (CONVENTIONS 9); upstream ones keep pytest's default.
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.filterwarnings("error::Warning:engines"))


@pytest.fixture(scope="session")
def tiny_flux(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    from engines.diffusers.tiny_model import ensure_tiny_flux

    # Under pytest-xdist the workers' temporary folders share a parent: the first worker builds the model there
    # and the other finds it (ensure_tiny_flux publishes it by a rename).
    base = tmp_path_factory.getbasetemp()
    return ensure_tiny_flux((base.parent if worker_id != "master" else base) / "models")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> list[DatasetItem]:
    """Four small pictures of different sizes and shapes (a face-like disc on a coloured ground)."""
    folder = tmp_path_factory.mktemp("dataset")
    sizes = [(64, 64), (96, 64), (64, 96), (80, 80)]
    grounds = [(200, 40, 40), (40, 160, 60), (40, 60, 200), (220, 200, 40)]
    items = []
    for number, (size, ground) in enumerate(zip(sizes, grounds, strict=True)):
        image = Image.new("RGB", size, ground)
        width, height = size
        ImageDraw.Draw(image).ellipse((width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=(240, 220, 200))
        path = folder / f"photo_{number}.png"
        image.save(path)
        items.append(DatasetItem(str(path), "a photo of ohwx person"))
    return items


@pytest.fixture
def make_spec(tiny_flux: Path, tiny_dataset: list[DatasetItem], tmp_path: Path) -> Callable[..., TrainingSpec]:
    """A fast training spec on the tiny model; keyword arguments override any field."""

    def make(**overrides: Any) -> TrainingSpec:
        values: dict[str, Any] = {
            "base_model": str(tiny_flux),
            "base_model_name": "tiny-flux",
            "output_dir": str(tmp_path / "job"),
            "dataset": list(tiny_dataset),
            "trigger_word": "ohwx",
            "lora_name": "ohwx",
            "preset": "quick",
            "steps": 20,
            "learning_rate": 5e-3,
            "rank": 8,
            "alpha": 8,
            "resolutions": [64],
            "batch_size": 2,
            "save_every": 1000,
            "sample_every": 1000,
            "sample_prompts": [],
            "sample_steps": 2,
            "seed": 7,
            "device": "cpu",
            "num_threads": 1,
        }
        values.update(overrides)
        return TrainingSpec(**values)

    return make


class Recorder:
    """An ``emit`` that keeps every event, and a ``should_stop`` that turns true after a given step."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.stop_after = stop_after

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def should_stop(self) -> bool:
        return self.stop_after is not None and any(
            e["event"] == "progress" and e["step"] >= self.stop_after for e in self.events
        )

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    @property
    def losses(self) -> list[float]:
        return [e["loss"] for e in self.of("progress")]


@pytest.fixture
def recorder() -> Callable[..., Recorder]:
    return Recorder
