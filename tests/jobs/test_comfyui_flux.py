"""The real FLUX workflow on a real ComfyUI with LoRAs: one in the app's format, one trained by the real AI-Toolkit
(slow: ~7 GB of FLUX-shaped random weights, built once into the test cache; about three minutes for the first
prompt's T5 on a CPU, and when AI-Toolkit is installed a few more for its two training steps on the same
full-width model, run before ComfyUI starts so the two never hold their memory at once)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engines.comfyui.paths import locate
from isengard_desktop.context import AppContext

LOCATED = locate() if os.environ.get("ISENGARD_COMFYUI_DIR") else "ISENGARD_COMFYUI_DIR is not set"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        isinstance(LOCATED, str),
        reason=f"needs a real ComfyUI: set ISENGARD_COMFYUI_DIR and ISENGARD_COMFYUI_PYTHON ({LOCATED})",
    ),
]
CACHE = Path(os.environ.get("ISENGARD_TEST_CACHE", Path.home() / ".cache" / "isengard-tests"))




def _aitoolkit_installed() -> bool:
    from engines.aitoolkit.engine import AIToolkitEngine

    return bool(os.environ.get("ISENGARD_AITOOLKIT_DIR")) and AIToolkitEngine().availability().available


@dataclass
class FluxSetup:
    ctx: AppContext
    lora: Path  # the app's format, built with the model files
    aitoolkit_lora: Path | None  # trained by AI-Toolkit on the same model; None without AI-Toolkit
    training_seconds: float = 0.0
    no_node_packs: Path | None = None  # where the pinned node packs were looked for in vain


def _train_with_aitoolkit(ctx: AppContext, comfyui_flux: Path, photos: Path) -> Path:
    """Two real AI-Toolkit steps (through the app's adapter) on the FLUX-shaped model as a diffusers folder."""
    from isengard_desktop.core.training import build_spec
    from tests.engines.comfyui.flux_shaped_diffusers import ensure_flux_shaped_diffusers

    folder = ensure_flux_shaped_diffusers(CACHE, comfyui_flux)
    character = ctx.characters.create("Ada", "ohwx_ada")
    photos.mkdir()
    for i in range(2):
        image = Image.new("RGB", (80, 64), (30 + 90 * i, 120, 200 - 60 * i))
        ImageDraw.Draw(image).ellipse((20, 10, 60, 54), fill=(240, 200, 160))
        image.save(photos / f"{i}.png")
    ctx.importer.run(character.id, [photos])
    # The top learning rate presets allow, so two steps move the zero-initialised LoRA enough to see.
    spec, _ = build_spec(ctx.volume, ctx.dataset, character, "fast-test", "quick",
                         {"steps": 2, "save_every": 2, "sample_every": 1000, "rank": 4, "alpha": 4,
                          "learning_rate": 1e-2, "batch_size": 1})
    # No sample pictures: AI-Toolkit draws them before and after training, a minute each on this model.
    spec.base_model, spec.base_model_name, spec.sample_prompts = str(folder), "FLUX.1-dev", []
    final = ctx.jobs.wait(ctx.jobs.submit("training", "aitoolkit", spec.to_dict(), character.id).id, timeout=1800)
    assert final.state == "succeeded", final.error
    return Path(final.result["lora"])


def _add_ipadapter_models(ctx: AppContext) -> None:
    """The IP-Adapter-shaped file and SigLIP-shaped folder, linked where the pack looks (models/ipadapter-flux and
    models/clip_vision/siglip-so400m-patch14-384)."""
    from tests.engines.comfyui.ipadapter_shaped import SIGLIP, ensure_ipadapter_shaped

    adapter, siglip = ensure_ipadapter_shaped(CACHE)
    for folder, sources in ((ctx.volume.models_dir / "ipadapter-flux", [adapter]),
                            (ctx.volume.models_dir / "clip_vision" / SIGLIP, sorted(siglip.iterdir()))):
        folder.mkdir(parents=True, exist_ok=True)
        for source in sources:
            os.link(source, folder / source.name)


@pytest.fixture(scope="module")
def flux_ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FluxSetup]:
    from tests.engines.comfyui.flux_shaped import copy_node_packs, ensure_flux_shaped, start_comfyui_with

    # Module-wide, and undone after the module: no other test inherits this mode.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ISENGARD_MODE", "fast-test")
        checkout, python = LOCATED  # type: ignore[misc]
        files = ensure_flux_shaped(CACHE / "flux-shaped", checkout, python)
        root = tmp_path_factory.mktemp("flux")
        ctx = AppContext.open(root / "vol", "fast-test")
        setup = FluxSetup(ctx, files["loras"], None)
        try:
            if _aitoolkit_installed():
                started = time.monotonic()
                setup.aitoolkit_lora = _train_with_aitoolkit(ctx, files["diffusion_models"], root / "photos")
                setup.training_seconds = time.monotonic() - started
            setup.no_node_packs = copy_node_packs(checkout, ctx.volume.root)
            _add_ipadapter_models(ctx)
            start_comfyui_with(ctx, files)
            yield setup
        finally:
            ctx.jobs.shutdown(wait=10)
            ctx.close()


