"""The diffusers engine trains the tiny FLUX model for real: loss, cadence, cancel/resume, the LoRA file."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import FluxPipeline
from safetensors import safe_open
from safetensors.torch import load_file

from engines.diffusers import DiffusersEngine
from engines.diffusers.errors import TrainingError
from engines.diffusers.preflight import preflight


def test_loss_goes_down_on_an_overfit_set(make_spec, recorder) -> None:
    spec = make_spec(steps=50)
    record = recorder()
    assert DiffusersEngine().train(spec, record.emit, record.should_stop) == "succeeded"
    losses = record.losses
    assert len(losses) == 50
    assert statistics.mean(losses[-10:]) < 0.9 * statistics.mean(losses[:10])
    last = record.of("progress")[-1]
    assert last["step"] == last["total"] == 50 and last["lr"] == spec.learning_rate
    assert last["it_per_s"] > 0 and last["eta_s"] == 0


def test_checkpoints_and_samples_follow_the_cadence(make_spec, recorder) -> None:
    spec = make_spec(steps=12, save_every=4, sample_every=5, sample_prompts=["ohwx smiling", "ohwx in a park"])
    record = recorder()
    assert DiffusersEngine().train(spec, record.emit, record.should_stop) == "succeeded"
    out = Path(spec.output_dir)
    assert [e["step"] for e in record.of("checkpoint")] == [4, 8, 12]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_000008", "step_000012"]  # newest 2
    assert [(e["step"], e["prompt"]) for e in record.of("sample")] == [
        (5, "ohwx smiling"),
        (5, "ohwx in a park"),
        (10, "ohwx smiling"),
        (10, "ohwx in a park"),
        (12, "ohwx smiling"),
        (12, "ohwx in a park"),  # and once at the end
    ]
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        f"step_{s:06d}_{i}.png" for s in (5, 10, 12) for i in (0, 1)
    ]
    folder = out / "checkpoints" / "step_000012"
    optimizer = torch.load(folder / "optimizer.pt", weights_only=True)
    assert optimizer["state"] and optimizer["param_groups"][0]["lr"] == spec.learning_rate
    state = json.loads((folder / "state.json").read_text())
    assert state["step"] == 12 and set(state["rng"]) >= {"python", "numpy", "torch"}
    assert state["data_order"]["epoch"] * state["data_order"]["batches_per_epoch"] + state["data_order"]["index"] == 12
    assert record.events[-1]["event"] == "artifact"  # the final done is the worker's (jobs/worker.py), not the engine's


def test_cancel_then_resume_is_bitwise_identical(make_spec, recorder, tmp_path: Path) -> None:
    settings = {"steps": 14, "save_every": 5, "sample_every": 6, "sample_prompts": ["ohwx"]}
    whole = make_spec(output_dir=str(tmp_path / "whole"), **settings)
    straight = recorder()
    DiffusersEngine().train(whole, straight.emit, straight.should_stop)

    parted = make_spec(output_dir=str(tmp_path / "parted"), **settings)
    first = recorder(stop_after=8)  # between two checkpoints: the stop itself must save one
    assert DiffusersEngine().train(parted, first.emit, first.should_stop) == "cancelled"
    assert first.of("checkpoint")[-1]["step"] == 8
    assert "done" not in {e["event"] for e in first.events}  # the worker sends it, with the state returned
    assert not (tmp_path / "parted" / "ohwx.safetensors").exists()

    parted.resume = True
    second = recorder()
    assert DiffusersEngine().train(parted, second.emit, second.should_stop) == "succeeded"
    assert [e["step"] for e in second.of("progress")] == list(range(9, 15))
    assert first.losses + second.losses == straight.losses  # exactly, not approximately
    a = load_file(str(tmp_path / "whole" / "ohwx.safetensors"))
    b = load_file(str(tmp_path / "parted" / "ohwx.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sample = "samples/step_000012_0.png"
    assert (tmp_path / "whole" / sample).read_bytes() == (tmp_path / "parted" / sample).read_bytes()


def test_lora_file_is_portable_and_changes_the_image(make_spec, recorder, tiny_flux: Path) -> None:
    spec = make_spec(steps=10, rank=4, alpha=8, learning_rate=1e-2)
    DiffusersEngine().train(spec, recorder().emit, lambda: False)
    path = Path(spec.output_dir) / "ohwx.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        keys = list(handle.keys())
    assert metadata["isengard.trigger_word"] == "ohwx"
    assert metadata["isengard.base_model"] == "tiny-flux"
    assert (metadata["isengard.steps"], metadata["isengard.rank"], metadata["isengard.alpha"]) == ("10", "4", "8")
    assert metadata["isengard.preset"] == "quick" and metadata["isengard.engine"] == "diffusers"
    assert "diffusers" in metadata["isengard.engine_version"] and "peft" in metadata["isengard.engine_version"]
    assert metadata["isengard.app_version"]
    assert all(k.startswith("transformer.") and k.endswith((".lora_A.weight", ".lora_B.weight")) for k in keys)
    assert any(".single_transformer_blocks.0.proj_mlp." in k for k in keys)
    assert not any(k.startswith("transformer.proj_out.") for k in keys)  # the output layer is not adapted

    from engines.diffusers.sampling import generate_image

    pipe = FluxPipeline.from_pretrained(tiny_flux)
    pipe.set_progress_bar_config(disable=True)
    settings = {"seed": 5, "steps": 3, "width": 64, "height": 64}
    plain = generate_image(pipe, "a photo of ohwx person", **settings).tobytes()
    assert generate_image(pipe, "a photo of ohwx person", **settings).tobytes() == plain
    pipe.load_lora_weights(str(path))
    assert generate_image(pipe, "a photo of ohwx person", **settings).tobytes() != plain


def test_alpha_is_baked_so_loaders_apply_the_trained_scale(make_spec, recorder, tiny_flux: Path) -> None:
    """With alpha = 2 x rank, the loaded file must reproduce the trained adapter's output exactly."""
    from engines.diffusers import checkpoint, lora

    spec = make_spec(steps=6, rank=4, alpha=8, learning_rate=1e-2, save_every=6)
    DiffusersEngine().train(spec, recorder().emit, lambda: False)
    trained = FluxPipeline.from_pretrained(tiny_flux).transformer
    lora.add_lora(trained, rank=4, alpha=8)
    saved = checkpoint.load_checkpoint(Path(spec.output_dir) / "checkpoints" / "step_000006")
    lora.load_lora_state(trained, saved.lora)
    loaded = FluxPipeline.from_pretrained(tiny_flux)
    loaded.load_lora_weights(str(Path(spec.output_dir) / "ohwx.safetensors"))

    generator = torch.Generator().manual_seed(0)
    inputs = {
        "hidden_states": torch.randn(1, 16, 64, generator=generator),
        "encoder_hidden_states": torch.randn(1, 8, 32, generator=generator),
        "pooled_projections": torch.randn(1, 32, generator=generator),
        "timestep": torch.tensor([0.5]),
        "guidance": torch.tensor([3.5]),
        "img_ids": FluxPipeline._prepare_latent_image_ids(1, 4, 4, "cpu", torch.float32),
        "txt_ids": torch.zeros(8, 3),
        "return_dict": False,
    }
    base = FluxPipeline.from_pretrained(tiny_flux).transformer
    with torch.no_grad():
        expected, got, untouched = trained(**inputs)[0], loaded.transformer(**inputs)[0], base(**inputs)[0]
    assert not torch.allclose(expected, untouched, atol=1e-4)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_refuses_to_overwrite_an_earlier_run(make_spec, recorder) -> None:
    spec = make_spec(steps=4, save_every=2)
    DiffusersEngine().train(spec, recorder().emit, lambda: False)
    with pytest.raises(TrainingError, match="already holds checkpoints"):
        DiffusersEngine().train(spec, recorder().emit, lambda: False)


