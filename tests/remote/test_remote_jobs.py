"""Remote jobs on the loopback sshd (issue 16 items 3 and 5): train a tiny LoRA on the remote with the built-in
engine and get it back with its metadata; the inputs are sent by content hash; the job survives the local CLI being
SIGKILLed (``jobs list`` shows it running on the remote, ``jobs resume`` re-attaches and ends with the LoRA) and a
dropped SSH connection; cancel and resume work as locally; a remote and this computer train at once; generation
on the remote sends the LoRA there and brings the images back into the gallery.

The remote is the bootstrapped app in the loopback remote's folder "boot" (shared with test_remotes_bootstrap.py:
a later bootstrap only checks it); each test has its own local volume.
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

import psutil
import pytest
from PIL import Image

from isengard_desktop.context import AppContext
from isengard_desktop.core.remote.bootstrap import RemoteInstall
from isengard_desktop.core.remote.registry import add_remote
from isengard_desktop.core.remote.ssh import Remote
from isengard_desktop.core.remote.sync import RemoteSide, sync_inputs
from tests.remote.conftest import FirstBootstrap, SshdServer

pytestmark = pytest.mark.slow
# The window test's QApplication reads the platform once, when pytest-qt makes it (as tests/ui/conftest.py sets it).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

INSTALLED = Path(sys.executable).parent / "isengard"
REMOTE = "gpu1"


@pytest.fixture(scope="session")
def remote_install(first_bootstrap: FirstBootstrap) -> RemoteInstall:
    assert first_bootstrap.install.remote.name == REMOTE
    return first_bootstrap.install


def _photos(folder: Path, count: int, side: int = 80) -> list[Path]:
    """Distinct photos (random pixels: each has its own content hash)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"photo-{i:02d}.png"
        Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def ctx(tmp_path: Path, ssh_env: SshdServer, remote_install: RemoteInstall,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[AppContext]:
    """A fast-test volume with the remote registered and a character with four photos."""
    monkeypatch.setenv("ISENGARD_MODE", "fast-test")
    context = AppContext.open(tmp_path / "vol", "fast-test")
    add_remote(context.volume, remote_install.remote)
    character = context.characters.create("Ada Lovelace", "ohwx_ada")
    assert len(context.importer.run(character.id, _photos(tmp_path / "photos", 4)).imported) == 4
    yield context
    context.jobs.shutdown(wait=10)
    context.close()


def isengard(volume: Path, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(INSTALLED), "--volume", str(volume), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"isengard {args} failed ({proc.returncode}): {proc.stderr}")
    return proc


def start_training(volume: Path, steps: int) -> subprocess.Popen:
    return subprocess.Popen([str(INSTALLED), "--volume", str(volume), "train", "Ada Lovelace", "--remote", REMOTE,
                             "--preset", "quick", "--steps", str(steps), "--save-every", "5", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def wait_for_step(volume: Path, step: int, timeout: float = 120) -> tuple[str, Path]:
    """The running job's id and folder once its events (followed from the remote) reach ``step``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for folder in (volume / "jobs").glob("2*"):
            events = folder / "events.jsonl"
            if events.exists() and any(json.loads(line).get("step", 0) >= step for line in
                                       events.read_text().splitlines() if '"progress"' in line):
                return folder.name, folder
        time.sleep(0.2)
    raise AssertionError(f"no job reached step {step} within {timeout} s")


def progress_steps(folder: Path) -> list[int]:
    lines = (folder / "events.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if '"event":"progress"' in line]


def lora_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), "np") as handle:
        return dict(handle.metadata() or {})


def test_sync_sends_only_what_the_remote_lacks(tmp_path: Path, ssh_env: SshdServer,
                                               remote_install: RemoteInstall) -> None:
    local = tmp_path / "vol"
    photos = _photos(local / "images" / "ab", 30, side=256)
    inputs = [p.relative_to(local).as_posix() for p in photos]
    side = RemoteSide(remote_install.remote, remote_install.python, remote_install.volume)
    first = sync_inputs(side, local, inputs, {"jobs/x/job.json": b"{}"})
    second = sync_inputs(side, local, inputs, {"jobs/x/job.json": b"{}"})
    sys.stderr.write(f"\nsync of 30 photos: first {first.seconds:.2f} s ({first.bytes_sent} B), "
                     f"second {second.seconds:.2f} s ({second.bytes_sent} B)\n")
    assert (first.files, first.sent) == (30, 30) and (second.files, second.sent) == (30, 0)
    assert second.bytes_sent == 2  # only the job's spec travels the second time
    there = Path(remote_install.volume)
    assert all((there / rel).read_bytes() == (local / rel).read_bytes() for rel in inputs)


def test_train_remotely_and_get_the_lora_back(ctx: AppContext, tmp_path: Path) -> None:
    volume = ctx.volume.root
    done = isengard(volume, "train", "Ada Lovelace", "--remote", REMOTE, "--preset", "quick", "--steps", "6",
                    "--json")
    job = json.loads(done.stdout)
    assert job["state"] == "succeeded", job["error"]
    remote = job["params"]["remote"]
    assert remote["name"] == REMOTE and remote["job_dir"] == f"{ctx_remote_volume(ctx)}/jobs/{job['id']}"
    assert remote["sync"]["sent"] == 4 and remote["sync"]["files"] == 4
    # The LoRA is in the local volume, filed for the character like a local one, with its metadata.
    lora = Path(job["result"]["lora"])
    assert lora.parent == ctx.volume.loras_dir and lora.is_file()
    meta = lora_metadata(lora)
    assert meta["isengard.trigger_word"] == "ohwx_ada" and meta["isengard.engine"] == "diffusers"
    assert meta["isengard.steps"] == "6"
    assert [row["rel_path"] for row in ctx.jobs.repo.loras()] == [str(lora.relative_to(volume))]
    # The samples came back, and the job's events point at the local copies.
    folder = volume / job["folder"]
    samples = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()
               if '"event":"sample"' in line]
    assert samples and all(Path(s["path"]).is_file() and Path(s["path"]).is_relative_to(folder) for s in samples)
    assert progress_steps(folder) == list(range(1, 7))
    # A second run of the same character sends no photo again.
    again = json.loads(isengard(volume, "train", "Ada Lovelace", "--remote", REMOTE, "--preset", "quick",
                                "--steps", "2", "--json").stdout)
    assert again["state"] == "succeeded" and again["params"]["remote"]["sync"]["sent"] == 0


def ctx_remote_volume(ctx: AppContext) -> str:
    from isengard_desktop.core.remote.registry import get_remote

    return f"{get_remote(ctx.volume, REMOTE).dir}/volume"


def test_killed_cli_leaves_the_job_running_remotely_and_resume_reattaches(ctx: AppContext) -> None:
    volume = ctx.volume.root
    cli = start_training(volume, steps=60)
    try:
        job_id, folder = wait_for_step(volume, 3)
        cli.send_signal(signal.SIGKILL)
        cli.wait(timeout=10)
        listed = isengard(volume, "jobs", "list").stdout
        line = next(row for row in listed.splitlines() if row.startswith(job_id))
        assert f"running on {REMOTE}" in line and "not followed here" in line
        shown = json.loads(isengard(volume, "jobs", "show", job_id, "--json").stdout)
        assert shown["state"] == "running"
        resumed = isengard(volume, "jobs", "resume", job_id, "--json")
        final = json.loads(resumed.stdout)
        assert final["state"] == "succeeded", final["error"]
        assert lora_metadata(Path(final["result"]["lora"]))["isengard.steps"] == "60"
        # Nothing lost or read twice across the re-attach: every step once, in order.
        assert progress_steps(folder) == list(range(1, 61))
    finally:
        if cli.poll() is None:
            cli.kill()


def test_a_dropped_connection_is_survived(ctx: AppContext, ssh_env: SshdServer) -> None:
    volume = ctx.volume.root
    cli = start_training(volume, steps=60)
    try:
        job_id, folder = wait_for_step(volume, 3)
        # Every ssh client of this remote (the events' follower and the shared master connection) dies at once.
        killed = [p for p in psutil.process_iter(["name", "cmdline"])
                  if p.info["name"] == "ssh" and f"Port={ssh_env.port}" in " ".join(p.info["cmdline"] or [])]
        assert any("follow" in " ".join(p.info["cmdline"]) for p in killed)
        for process in killed:
            process.kill()
        out, err = cli.communicate(timeout=300)
        final = json.loads(out)
        assert final["state"] == "succeeded", (final["error"], err)
        assert progress_steps(folder) == list(range(1, 61))
        assert Path(final["result"]["lora"]).is_file()
    finally:
        if cli.poll() is None:
            cli.kill()


def test_cancel_then_resume_continues_from_the_remote_checkpoint(ctx: AppContext) -> None:
    volume = ctx.volume.root
    cli = start_training(volume, steps=200)
    try:
        job_id, folder = wait_for_step(volume, 6)
        isengard(volume, "jobs", "cancel", job_id)
        out, _err = cli.communicate(timeout=180)
        assert cli.returncode == 3 and json.loads(out)["state"] == "cancelled"
        stopped_at = progress_steps(folder)[-1]
        assert stopped_at < 200
        final = json.loads(isengard(volume, "jobs", "resume", job_id, "--json").stdout)
        assert final["state"] == "succeeded", final["error"]
        steps = progress_steps(folder)
        resumed_from = steps[len([s for s in steps if s <= stopped_at])]  # the first step after the cancel
        assert 1 < resumed_from <= stopped_at + 1  # continued from a checkpoint there, not from step 1
        assert any("Resumed from step" in line for line in (folder / "events.jsonl").read_text().splitlines())
    finally:
        if cli.poll() is None:
            cli.kill()


def test_this_computer_and_a_remote_train_at_the_same_time(ctx: AppContext) -> None:
    from isengard_desktop.core.remote.jobs import remote_training_spec
    from isengard_desktop.core.training import build_spec

    character = ctx.characters.resolve("Ada Lovelace")
    local_spec, _ = build_spec(ctx.volume, ctx.dataset, character, "fast-test", "quick", {"steps": 40})
    _engine, remote_spec, _check, meta = remote_training_spec(ctx, character, REMOTE, None, "quick", {"steps": 40})
    here = ctx.jobs.submit("training", "diffusers", local_spec.to_dict(), character.id)
    there = ctx.jobs.submit("training", "diffusers", remote_spec.to_dict(), character.id, meta={"remote": meta})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and {ctx.jobs.get(here.id).state, ctx.jobs.get(there.id).state} != {"running"}:
        time.sleep(0.1)
    assert ctx.jobs.get(here.id).state == ctx.jobs.get(there.id).state == "running"  # two lanes, two machines
    assert ctx.jobs.wait(here.id, timeout=300).state == "succeeded"
    assert ctx.jobs.wait(there.id, timeout=300).state == "succeeded"
    assert len(ctx.jobs.repo.loras(character.id)) == 2


def test_generate_on_the_remote_with_the_lora(ctx: AppContext) -> None:
    volume = ctx.volume.root
    trained = json.loads(isengard(volume, "train", "Ada Lovelace", "--remote", REMOTE, "--preset", "quick",
                                  "--steps", "2", "--json").stdout)
    assert trained["state"] == "succeeded"
    made = json.loads(isengard(volume, "generate", "--prompt", "a photo of ohwx_ada", "--lora", "Ada Lovelace",
                               "--remote", REMOTE, "--batch", "2", "--seed", "7", "--json").stdout)
    assert made["state"] == "succeeded", made["error"]
    assert len(made["images"]) == 2 and all(Path(p).is_file() and Path(p).is_relative_to(ctx.volume.outputs_dir)
                                           for p in made["images"])
    rows = ctx.jobs.repo.generations()
    assert [r.params["seed"] for r in sorted(rows, key=lambda r: r.batch_index)] == [7, 8]
    lora_name = Path(trained["result"]["lora"]).name
    assert (Path(ctx_remote_volume(ctx)) / "models" / "loras" / lora_name).is_file()  # sent there with the job


def test_a_wrong_key_fails_the_job_with_a_clear_error(ctx: AppContext, ssh_env: SshdServer) -> None:
    wrong = ssh_env.remote("badkey", key=str(ssh_env.wrong_key))
    add_remote(ctx.volume, Remote(**{**wrong.to_json()}))
    done = isengard(ctx.volume.root, "train", "Ada Lovelace", "--remote", "badkey", "--steps", "2", "--json",
                    check=False)
    job = json.loads(done.stdout)
    assert done.returncode == 1 and job["state"] == "failed"
    assert "refused the key" in job["error"] and "Traceback" not in done.stderr


def test_the_window_runs_training_and_generation_on_the_remote(qtbot, window, ctx: AppContext) -> None:
    """The "Run on" pickers of the Training and Generate tabs, as a person uses them (the shared ``window``
    fixture of tests/conftest.py, on this file's volume with the remote registered)."""
    from PySide6.QtCore import Qt

    tab = window.training
    window.tabs.setCurrentWidget(tab)
    tab.refresh()
    picker = tab.form.run_on
    assert [picker.itemData(i) for i in range(picker.count())] == ["local", REMOTE]
    picker.setCurrentIndex(picker.findData(REMOTE))
    tab.form.advanced.setChecked(True)
    tab.form.steps.setValue(8)
    tab.form.save_every.setValue(4)
    tab.form.sample_every.setValue(4)
    qtbot.waitUntil(tab.start_button.isEnabled, timeout=20_000)
    qtbot.mouseClick(tab.start_button, Qt.MouseButton.LeftButton)
    job_id = tab.job_id
    assert job_id and ctx.jobs.get(job_id).params["remote"]["name"] == REMOTE
    qtbot.waitUntil(lambda: ctx.jobs.get(job_id).state in ("succeeded", "failed"), timeout=180_000)
    assert ctx.jobs.get(job_id).state == "succeeded", ctx.jobs.get(job_id).error
    # Progress, the chart and the samples came from the remote worker, live, through the same bridge.
    qtbot.waitUntil(lambda: tab.progress.value() == 8, timeout=10_000)
    assert len(tab.chart.steps) == 8 and tab.samples.count() >= 2
    # The LoRA is offered in Generate, which runs on the remote too.
    generate = window.generate
    window.tabs.setCurrentWidget(generate)
    generate.refresh()
    qtbot.waitUntil(lambda: bool(generate.form.options), timeout=20_000)
    generate.form.run_on.setCurrentIndex(generate.form.run_on.findData(REMOTE))
    generate.form.prompt.setPlainText("a photo of ohwx_ada")
    qtbot.waitUntil(lambda: len(generate.form.lora_rows) == 1, timeout=20_000)
    generate.form.steps.setValue(2)
    qtbot.mouseClick(generate.generate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: generate.status.text() == "Done.", timeout=180_000)
    assert generate.model.rowCount() == 1
    made = ctx.jobs.list(kind="generation")[0]
    assert made.params["remote"]["name"] == REMOTE and made.engine == "diffusers"
    window.close()


def test_the_window_follows_again_a_run_left_on_the_remote(qtbot, ctx: AppContext,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Closing the laptop (here: the CLI killed) does not lose the run: the next window start re-attaches by itself,
    catches up with what happened meanwhile and files the LoRA."""
    from isengard_desktop.ui.main_window import MainWindow

    volume = ctx.volume.root
    cli = start_training(volume, steps=40)
    try:
        job_id, folder = wait_for_step(volume, 2)
        cli.send_signal(signal.SIGKILL)
        cli.wait(timeout=10)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert ctx.jobs.get(job_id).state == "running"
    monkeypatch.delenv("ISENGARD_COMFYUI_DIR", raising=False)
    ctx.settings.first_run_done = True
    window = MainWindow(ctx)
    qtbot.addWidget(window)
    window.show()
    window.training.offer_interrupted_jobs()  # what the app's start does once the window is shown (ui/app.py)
    qtbot.waitUntil(lambda: ctx.jobs.get(job_id).state in ("succeeded", "failed"), timeout=180_000)
    final = ctx.jobs.get(job_id)
    assert final.state == "succeeded", final.error
    assert Path(final.result["lora"]).is_file() and progress_steps(folder) == list(range(1, 41))
    window.close()
