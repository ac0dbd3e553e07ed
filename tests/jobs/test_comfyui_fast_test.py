"""Fast-test mode on the embedded ComfyUI, end to end: the worker builds ComfyUI's tiny checkpoint and the
Advanced toggles' tiny random-weight models (engines/comfyui/fast_test_models.py) at their first use, and every
toggle but the FLUX-only IP-Adapter runs its real workflow in the real ComfyUI with its node packs: Upscale
(an ESRGAN), ControlNet (a ControlNet for the tiny checkpoint), FaceDetailer (a YOLOv8 detector through the
Impact packs). Slow: a real ComfyUI, about a minute to build the checkpoint once into the test cache."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engines.comfyui.paths import locate
from isengard_desktop.context import AppContext
from isengard_desktop.core import generation
from tests.engines.comfyui.flux_shaped import copy_node_packs, start_comfyui

LOCATED = locate() if os.environ.get("ISENGARD_COMFYUI_DIR") else "ISENGARD_COMFYUI_DIR is not set"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(isinstance(LOCATED, str), reason="needs a real ComfyUI: set ISENGARD_COMFYUI_DIR and "
                       f"ISENGARD_COMFYUI_PYTHON ({LOCATED})"),
]
CACHE = Path(os.environ.get("ISENGARD_TEST_CACHE", Path.home() / ".cache" / "isengard-tests"))


@pytest.fixture(scope="module")
def fast_ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppContext]:
    """A fast-test volume holding only the tiny checkpoint (linked from the test cache): the toggles' models are
    the worker's to build."""
    from engines.comfyui.fast_test_models import FILES, ensure

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ISENGARD_MODE", "fast-test")
        checkout, python = LOCATED  # type: ignore[misc]
        checkpoint = ensure(CACHE, checkout, python)["checkpoint"]
        ctx = AppContext.open(tmp_path_factory.mktemp("fast") / "vol", "fast-test")
        missing = copy_node_packs(checkout, ctx.volume.root)
        if missing is not None:
            pytest.skip(f"the pinned node packs are not installed beside this ComfyUI ({missing})")
        target = ctx.volume.models_dir / FILES["checkpoint"]
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(checkpoint, target)
        start_comfyui(ctx)
        yield ctx
        ctx.close()


def _generate(ctx: AppContext, **advanced) -> np.ndarray:
    request = generation.build_request(ctx.volume, ctx.mode, "comfyui", "a portrait photo of a woman", [], seed=21,
                                       steps=3, advanced=advanced)
    final = ctx.jobs.wait(ctx.jobs.submit("generation", "comfyui", request.to_dict()).id, timeout=600)
    assert final.state == "succeeded", final.error
    with Image.open(final.result["images"][0]) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_in_fast_test_every_toggle_but_ipadapter_is_ready(fast_ctx: AppContext) -> None:
    from isengard_desktop.core.engines import load

    readiness = load(fast_ctx.volume, "comfyui").advanced_readiness()
    for toggle in ("upscale", "controlnet", "facedetailer"):
        assert readiness[toggle].available and "fast-test" in readiness[toggle].reason, toggle
    assert not readiness["ipadapter"].available and "FLUX.1-dev only" in readiness["ipadapter"].reason


def test_each_toggle_runs_its_workflow_on_its_tiny_model(fast_ctx: AppContext, tmp_path: Path) -> None:
    ctx = fast_ctx
    plain = _generate(ctx)
    assert plain.shape == (64, 64, 3)

    upscaled = _generate(ctx, upscale={})
    assert upscaled.shape == (128, 128, 3)  # the ESRGAN doubles the picture...
    assert np.abs(upscaled[::2, ::2] - plain).mean() < 2.0  # ...the one just generated (its colour channels pass)

    control = tmp_path / "edges.png"
    hint = Image.new("RGB", (64, 64), "black")
    hint.paste((255, 255, 255), (16, 0, 24, 64))
    hint.save(control)
    controlled = _generate(ctx, controlnet={"image": str(control), "strength": 1.0})
    assert controlled.shape == plain.shape and np.abs(controlled - plain).mean() > 1.0  # the hint reached the UNet

    detailed = _generate(ctx, facedetailer={})
    assert detailed.shape == plain.shape and np.abs(detailed - plain).mean() > 1.0  # the face was sampled again

    models = ctx.volume.models_dir
    assert sorted(p.name for p in (models / "ultralytics" / "bbox").iterdir()) == ["isengard-fast-test-face_yolov8n.pt"]


def test_all_three_toggles_together(fast_ctx: AppContext, tmp_path: Path) -> None:
    control = tmp_path / "hint.png"
    Image.new("RGB", (64, 64), (255, 255, 255)).save(control)
    both = _generate(fast_ctx, controlnet={"image": str(control)}, facedetailer={}, upscale={})
    assert both.shape == (128, 128, 3)


def test_isengard_generate_with_comfyui_builds_its_tiny_model_on_a_new_volume(tmp_path: Path) -> None:
    """The newcomer's command: a fresh volume, `isengard generate --engine comfyui` in fast-test mode."""
    env = {**os.environ, "ISENGARD_MODE": "fast-test"}
    command = [sys.executable, "-m", "isengard_desktop", "--volume", str(tmp_path / "vol"), "generate", "--engine",
               "comfyui", "--prompt", "a lighthouse at dusk", "--steps", "2", "--seed", "4"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    out = Path(done.stdout.strip().splitlines()[-1])
    with Image.open(out) as image:
        assert image.size == (64, 64)
    built = tmp_path / "vol" / "models" / "checkpoints" / "isengard-fast-test-sd15.safetensors"
    assert built.stat().st_size > 100_000_000  # built by the job's worker, into the volume's model folder
