"""The AI-Toolkit output parser, fed with output captured from a real run (upstream 4d5a649a, tiny FLUX, CPU)."""

from __future__ import annotations

from pathlib import Path

from engines.aitoolkit.progress import parse_bar, parse_saved, parse_saving, split_redraws

FIXTURES = Path(__file__).parent / "fixtures" / "aitoolkit"


def test_progress_from_a_real_run() -> None:
    lines = split_redraws((FIXTURES / "run_6_steps.stderr.txt").read_text(encoding="utf-8"))
    bars = [p for p in (parse_bar(line, "ada") for line in lines) if p is not None]
    # tqdm redraws at most every 0.1 s, so the last bar seen may be one step short of the end.
    assert [p.step for p in bars][-1] >= 5 and {p.total for p in bars} == {6}
    with_loss = [p for p in bars if p.loss is not None]
    assert with_loss and all(0 < p.loss < 10 for p in with_loss)
    assert all(p.lr == 1e-4 for p in with_loss)
    # the sampler's own bar ("Generating Images") is not training progress
    assert not any(parse_bar(line, "ada") for line in lines if line.startswith("Generating Images"))


def test_save_markers_from_a_real_run() -> None:
    lines = split_redraws((FIXTURES / "run_6_steps.stdout.txt").read_text(encoding="utf-8"))
    assert [s for s in map(parse_saving, lines) if s is not None] == [3]
    saved = [s for s in map(parse_saved, lines) if s]
    assert saved[0].endswith("ada_000000003.safetensors") and saved[-1].endswith("ada.safetensors")


def test_seconds_per_iteration_and_unknown_eta() -> None:
    slow = parse_bar("my_lora:  50%|█████     | 3/6 [00:14<00:14,  4.70s/it, lr: 1.0e-04 loss: 1.483e+00]", "my_lora")
    assert slow.step == 3 and abs(slow.it_per_s - 1 / 4.7) < 1e-9 and slow.eta_s == 14 and slow.loss == 1.483
    start = parse_bar("my_lora:   0%|          | 0/6 [00:00<?, ?it/s]", "my_lora")
    assert start is None  # no rate yet: nothing to report
