"""The real FLUX workflow on a real ComfyUI with a LoRA in the app's format (slow: ~7 GB of FLUX-shaped random
weights, built once into the test cache, and about three minutes for the first prompt's T5 on a CPU)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engines.comfyui.paths import locate
from isengard_desktop.context import AppContext
from isengard_desktop.core import generation

LOCATED = locate() if os.environ.get("ISENGARD_COMFYUI_DIR") else "ISENGARD_COMFYUI_DIR is not set"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        isinstance(LOCATED, str),
        reason=f"needs a real ComfyUI: set ISENGARD_COMFYUI_DIR and ISENGARD_COMFYUI_PYTHON ({LOCATED})",
    ),
]
CACHE = Path(os.environ.get("ISENGARD_TEST_CACHE", Path.home() / ".cache" / "isengard-tests"))
FOLDERS = {"diffusion_models": "diffusion_models", "text_encoders_clip": "text_encoders",
           "text_encoders_t5": "text_encoders", "vae": "vae", "loras": "loras"}


@pytest.fixture(scope="module")
def flux_ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppContext, Path]]:
    from tests.engines.comfyui.flux_shaped import ensure_flux_shaped

    # Module-wide, and undone after the module: no other test inherits this mode.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ISENGARD_MODE", "fast-test")
        checkout, python = LOCATED  # type: ignore[misc]
        files = ensure_flux_shaped(CACHE / "flux-shaped", checkout, python)
        ctx = AppContext.open(tmp_path_factory.mktemp("flux") / "vol", "fast-test")
        for role, path in files.items():
            folder = ctx.volume.models_dir / FOLDERS[role]
            folder.mkdir(parents=True, exist_ok=True)
            os.link(path, folder / path.name)
        ctx.start_service("comfyui")
        service = ctx.service("comfyui")
        deadline = time.monotonic() + 180
        while service.status().state == "starting" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert service.status().state == "ready", service.status().detail
        yield ctx, files["loras"]
        ctx.close()


def _image(ctx: AppContext, lora: Path | None, strength: float = 1.0) -> np.ndarray:
    loras = []
    if lora is not None:
        loras = [(generation.LoraOption(1, None, "flux-shaped", ctx.volume.loras_dir / lora.name, "FLUX.1-dev",
                                        "diffusers", 1, ""), strength)]
    request = generation.build_request(ctx.volume, ctx.mode, "comfyui", "a portrait photo", loras, seed=5, steps=2)
    # Fast-test sizes, but the FLUX files in the folders ("auto"), not fast-test's tiny SD1.5 checkpoint: this test
    # is about the FLUX workflow with a LoRA.
    request.base_model, request.base_model_name = generation.COMFYUI_AUTO_MODEL, "FLUX.1-dev"
    final = ctx.jobs.wait(ctx.jobs.submit("generation", "comfyui", request.to_dict()).id, timeout=900)
    assert final.state == "succeeded", final.error
    with Image.open(final.result["images"][0]) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_flux_workflow_with_a_lora(flux_ctx: tuple[AppContext, Path]) -> None:
    ctx, lora = flux_ctx
    plain = _image(ctx, None)
    with_lora = _image(ctx, lora, 1.0)
    zero = _image(ctx, lora, 0.0)
    assert np.abs(with_lora - plain).mean() > 0.5  # the LoRA's keys reached FLUX's double block
    assert np.array_equal(zero, plain)
    log = (ctx.volume.root / "logs" / "comfyui.log").read_text()
    assert "lora key not loaded" not in log
    assert "model_type FLUX" in log