def test_clear_errors_before_any_model_loads(make_spec, recorder, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="dataset is empty"):
        DiffusersEngine().train(make_spec(dataset=[]), recorder().emit, lambda: False)
    assert preflight(make_spec()) == []
    problems = preflight(make_spec(base_model=str(tmp_path / "nowhere")))
    assert len(problems) == 1 and "not a diffusers FLUX model" in problems[0]
    with pytest.raises(TrainingError, match="cannot be a file name"):
        DiffusersEngine().train(make_spec(lora_name="../escape"), recorder().emit, lambda: False)


def test_engine_is_available_and_light_to_import() -> None:
    engine = DiffusersEngine()
    assert engine.name == "diffusers" and engine.kinds == ("training", "image")
    assert engine.availability().available
    code = "import sys, engines.diffusers; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2]).returncode == 0


def test_cancel_during_setup_stops_before_training(tiny_flux, tiny_dataset, tmp_path) -> None:
    from engines.diffusers.trainer import train
    from engines.interface import TrainingSpec

    spec = TrainingSpec(base_model=str(tiny_flux), base_model_name="tiny", output_dir=str(tmp_path / "run"),
                        dataset=tiny_dataset, trigger_word="ohwx", lora_name="x", steps=50, resolutions=[64],
                        save_every=10, sample_every=10, sample_prompts=["a photo of ohwx"], sample_steps=2)
    events: list[dict] = []
    calls = {"n": 0}

    def stop_on_second_check() -> bool:
        calls["n"] += 1
        return calls["n"] >= 2  # the first check passes; the next one, mid set-up, asks to stop

    assert train(spec, events.append, stop_on_second_check) == "cancelled"
    assert [e["event"] for e in events if e["event"] in ("progress", "done")] == []  # no step, and done is the worker's
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())