def test_flux_workflow_with_a_lora(flux_ctx: FluxSetup) -> None:
    from tests.engines.comfyui.flux_shaped import flux_image

    ctx, lora = flux_ctx.ctx, flux_ctx.lora
    plain = flux_image(ctx, None)
    with_lora = flux_image(ctx, lora, 1.0)
    zero = flux_image(ctx, lora, 0.0)
    assert np.abs(with_lora - plain).mean() > 0.5  # the LoRA's keys reached FLUX's double block
    assert np.array_equal(zero, plain)
    log = (ctx.volume.root / "logs" / "comfyui.log").read_text()
    assert "lora key not loaded" not in log
    assert "model_type FLUX" in log


def test_a_lora_trained_by_aitoolkit_changes_the_flux_picture(flux_ctx: FluxSetup) -> None:
    from safetensors import safe_open

    from tests.engines.comfyui.flux_shaped import flux_image

    if flux_ctx.aitoolkit_lora is None:
        pytest.skip("needs AI-Toolkit too: set ISENGARD_AITOOLKIT_DIR and ISENGARD_AITOOLKIT_PYTHON")
    ctx, lora = flux_ctx.ctx, flux_ctx.aitoolkit_lora
    with safe_open(str(lora), "pt") as handle:
        keys = list(handle.keys())
    # AI-Toolkit's own FLUX targets: both block kinds, the attention and the MLPs.
    assert any(".single_transformer_blocks." in k for k in keys) and any(".ff." in k for k in keys), keys
    log_file = ctx.volume.root / "logs" / "comfyui.log"
    seen = len(log_file.read_text()) if log_file.exists() else 0
    with_lora = flux_image(ctx, lora, 1.0)
    zero = flux_image(ctx, lora, 0.0)
    assert np.abs(with_lora - zero).mean() > 0.5, "AI-Toolkit's two steps changed nothing ComfyUI draws"
    log = log_file.read_text()[seen:]
    assert "lora key not loaded" not in log  # every key AI-Toolkit wrote found its FLUX weight


def test_ipadapter_reference_face_reaches_the_flux_picture(flux_ctx: FluxSetup, tmp_path: Path) -> None:
    from tests.engines.comfyui.flux_shaped import flux_image

    if flux_ctx.no_node_packs is not None:
        pytest.skip(f"the pinned node packs are not installed beside this ComfyUI ({flux_ctx.no_node_packs})")
    ctx = flux_ctx.ctx
    references = []
    for name, colour in (("red", (220, 30, 30)), ("blue", (30, 40, 220))):
        image = Image.new("RGB", (64, 64), colour)
        ImageDraw.Draw(image).ellipse((16, 8, 48, 56), fill=(240, 200, 160))
        image.save(tmp_path / f"{name}.png")
        references.append(tmp_path / f"{name}.png")
    plain = flux_image(ctx, None)
    red = flux_image(ctx, None, advanced={"ipadapter": {"image": str(references[0]), "strength": 1.0}})
    blue = flux_image(ctx, None, advanced={"ipadapter": {"image": str(references[1]), "strength": 1.0}})
    assert np.abs(red - plain).mean() > 0.5, "the IP-Adapter changed nothing"
    assert np.abs(red - blue).mean() > 0.5, "the reference picture does not reach the generated one"
