"""A remote gets its base model downloaded into its own volume (ERROR_LIST E35), over the loopback sshd.

The remote is the app bootstrapped once per session in the loopback remote's folder "boot" (the fixture of
test_remote_jobs.py, reused: a second use only checks it); each test gives it a fresh volume of its own there. The
fake hub and the tiny catalogue reach the remote's app through the HF_ENDPOINT and ISENGARD_MODEL_CATALOGUE this
computer forwards; the token lives in this computer's test keyring only (ssh passes no environment to the remote,
so the remote's app can only have it from its stdin).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import psutil
import pytest

from isengard_desktop.core.remote import ssh
from isengard_desktop.core.remote.bootstrap import RemoteInstall
from isengard_desktop.core.remote.models import RemoteModelError, ensure_remote_model, remote_model_ready
from isengard_desktop.core.remote.sync import RemoteSide
from isengard_desktop.core.secrets import set_hf_token
from tests.models import tiny_catalogue as tiny
from tests.models.fake_hub import FakeHub
from tests.remote.conftest import SshdServer
from tests.remote.test_remote_jobs import remote_install  # noqa: F401 - the session's bootstrapped remote, reused

pytestmark = pytest.mark.slow
TOKEN = "hf_remote_secret_4242"
MODEL = "tiny-flux"


def _side(install: RemoteInstall, name: str) -> RemoteSide:
    """The bootstrapped app with a fresh volume of this test's own in the remote folder."""
    return RemoteSide(install.remote, install.python, f"{install.folder}/{name}")


class ArgvWatch:
    """Polls every process's argv and environment while a download runs: the token must show in none."""

    def __init__(self) -> None:
        self.leaks: list[str] = []
        self.seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for proc in psutil.process_iter():
                try:
                    cmdline = " ".join(proc.cmdline())
                    env = " ".join(f"{k}={v}" for k, v in proc.environ().items())
                except (psutil.Error, OSError):
                    continue
                self.seen += "isengard_desktop" in cmdline and "download" in cmdline
                if TOKEN in cmdline or TOKEN in env:
                    self.leaks.append(cmdline[:200])
            time.sleep(0.02)

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def hub_env(tmp_path: Path, fake_hub: FakeHub, test_keyring: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    tiny.publish(fake_hub, TOKEN)
    monkeypatch.setenv("ISENGARD_MODEL_CATALOGUE", str(tiny.write_catalogue(tmp_path)))
    return fake_hub


def test_a_remote_without_the_model_gets_it_downloaded_there_once(
        hub_env: FakeHub, ssh_env: SshdServer, remote_install: RemoteInstall, tmp_path: Path) -> None:  # noqa: F811
    set_hf_token(TOKEN)
    side = _side(remote_install, "volume-e35")
    assert not remote_model_ready(side, MODEL, "diffusers")
    messages: list[str] = []
    started = time.monotonic()
    with ArgvWatch() as watch:
        assert ensure_remote_model(side, MODEL, messages.append, engine="diffusers") is True
    seconds = time.monotonic() - started
    print(f"remote download of {MODEL}: {seconds:.1f} s, {len(hub_env.requests)} hub requests")  # noqa: T201 - the figure for ERROR_LIST
    assert watch.seen > 0, "the watcher never saw the remote download running"
    assert watch.leaks == []
    assert any(side.remote.name in m and "%" in m for m in messages), messages
    # Every file in the remote volume, with the published bytes, and the remote's own verify agrees.
    folder = Path(side.volume) / "models" / "Tiny-FLUX"
    for fid in tiny.DIFFUSERS_IDS:
        path = folder / tiny.FILES[fid][1]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(tiny.content(fid)).hexdigest()
    from isengard_desktop.core.remote.models import _cli

    verify = ssh.run(side.remote, _cli(side, "models", "verify", MODEL, "--json"), timeout=300)
    assert json.loads(verify.stdout)[0]["engines"]["diffusers"]["ready"] is True
    # The token reached the hub from the remote's download, and was written nowhere.
    assert any(r.has_token and r.method == "GET" for r in hub_env.requests)
    for root in (Path(remote_install.folder), tmp_path):
        for path in root.rglob("*"):
            if path.is_file() and path.name != "keyring.json" and path.stat().st_size < 50_000_000:
                assert TOKEN.encode() not in path.read_bytes(), f"the token is in {path}"
    # A second call downloads nothing.
    seen = len(hub_env.requests)
    assert ensure_remote_model(side, MODEL, messages.append, engine="diffusers") is False
    assert len(hub_env.requests) == seen


def test_a_licence_not_accepted_fails_in_one_sentence_naming_the_remote(
        hub_env: FakeHub, ssh_env: SshdServer, remote_install: RemoteInstall) -> None:  # noqa: F811
    hub_env.add_token("hf_pending_one", {tiny.REPO: "pending"})
    set_hf_token("hf_pending_one")
    side = _side(remote_install, "volume-e35-pending")
    with pytest.raises(RemoteModelError) as caught:
        ensure_remote_model(side, MODEL, engine="diffusers")
    text = str(caught.value)
    # The hub's own sentence (the link where the access is granted), the remote's name, what to do after.
    assert side.remote.name in text and f"{hub_env.url}/{tiny.REPO}" in text and "start the job again" in text
    assert "\n" not in text and "Traceback" not in text
    assert not (Path(side.volume) / "models" / "Tiny-FLUX" / "vae").exists()
