"""Fast-test mode's verdicts on the embedded ComfyUI, without a ComfyUI: which toggles run on tiny built models,
which model each uses, and that the core and the engine name the fast-test base model alike. The builds and the
runs themselves are in tests/jobs/test_comfyui_fast_test.py (slow, real ComfyUI)."""

from __future__ import annotations

from pathlib import Path

from engines.comfyui.fast_test_models import FILES, MARKER, BuildFailed, ensure
from engines.comfyui.readiness import default_toggle_options, toggle_readiness
from isengard_desktop.core import generation
from tests.engines.comfyui.test_readiness import ALL_NODES, CORE


def test_in_fast_test_toggles_with_their_nodes_are_ready_on_tiny_models() -> None:
    ready = toggle_readiness(ALL_NODES, {}, fast_test=True)  # empty folders: the worker builds the models
    assert {name: state.available for name, state in ready.items()} == \
        {"upscale": True, "controlnet": True, "ipadapter": False, "facedetailer": True}
    assert "FLUX.1-dev only" in ready["ipadapter"].reason
    assert not toggle_readiness(CORE, {}, fast_test=True)["facedetailer"].available  # no Impact packs: still says so
    assert default_toggle_options("facedetailer", {}, fast_test=True) == {
        "model": Path(FILES["detector"]).name, "guide_size": 64, "max_size": 128}
    assert default_toggle_options("upscale", {"upscale_models": ["4x-UltraSharp.pth"]}, fast_test=True) == {
        "model": Path(FILES["upscale"]).name}  # the tiny model matches the tiny checkpoint, a real one would not


def test_the_core_asks_for_the_model_the_engine_builds(tmp_path: Path) -> None:
    from isengard_desktop.storage.volume import Volume

    request = generation.build_request(Volume.open(tmp_path), "fast-test", "comfyui", "a photo")
    assert request.base_model == MARKER and (request.width, request.height) == (64, 64)
    assert generation.build_request(Volume.open(tmp_path), "production", "comfyui", "a photo").base_model == "auto"


def test_a_failed_build_says_so_in_a_sentence(tmp_path: Path) -> None:
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\necho 'No module named comfy' >&2\nexit 1\n")
    fake_python.chmod(0o755)
    try:
        ensure(tmp_path / "models", tmp_path, fake_python)
    except BuildFailed as exc:
        assert "could not build the fast-test models" in str(exc) and "No module named comfy" in str(exc)
    else:
        raise AssertionError("a failing builder must raise BuildFailed")
    assert not (tmp_path / "models" / FILES["checkpoint"]).exists()
