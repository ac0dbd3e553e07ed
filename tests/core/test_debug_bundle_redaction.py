"""Issue 11 item 6: what the debug bundle redacts, and what it leaves out unless asked."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from isengard_desktop.base.log import redact_text
from isengard_desktop.jobs.debug_bundle import build_debug_bundle
from isengard_desktop.storage.volume import Volume

SECRETS = {
    "ghp_": "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "github_pat_": "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
    "hf_": "hf_abcdefghijklmnopqrstuvwxyz",
    "sk-": "sk-proj-abcdefghijklmnop1234",
    "Bearer": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
    "Basic": "Authorization: Basic dXNlcjpodW50ZXIyaHVudGVyMg==",
    "password=": "password=hunter2hunter2",
    '"api_key": ': '"api_key": "abc123def456"',
    "token: ": "token: s3cr3t-value",
    "url": "https://ada:pa55word@example.com/repo.git",
}


@pytest.mark.parametrize("shape", list(SECRETS))
def test_known_secret_shapes_are_redacted(shape: str) -> None:
    line = f"something happened with {SECRETS[shape]} here"
    redacted = redact_text(line)
    for secret_part in ("16C7e42F", "0123456789_abc", "abcdefghijklmnopq", "abcdefghijklmnop1234",
                        "dozjgNryP4J3", "dXNlcjpodW50", "hunter2hunter2", "abc123def456", "s3cr3t-value", "pa55word"):
        assert secret_part not in redacted, redacted
    assert "[redacted]" in redacted and redacted.startswith("something happened with")


def test_what_is_not_a_secret_stays() -> None:
    for line in ('{"tokens": 77, "max_tokens": 512, "token_count": 3}', "lora key not loaded: lora_unet_x",
                 '"hf_token": null', "Authorization scheme is Basic"):
        assert redact_text(line) == line


@pytest.fixture
def job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Volume, Path]:
    home = tmp_path / "home" / "ada_lovelace"
    monkeypatch.setenv("HOME", str(home))
    volume = Volume.open(home / "Isengard")
    folder = volume.jobs_dir / "20261129-120000-abcdef"
    (folder / "samples").mkdir(parents=True)
    (folder / "checkpoints").mkdir()
    (folder / "job.json").write_text(json.dumps({"spec": {"dataset": [{"path": str(home / "Photos" / "ada.jpg")}],
                                                           "output_dir": str(folder)}}))
    log_lines = [json.dumps({"event": "x", "detail": SECRETS[k]}) for k in ("ghp_", "Basic", "password=")]
    (folder / "job.log").write_text("\n".join(log_lines) + "\n")
    Image.new("RGB", (64, 64), "peru").save(folder / "samples" / "step_000004_0.png")
    (folder / "checkpoints" / "step-4.safetensors").write_bytes(b"\0" * 100)
    (folder / "loss.db").write_bytes(b"SQLite format 3\0" + str(home).encode())
    volume.logs_dir.mkdir(parents=True, exist_ok=True)
    (volume.logs_dir / "app-2026-11-29.jsonl").write_text(json.dumps({"event": "import_started",
                                                                       "file": str(home / "Photos" / "ada.jpg")}))
    return volume, folder


def read_all(bundle: Path) -> tuple[list[str], str]:
    with zipfile.ZipFile(bundle) as archive:
        names = archive.namelist()
        text = "\n".join(archive.read(n).decode("utf-8", "replace") for n in names if not n.endswith(".png"))
    return names, text


def test_the_bundle_redacts_home_paths_and_secrets_and_leaves_the_person_out(job, tmp_path: Path) -> None:
    volume, folder = job
    names, text = read_all(build_debug_bundle(volume, folder, "fast-test", tmp_path / "bundle.zip"))
    assert "ada_lovelace" not in text, "the user's name (their home folder) is in the bundle"
    assert "~/Photos/ada.jpg" in text and "~/Isengard/jobs" in text
    for secret in ("ghp_16C7e42F", "dXNlcjpodW50", "hunter2hunter2"):
        assert secret not in text
    assert "job/job.log" in names and "logs/app-2026-11-29.jsonl" in names
    assert not any(n.endswith((".png", ".safetensors", ".db")) for n in names)
    listing = json.loads(zipfile.ZipFile(tmp_path / "bundle.zip").read("bundle.json"))
    assert listing["images_of_the_person"] == "left out"
    left_out = {entry["file"]: entry["why"] for entry in listing["left_out"]}
    assert "image" in left_out["job/samples/step_000004_0.png"] and "job/loss.db" in left_out


def test_images_are_in_the_bundle_only_when_asked_for(job, tmp_path: Path) -> None:
    volume, folder = job
    names, _text = read_all(build_debug_bundle(volume, folder, "fast-test", tmp_path / "b.zip", include_images=True))
    assert "job/samples/step_000004_0.png" in names
    assert not any(n.endswith(".safetensors") for n in names)


def test_redacting_a_long_run_of_word_characters_finishes(tmp_path) -> None:
    # A job log line holding a long hash or base64 run made the key=value pattern backtrack at every position
    # (quadratic): exporting a debug bundle hung. Run in a child process so a regression fails instead of hanging.
    import subprocess
    import sys

    code = ("from isengard_desktop.base.log import redact_text; "
            "out = redact_text('x' * 300000 + ' password=hunter22'); print(out.endswith('password=[redacted]'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "True", result.stderr
