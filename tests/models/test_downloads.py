"""Downloads from the (fake, loopback) hub: resume after a kill, verification, gated answers, disk space, cancel.

Real worker processes, a real HTTP server, real files; nothing is mocked. The hub is tests/models/fake_hub.py.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from isengard_desktop.context import AppContext
from isengard_desktop.core import secrets
from isengard_desktop.core.models import download_job, hub, ledger
from tests.conftest import tmpfs
from tests.models.fake_hub import FakeHub

REPO = "acme/tiny-model"
GATED = "acme/gated-model"
TOKEN = "hf_" + "Q7xk2LmN9pR4sT6vW8yZ1aB3cD5eF7gH9j"  # shaped like a real token, so redaction must catch it
MB = 1 << 20


def _payload(size: int, seed: int = 1) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 4096  # 128 KiB, not compressible by accident
    return (block * (size // len(block) + 1))[:size]


def _spec(dest: Path, data: bytes, repo: str = REPO, path: str = "model.safetensors", gated: bool = False,
          sha256: str | None = None) -> dict:
    return {"title": "Tiny model", "model": None, "links": [],
            "files": [{"repo": repo, "path": path, "revision": "main", "dest": str(dest), "size": len(data),
                       "sha256": sha256 or hashlib.sha256(data).hexdigest(), "gated": gated}]}


def _wait_for(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _partial_size(dest: Path) -> int:
    part = hub.partial_path(dest)
    return part.stat().st_size if part.exists() else 0


def _assert_complete(dest: Path, data: bytes) -> None:
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name], "a partial or sidecar was left behind"


def test_worker_killed_mid_file_resumes_with_a_ranged_request(fake_hub: FakeHub, ctx: AppContext) -> None:
    data = _payload(3 * MB)
    fake_hub.add_file(REPO, "model.safetensors", data)
    fake_hub.throttle = 1 * MB
    dest = ctx.volume.models_dir / "tiny" / "model.safetensors"
    job = ctx.jobs.submit("download", "hub", _spec(dest, data))
    _wait_for(lambda: _partial_size(dest) > 400_000, what="the first bytes on disk")
    os.kill(ctx.jobs.get(job.id).pid, signal.SIGKILL)  # a hard crash of the worker: no chance to clean up
    killed = ctx.jobs.wait(job.id, timeout=20)
    assert killed.state == "failed"
    on_disk = _partial_size(dest)
    assert 400_000 < on_disk < len(data)

    fake_hub.throttle = None
    ctx.jobs.resume(job.id)
    done = ctx.jobs.wait(job.id, timeout=30)
    assert done.state == "succeeded", done.error
    assert fake_hub.ranges("model.safetensors")[-1] == f"bytes={on_disk}-"
    _assert_complete(dest, data)
    assert ledger.verified_sha256(ctx.volume.models_dir, dest) == hashlib.sha256(data).hexdigest()
    progress = [e for e in ctx.jobs.events(job.id) if e["event"] == "progress"]
    assert progress[-1]["step"] == progress[-1]["total"] == len(data) and progress[-1]["unit"] == "bytes"
    assert any(e["speed"] > 0 and e["eta"] is not None for e in progress)


_APP = """
import sys, time
from pathlib import Path
from isengard_desktop.context import AppContext
from isengard_desktop.base import log
log.configure(None)  # logs to stderr: stdout carries the job id
ctx = AppContext.open(Path(sys.argv[1]), "fast-test")
job = ctx.jobs.submit("download", "hub", __import__("json").loads(sys.argv[2]))
print(job.id, flush=True)
time.sleep(600)
"""


def test_app_crash_leaves_an_interrupted_download_that_resumes(fake_hub: FakeHub, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    data = _payload(3 * MB, seed=2)
    fake_hub.add_file(REPO, "model.safetensors", data)
    fake_hub.throttle = 1 * MB
    root = tmp_path / "vol"
    dest = root / "models" / "tiny" / "model.safetensors"
    monkeypatch.setenv("ISENGARD_MODE", "fast-test")
    app = subprocess.Popen([sys.executable, "-c", _APP, str(root), json.dumps(_spec(dest, data))],
                           stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        job_id = app.stdout.readline().strip()
        _wait_for(lambda: _partial_size(dest) > 400_000, what="the first bytes on disk")
    finally:
        app.kill()  # the app dies (kill -9); its worker is orphaned
        app.wait()
    ctx = AppContext.open(root, "fast-test")
    try:
        recovered = ctx.jobs.recover()  # as the window does at start
        assert [j.id for j in recovered] == [job_id]
        assert ctx.jobs.get(job_id).state == "interrupted"
        assert "bytes already downloaded" in ctx.jobs.get(job_id).error
        on_disk = _partial_size(dest)
        assert on_disk > 400_000
        fake_hub.throttle = None
        ctx.jobs.resume(job_id)
        assert ctx.jobs.wait(job_id, timeout=30).state == "succeeded"
        assert fake_hub.ranges("model.safetensors")[-1] == f"bytes={on_disk}-"
        _assert_complete(dest, data)
    finally:
        ctx.jobs.shutdown(wait=10)
        ctx.close()


def test_cancel_keeps_the_partial_and_resume_finishes_it(fake_hub: FakeHub, ctx: AppContext) -> None:
    data = _payload(2 * MB, seed=3)
    fake_hub.add_file(REPO, "model.safetensors", data)
    fake_hub.throttle = 1 * MB
    dest = ctx.volume.models_dir / "tiny" / "model.safetensors"
    job = ctx.jobs.submit("download", "hub", _spec(dest, data))
    _wait_for(lambda: _partial_size(dest) > 300_000, what="the first bytes on disk")
    ctx.jobs.cancel(job.id)
    assert ctx.jobs.wait(job.id, timeout=20).state == "cancelled"
    kept = _partial_size(dest)
    assert kept > 300_000 and not dest.exists()

    fake_hub.throttle = None
    ctx.jobs.resume(job.id)
    assert ctx.jobs.wait(job.id, timeout=30).state == "succeeded"
    assert fake_hub.ranges("model.safetensors")[-1] == f"bytes={kept}-"
    _assert_complete(dest, data)

    # Submitted again, the verified file is kept as it is: no byte is fetched twice.
    gets = len(fake_hub.ranges())
    again = ctx.jobs.submit("download", "hub", _spec(dest, data))
    assert ctx.jobs.wait(again.id, timeout=30).state == "succeeded"
    assert len(fake_hub.ranges()) == gets


def test_a_cut_connection_resumes_in_the_same_run(fake_hub: FakeHub, tmp_path: Path) -> None:
    data = _payload(2 * MB, seed=4)
    fake_hub.add_file(REPO, "model.safetensors", data)
    fake_hub.cut_next(700_000, times=2)
    dest = tmp_path / "models" / "model.safetensors"
    remote = hub.remote_file(REPO, "model.safetensors", None)
    assert hub.download(remote, dest, None) == "succeeded"
    assert fake_hub.ranges("model.safetensors") == [None, "bytes=700000-", "bytes=1400000-"]
    _assert_complete(dest, data)


def test_a_wrong_sha256_is_refused_and_nothing_is_kept(fake_hub: FakeHub, tmp_path: Path) -> None:
    data = _payload(1 * MB, seed=5)
    lie = hashlib.sha256(b"something else").hexdigest()
    fake_hub.add_file(REPO, "model.safetensors", data, sha256=lie)  # the hub (or a mirror) publishes a wrong hash
    dest = tmp_path / "models" / "model.safetensors"
    events: list[dict] = []
    state = download_job.run(_spec(dest, data, sha256=lie), events.append, lambda: False, tmp_path / "models")
    assert state == "failed"
    error = next(e for e in events if e["event"] == "error")
    assert "model.safetensors" in error["message"] and REPO in error["message"]
    assert "nothing was kept" in error["message"]
    assert list(dest.parent.iterdir()) == []


def test_a_changed_remote_file_is_refused_before_downloading(fake_hub: FakeHub, tmp_path: Path) -> None:
    data = _payload(1 * MB, seed=6)
    fake_hub.add_file(REPO, "model.safetensors", data)
    dest = tmp_path / "models" / "model.safetensors"
    events: list[dict] = []
    spec = _spec(dest, data, sha256=hashlib.sha256(b"the catalogue's older file").hexdigest())
    assert download_job.run(spec, events.append, lambda: False, tmp_path / "models") == "failed"
    assert "nothing was downloaded" in next(e for e in events if e["event"] == "error")["message"]
    assert fake_hub.ranges() == []


@pytest.mark.parametrize(("token", "access", "reason", "link"), [
    (None, None, "no_token", "/settings/tokens"),
    ("hf_NotAKnownTokenAtAll12345", None, "bad_token", "/settings/tokens"),
    (TOKEN, None, "not_accepted", "/" + GATED),
    (TOKEN, "pending", "pending", "/" + GATED),
])
def test_a_gated_refusal_is_explained(fake_hub: FakeHub, token: str | None, access: str | None, reason: str,
                                     link: str) -> None:
    fake_hub.add_file(GATED, "model.safetensors", b"weights", gated=True)
    fake_hub.add_token(TOKEN, {GATED: access} if access else {})
    with pytest.raises(hub.HubAccessError) as refused:
        hub.check_access(GATED, token)
    error = refused.value
    assert (error.repo, error.reason) == (GATED, reason)
    assert error.fix_url == fake_hub.url + link  # on the configured endpoint's host
    assert GATED in str(error) and error.fix_url in str(error)
    assert "\n" not in str(error) and "Traceback" not in str(error)
    assert TOKEN not in str(error)
    assert sum(1 for r in fake_hub.requests if "auth-check" in r.path) == 1  # one request


def test_gated_download_uses_the_keyring_token_which_appears_nowhere(fake_hub: FakeHub, ctx: AppContext,
                                                                     test_keyring: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    data = _payload(1 * MB, seed=7)
    fake_hub.add_file(GATED, "model.safetensors", data, gated=True)
    fake_hub.add_token(TOKEN, {GATED: "accepted"})
    dest = ctx.volume.models_dir / "gated" / "model.safetensors"

    refused = ctx.jobs.submit("download", "hub", _spec(dest, data, repo=GATED, gated=True))
    assert ctx.jobs.wait(refused.id, timeout=30).state == "failed"
    assert "no Hugging Face token is set" in ctx.jobs.get(refused.id).error
    assert fake_hub.ranges() == []  # refused before any byte was asked for

    secrets.set_hf_token(TOKEN)
    shell_token = "hf_set_in_the_persons_shell_0123"
    monkeypatch.setenv("HF_TOKEN", shell_token)  # a worker's environment never carries a token, not even this one
    seen = len(fake_hub.requests)
    fake_hub.throttle = 2 * MB
    job = ctx.jobs.submit("download", "hub", _spec(dest, data, repo=GATED, gated=True))
    _wait_for(lambda: ctx.jobs.get(job.id).pid is not None, what="the worker")
    pid = ctx.jobs.get(job.id).pid
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert ctx.jobs.wait(job.id, timeout=30).state == "succeeded"
    _assert_complete(dest, data)
    asked = [r for r in fake_hub.requests[seen:] if GATED in r.path]
    assert asked and all(r.has_token for r in asked)  # auth-check, metadata and body, each with the token

    assert TOKEN.encode() not in environ and TOKEN.encode() not in cmdline
    assert shell_token.encode() not in environ
    for path in ctx.volume.root.rglob("*"):  # job log, events, app logs, database, job files
        if path.is_file() and path != dest:
            assert TOKEN.encode() not in path.read_bytes(), f"the token leaked into {path}"


@pytest.fixture
def small_disk(tmp_path: Path):
    with tmpfs(tmp_path / "small", "2m") as folder:
        yield folder


def test_not_enough_disk_is_refused_before_anything_is_written(fake_hub: FakeHub, small_disk: Path) -> None:
    data = _payload(3 * MB, seed=8)
    fake_hub.add_file(REPO, "model.safetensors", data)
    dest = small_disk / "models" / "model.safetensors"
    events: list[dict] = []
    assert download_job.run(_spec(dest, data), events.append, lambda: False, small_disk) == "failed"
    error = next(e for e in events if e["event"] == "error")
    assert error["type"] == "NotEnoughSpaceError" and str(small_disk) in error["message"]
    assert list(small_disk.rglob("*")) == []
    assert fake_hub.ranges() == []


def test_place_link_makes_a_hard_link_not_a_copy(tmp_path: Path) -> None:
    models = tmp_path / "models"
    src = models / "FLUX.1-dev" / "ae.safetensors"
    src.parent.mkdir(parents=True)
    src.write_bytes(b"vae weights")
    ledger.record_verified(models, src, hashlib.sha256(b"vae weights").hexdigest())
    dest = models / "vae" / "ae.safetensors"
    assert download_job.place_link(src, dest, models) == "hardlink"
    assert dest.stat().st_ino == src.stat().st_ino
    assert ledger.verified_sha256(models, dest) == hashlib.sha256(b"vae weights").hexdigest()


def test_the_ledger_forgets_a_file_that_changed(tmp_path: Path) -> None:
    models = tmp_path / "models"
    path = models / "a.safetensors"
    models.mkdir()
    path.write_bytes(b"one")
    ledger.record_verified(models, path, "ab" * 32)
    assert ledger.verified_sha256(models, path) == "ab" * 32
    path.write_bytes(b"three")
    assert ledger.verified_sha256(models, path) is None


def test_downloads_run_beside_a_busy_gpu_one_at_a_time(fake_hub: FakeHub, ctx: AppContext) -> None:
    from isengard_desktop.storage.gpu_lock import GpuLock

    first, second = _payload(1 * MB, seed=9), _payload(1 * MB, seed=10)
    fake_hub.add_file(REPO, "a.safetensors", first)
    fake_hub.add_file(REPO, "b.safetensors", second)
    fake_hub.throttle = 2 * MB
    gpu = GpuLock(ctx.volume.jobs_dir / ".gpu.lock")
    assert gpu.try_acquire()  # another Isengard process is training on the GPU
    try:
        a = ctx.jobs.submit("download", "hub", _spec(ctx.volume.models_dir / "a.safetensors", first,
                                                     path="a.safetensors"))
        b = ctx.jobs.submit("download", "hub", _spec(ctx.volume.models_dir / "b.safetensors", second,
                                                     path="b.safetensors"))
        _wait_for(lambda: ctx.jobs.get(a.id).state == "running", what="the first download to start")
        assert ctx.jobs.get(b.id).state == "queued"  # one download at a time
        assert ctx.jobs.running_jobs(lane="gpu") == []
        assert ctx.jobs.wait(a.id, timeout=30).state == "succeeded"
        assert ctx.jobs.wait(b.id, timeout=30).state == "succeeded"
    finally:
        gpu.release()


def test_a_xet_file_falls_back_to_plain_http_when_the_xet_path_fails(fake_hub: FakeHub, tmp_path: Path) -> None:
    # The fake hub announces Xet storage but runs no Xet server: huggingface_hub's xet path fails, and the same
    # bytes come over plain HTTP. (The xet path itself cannot be exercised here.)
    data = _payload(1 * MB, seed=11)
    fake_hub.add_file(REPO, "model.safetensors", data, xet=True)
    remote = hub.remote_file(REPO, "model.safetensors", None)
    assert remote.xet
    dest = tmp_path / "models" / "model.safetensors"
    assert hub.download(remote, dest, None) == "succeeded"
    _assert_complete(dest, data)


def test_a_big_xet_file_takes_the_resumable_ranged_path(fake_hub: FakeHub, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Above XET_MAX_BYTES a restart must resume from the bytes on disk, which hf_xet's cache may not assure.
    from structlog.testing import capture_logs

    monkeypatch.setattr(hub, "XET_MAX_BYTES", 512 * 1024)
    data = _payload(1 * MB, seed=13)
    fake_hub.add_file(REPO, "big.safetensors", data, xet=True)
    remote = hub.remote_file(REPO, "big.safetensors", None)
    dest = tmp_path / "models" / "big.safetensors"
    with capture_logs() as logs:
        assert hub.download(remote, dest, None) == "succeeded"
    started = [e for e in logs if e["event"] == "download_started"]
    assert started and started[0]["xet"] is False
    assert not [e for e in logs if e["event"] == "download_xet_failed"]
    _assert_complete(dest, data)


def test_the_app_log_redacts_a_hugging_face_token() -> None:
    from isengard_desktop.base.log import redact_text

    line = f"GET /resolve Authorization: Bearer {TOKEN} token={TOKEN}"
    assert TOKEN not in redact_text(line)


def test_the_token_is_not_sent_to_the_cdn_the_hub_redirects_to(fake_hub: FakeHub, tmp_path: Path) -> None:
    data = _payload(1 * MB, seed=12)
    fake_hub.cdn_redirect = True  # the hub answers 302 to another host, as huggingface.co does for LFS files
    fake_hub.add_file(GATED, "model.safetensors", data, gated=True)
    fake_hub.add_token(TOKEN, {GATED: "accepted"})
    remote = hub.remote_file(GATED, "model.safetensors", TOKEN)
    assert remote.size == len(data) and remote.sha256 == hashlib.sha256(data).hexdigest()
    dest = tmp_path / "models" / "model.safetensors"
    fake_hub.cut_next(300_000)
    assert hub.download(remote, dest, TOKEN) == "succeeded"
    _assert_complete(dest, data)
    cdn = [r for r in fake_hub.requests if r.path.startswith("/cdn/")]
    assert [r.range for r in cdn] == [None, "bytes=300000-"] and not any(r.has_token for r in cdn)
    assert all(r.has_token for r in fake_hub.requests if "/resolve/" in r.path)


def test_a_plan_of_two_files_and_a_link_reports_bytes_and_places_everything(fake_hub: FakeHub,
                                                                              tmp_path: Path) -> None:
    models = tmp_path / "models"
    one, two = _payload(600_000, seed=13), _payload(900_000, seed=14)
    fake_hub.add_file(REPO, "transformer.safetensors", one)
    fake_hub.add_file(REPO, "config.json", two, lfs=False)  # a small git file: no sha256 published
    spec = _spec(models / "FLUX" / "transformer.safetensors", one, path="transformer.safetensors")
    spec["files"].append({"repo": REPO, "path": "config.json", "revision": "main", "dest": str(models / "cfg.json"),
                          "size": None, "sha256": None, "gated": False})
    spec["links"] = [{"src": str(models / "FLUX" / "transformer.safetensors"),
                      "dest": str(models / "diffusion_models" / "flux.safetensors")}]
    events: list[dict] = []
    assert download_job.run(spec, events.append, lambda: False, models) == "succeeded"
    artifacts = [e for e in events if e["event"] == "artifact"]
    assert [Path(e["path"]).name for e in artifacts] == ["transformer.safetensors", "cfg.json", "flux.safetensors"]
    assert artifacts[2]["link"] == "hardlink"
    last = [e for e in events if e["event"] == "progress"][-1]
    assert last["step"] == last["total"] == len(one) + len(two)
    assert (models / "diffusion_models" / "flux.safetensors").stat().st_ino == (
        models / "FLUX" / "transformer.safetensors").stat().st_ino
    assert ledger.verified_sha256(models, models / "cfg.json") == hashlib.sha256(two).hexdigest()
    assert ledger.verified_sha256(models, models / "diffusion_models" / "flux.safetensors") == hashlib.sha256(
        one).hexdigest()
