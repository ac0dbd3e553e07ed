"""`isengard models ...` end to end: real CLI processes, real download jobs, a loopback fake hub, a tiny catalogue.

The token lives in a test file keyring (the download worker reads it itself); HF_HUB_CACHE points at an empty
temporary folder so the cache of whoever runs the tests is never read.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import tmpfs
from tests.models import tiny_catalogue as tiny
from tests.models.fake_hub import FakeHub

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_test_token_cli"


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    fake = FakeHub().start()
    tiny.publish(fake, TOKEN)
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def env(tmp_path: Path, hub: FakeHub) -> dict[str, str]:
    """The environment of every CLI process of a test: the fake hub behind HF_ENDPOINT, a test keyring."""
    values = {**os.environ, "ISENGARD_MODE": "fast-test", "HF_ENDPOINT": hub.url,
              "HF_HUB_CACHE": str(tmp_path / "hf-cache"), "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
              "ISENGARD_MODEL_CATALOGUE": str(tiny.write_catalogue(tmp_path)),
              "PYTHON_KEYRING_BACKEND": "tests.models.file_keyring.FileKeyring",
              "ISENGARD_TEST_KEYRING": str(tmp_path / "keyring.json"),
              "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    values.pop("HF_TOKEN", None)
    return values


def with_token(env: dict[str, str]) -> None:
    """Store the token as the app does, in the test keyring the worker process will read."""
    script = "from isengard_desktop.core.secrets import set_hf_token; import sys; set_hf_token(sys.argv[1])"
    subprocess.run([sys.executable, "-c", script, TOKEN], env=env, check=True, timeout=60)


def run(volume: Path, env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "isengard_desktop", "--volume", str(volume), *args],
                          capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def comfy_status(volume: Path, env: dict[str, str]) -> dict:
    out = run(volume, env, "models", "list", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)[0]["engines"]


def test_list_json_shows_each_engine_files_and_states(tmp_path: Path, env: dict[str, str]) -> None:
    volume = tmp_path / "vol"
    engines = comfy_status(volume, env)
    assert set(engines) == {"diffusers", "aitoolkit", "comfyui"}
    comfy = engines["comfyui"]
    assert comfy["state"] == "missing" and comfy["missing_bytes"] == comfy["total_bytes"] > 0
    assert {f["dest"] for f in comfy["files"]} >= {"vae/ae.safetensors", "text_encoders/clip_l.safetensors"}
    tiny.place(volume / "models", "ae", "vae/ae.safetensors")
    ae = next(f for f in comfy_status(volume, env)["comfyui"]["files"] if f["dest"] == "vae/ae.safetensors")
    assert (ae["state"], ae["source"], ae["where"]) == ("present", "volume", str(volume / "models/vae/ae.safetensors"))


def test_get_one_file_into_a_models_folder_and_never_outside(tmp_path: Path, env: dict[str, str]) -> None:
    volume = tmp_path / "vol"
    out = run(volume, env, "models", "get", tiny.ENCODERS, "clip_l.safetensors", "--to", "loras/shared", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["state"] == "succeeded" and result["kind"] == "download"
    dest = volume / "models/loras/shared/clip_l.safetensors"
    assert dest.read_bytes() == tiny.content("clip_l")
    assert not list(dest.parent.glob("*.partial"))

    refused = run(volume, env, "models", "get", tiny.ENCODERS, "clip_l.safetensors", "--to", "../../outside")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "not a folder inside models/" in refused.stderr
    assert not (tmp_path / "outside").exists()

    # The person's own file of the same name is never overwritten; our verified download is simply kept.
    mine = volume / "models/checkpoints/t5xxl_fp16.safetensors"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own file")
    clash = run(volume, env, "models", "get", tiny.ENCODERS, "t5xxl_fp16.safetensors", "--to", "checkpoints")
    assert clash.returncode == 1 and "already exists" in clash.stderr and mine.read_bytes() == b"my own file"
    again = run(volume, env, "models", "get", tiny.ENCODERS, "clip_l.safetensors", "--to", "loras/shared", "--json")
    assert again.returncode == 0 and dest.read_bytes() == tiny.content("clip_l")

    gated = run(volume, env, "models", "get", tiny.REPO, "ae.safetensors", "--to", "vae")
    assert gated.returncode == 1 and tiny.REPO in gated.stderr and "Traceback" not in gated.stderr
    assert not (volume / "models/vae/ae.safetensors").exists()


def test_download_of_a_gated_model_without_a_token_says_why(tmp_path: Path, env: dict[str, str]) -> None:
    out = run(tmp_path / "vol", env, "models", "download", "tiny-flux", "--for", "diffusers")
    assert out.returncode == 1
    assert tiny.REPO in out.stderr and "Traceback" not in out.stderr + out.stdout
    assert not list((tmp_path / "vol/models").rglob("*.safetensors*"))


def test_download_for_two_engines_fetches_each_file_once(tmp_path: Path, env: dict[str, str], hub: FakeHub) -> None:
    with_token(env)
    volume = tmp_path / "vol"
    out = run(volume, env, "models", "download", "tiny-flux", "--for", "comfyui,diffusers", "--json")
    assert out.returncode == 0, out.stderr
    engines = comfy_status(volume, env)
    assert all(engines[name]["ready"] for name in engines), engines
    assert engines["diffusers"]["state"] == "verified"
    models = volume / "models"
    # ComfyUI's VAE was linked from the diffusers VAE of the same job, never fetched.
    assert os.path.samefile(models / "vae/ae.safetensors", models / "Tiny-FLUX/vae/diffusion_pytorch_model.safetensors")
    assert hub.ranges("/ae.safetensors") == [] and hub.ranges("/clip_l.safetensors") == []
    fetched = [r.path for r in hub.requests if r.method == "GET" and "/resolve/" in r.path]
    assert len(fetched) == len(set(fetched)) == 9  # 7 diffusers files + ComfyUI's transformer and T5
    again = run(volume, env, "models", "download", "tiny-flux", "--for", "comfyui", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["plan"]["nothing_to_do"]

    # verify: every file was recorded by the download; a changed byte is named with the file.
    assert run(volume, env, "models", "verify", "tiny-flux").returncode == 0
    single = models / "diffusion_models/tiny-flux.safetensors"
    data = bytearray(single.read_bytes())
    data[-1] ^= 1
    single.write_bytes(bytes(data))
    checked = run(volume, env, "models", "verify", "tiny-flux")
    assert checked.returncode == 1 and str(single) in checked.stderr and "Traceback" not in checked.stderr

    # remove asks first; ComfyUI's files go, the diffusers VAE its vae/ link pointed at stays.
    asked = run(volume, env, "models", "remove", "tiny-flux", "--for", "comfyui")
    assert asked.returncode == 1 and "--yes" in asked.stderr and single.exists()
    removed = json.loads(run(volume, env, "models", "remove", "tiny-flux", "--for", "comfyui", "--yes",
                             "--json").stdout)
    assert removed["freed_bytes"] == tiny.FILES["single"][2] + tiny.FILES["t5_fp16"][2]
    assert not single.exists() and (models / "Tiny-FLUX/vae/diffusion_pytorch_model.safetensors").is_file()


def test_download_resumes_after_a_cancel(tmp_path: Path, env: dict[str, str], hub: FakeHub) -> None:
    """Ctrl+C mid-file stops the job keeping its bytes; the same command again continues with a ranged request."""
    with_token(env)
    volume = tmp_path / "vol"
    hub.throttle = 600_000  # bytes/s: the first file takes ~2 s
    proc = subprocess.Popen([sys.executable, "-m", "isengard_desktop", "--volume", str(volume), "models",
                             "download", "tiny-flux", "--for", "comfyui", "--variant", "fp8"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            stdin=subprocess.DEVNULL)
    partial = volume / "models/diffusion_models/tiny-flux.safetensors.partial"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not partial.exists() or partial.stat().st_size < 300_000):
        time.sleep(0.1)
    assert partial.exists(), "the download never started"
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    kept = partial.stat().st_size
    assert 0 < kept < tiny.FILES["single"][2]

    hub.throttle = None
    out = run(volume, env, "models", "download", "tiny-flux", "--for", "comfyui", "--variant", "fp8", "--json")
    assert out.returncode == 0, out.stderr
    assert (volume / "models/diffusion_models/tiny-flux.safetensors").read_bytes() == tiny.content("single")
    assert not partial.exists()
    resumed = [r for r in hub.ranges("tiny-flux.safetensors") if r]
    assert resumed and int(resumed[-1].split("=")[1].split("-")[0]) > 0
    assert comfy_status(volume, env)["comfyui"]["state"] == "verified"



def test_not_enough_disk_is_refused_before_a_job_starts(tmp_path: Path, env: dict[str, str]) -> None:
    with_token(env)
    volume = tmp_path / "vol"
    assert run(volume, env, "models", "list").returncode == 0  # the volume exists; now its models/ gets 2 MB
    models = volume / "models"
    with tmpfs(models, "2m"):
        out = run(volume, env, "models", "download", "tiny-flux", "--for", "comfyui")
        assert out.returncode == 1 and "needs 4.8 MB" in out.stderr and "free" in out.stderr
        assert not [p for p in models.rglob("*") if p.is_file()]
        listed = run(volume, env, "jobs", "list", "--json")
        assert json.loads(listed.stdout) == []  # refused before any job was queued
