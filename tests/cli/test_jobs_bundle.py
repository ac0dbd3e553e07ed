"""Issue 11 item 6: `isengard jobs bundle JOB_ID --output FILE`, the window's debug bundle without the window,
made from a real (tiny, fast-test) training run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_jobs_bundle_writes_the_redacted_bundle_without_the_persons_images(tmp_path: Path) -> None:
    home = tmp_path / "home" / "ada_lovelace"
    env = {**os.environ, "HOME": str(home), "ISENGARD_MODE": "fast-test", "HF_TOKEN": "hf_abcdefghijklmnopqrstu"}
    volume = home / "Isengard"

    def isengard(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "isengard_desktop", "--volume", str(volume), *args],
                              capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        return done

    isengard("characters", "create", "Ada", "--trigger", "ohwx_ada")
    photos = home / "Photos"
    photos.mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (512, 512), (90 * i, 100, 50)).save(photos / f"ada {i}.jpg")
    isengard("dataset", "import", "Ada", str(photos))
    job = json.loads(isengard("train", "Ada", "--preset", "quick", "--steps", "2", "--save-every", "2",
                              "--sample-every", "2", "--json").stdout)
    assert job["state"] == "succeeded"

    answer = json.loads(isengard("jobs", "bundle", job["id"], "--output", str(tmp_path / "help"), "--json").stdout)
    bundle = Path(answer["bundle"])
    assert bundle == tmp_path / "help.zip" and answer["images"] == 0 and answer["images_left_out"] >= 1
    with zipfile.ZipFile(bundle) as archive:
        names = archive.namelist()
        text = "\n".join(archive.read(n).decode("utf-8", "replace") for n in names)
    assert "job/job.json" in names and "job/job.log" in names and "bundle.json" in names
    assert not any(n.endswith((".png", ".safetensors", ".pt")) for n in names)
    assert "ada_lovelace" not in text and "~/Isengard/images/" in text, "the home folder (user name) is ~"

    told = isengard("jobs", "bundle", job["id"], "--output", str(tmp_path / "with.zip"), "--include-images").stdout
    assert "sample image(s), which show the person, are included" in told
    with zipfile.ZipFile(tmp_path / "with.zip") as archive:
        assert any(n.startswith("job/samples/") and n.endswith(".png") for n in archive.namelist())
