"""`isengard train CHARACTER --plan-for-vram GB`: a real CLI process on a fresh volume with no model, no photos and
no GPU prints the memory plan and starts nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def isengard(volume: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ISENGARD_MODE": "fast-test"}  # even here: the plan is always for FLUX.1-dev on a GPU
    return subprocess.run([sys.executable, "-m", "isengard_desktop", "--volume", str(volume), *args],
                          capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)


def test_plan_for_a_24_gb_card_as_json(tmp_path: Path) -> None:
    proc = isengard(tmp_path / "vol", "train", "ada", "--preset", "balanced", "--engine", "aitoolkit",
                    "--plan-for-vram", "24", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["verdict"] == "fits" and plan["settings"]["quantize"] is True
    assert plan["phases"]["training"] < plan["peak_gb"] <= 24
    assert not (tmp_path / "vol" / "jobs").exists() or not any((tmp_path / "vol" / "jobs").iterdir())


def test_refused_plan_names_the_card_it_needs(tmp_path: Path) -> None:
    proc = isengard(tmp_path / "vol", "train", "ada", "--preset", "quick", "--engine", "aitoolkit",
                    "--plan-for-vram", "16")
    assert proc.returncode == 1
    assert "Does not fit the 16 GB card" in proc.stdout and "24 GB card" in proc.stdout


def test_high_quality_adjusted_on_24_gb(tmp_path: Path) -> None:
    proc = isengard(tmp_path / "vol", "train", "ada", "--preset", "high", "--engine", "aitoolkit",
                    "--plan-for-vram", "24", "--json")
    plan = json.loads(proc.stdout)
    assert proc.returncode == 0 and plan["verdict"] == "adjusted"
    assert plan["configured_needs_gb"] == 48 and "quantize" in " ".join(plan["changes"])
