"""Bootstrap on the loopback remote: the first use installs this version of the app in the remote folder (a venv,
torch by the first-run rule, the worker dependencies, the app's files); a later use only checks it. The install
happens once for the session, shared with the remote-jobs tests (tests/remote/conftest.py `first_bootstrap`: it is
the slow part, pip installs torch and friends from the local wheels)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from isengard_desktop import __version__
from isengard_desktop.core.remote import ssh
from isengard_desktop.core.remote.bootstrap import RemoteInstall, ensure_bootstrapped
from isengard_desktop.core.remote.check import check_remote
from tests.remote.conftest import FirstBootstrap, SshdServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bootstrapped(first_bootstrap: FirstBootstrap) -> tuple[RemoteInstall, list[str], float]:
    """The session's first install of the loopback remote (tests/remote/conftest.py), whichever test asked first:
    its lines and time are those of the first use."""
    return first_bootstrap.install, first_bootstrap.lines, first_bootstrap.seconds


def test_first_use_installs_the_app_with_progress(bootstrapped: tuple[RemoteInstall, list[str], float],
                                                  ssh_env: SshdServer) -> None:
    install, lines, _seconds = bootstrapped
    folder = Path(install.folder)
    assert folder == ssh_env.remote_root / "boot"
    # Progress a person can follow: the check, the environment, torch for the CPU, the dependencies, the app.
    assert lines[0].startswith(f"Checking {install.remote.name} (")
    assert any("Creating the Python environment" in line for line in lines)
    assert any(line.startswith("Installing torch==2.13.0 for the CPU") for line in lines)
    assert lines[-1].startswith(f"{install.remote.name} has Isengard Desktop {__version__} (torch 2.13.0")
    # Everything lives in the remote folder: its own venv, the app's files, a volume, the record.
    record = json.loads((folder / "installed.json").read_text())
    assert record["version"] == __version__ and record["torch"].startswith("2.13.0")
    assert (folder / "app" / "resources" / "torch_builds.json").is_file()
    assert install.python == f"{folder}/venv/bin/python" and install.volume == f"{folder}/volume"
    # The app runs there: its CLI answers with the same version, without Qt installed (the remote needs none).
    out = ssh.run(install.remote, [*install.isengard, "--version"]).stdout.decode()
    assert out.strip() == f"isengard {__version__}"
    qt = ssh.run(install.remote, [install.python, "-c", "import PySide6"], check=False)
    assert qt.returncode != 0
    listed = ssh.run(install.remote, [*install.isengard, "--json", "characters", "list"])
    assert json.loads(listed.stdout) == []


def test_a_later_use_only_checks_the_version(bootstrapped: tuple[RemoteInstall, list[str], float],
                                             ssh_env: SshdServer) -> None:
    install, _lines, first = bootstrapped
    # Other tests' edits of this checkout since the install would be sent once more (only the app's files, seconds):
    ensure_bootstrapped(install.remote)
    lines: list[str] = []
    started = time.monotonic()
    again = ensure_bootstrapped(install.remote, lines.append)
    seconds = time.monotonic() - started
    name = install.remote.name
    assert lines == [f"Checking {name} ({install.remote.address})",
                     f"{name} has Isengard Desktop {__version__} already"]
    assert again.folder == install.folder and seconds < 5 < first
    report = check_remote(install.remote)
    assert report.same_version and report.app_state == f"installed ({__version__})"


def test_cli_bootstrap_prints_its_progress(bootstrapped: tuple[RemoteInstall, list[str], float],
                                          ssh_env: SshdServer, tmp_path: Path) -> None:
    install, _lines, _first = bootstrapped
    volume = tmp_path / "vol"
    env = {**os.environ, "ISENGARD_MODE": "fast-test"}
    base = [sys.executable, "-m", "isengard_desktop", "--volume", str(volume)]
    remote = install.remote
    subprocess.run([*base, "remotes", "add", "boot", "--ssh", f"{remote.user}@127.0.0.1:{remote.port}",
                    "--key", str(remote.key), "--dir", remote.dir, "--no-check"], check=True, env=env)
    done = subprocess.run([*base, "remotes", "bootstrap", "boot", "--json"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == __version__
    # Timed progress lines on stderr (the app's files are sent again if this checkout changed meanwhile).
    assert done.stderr.startswith("[   0.0s] Checking boot (")
    assert f"] boot has Isengard Desktop {__version__}" in done.stderr


def test_a_changed_app_sends_only_its_files(bootstrapped: tuple[RemoteInstall, list[str], float],
                                            ssh_env: SshdServer) -> None:
    install, _lines, first = bootstrapped
    record_path = Path(install.folder) / "installed.json"
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "source_hash": "an older checkout"}))
    lines: list[str] = []
    started = time.monotonic()
    ensure_bootstrapped(install.remote, lines.append)
    seconds = time.monotonic() - started
    assert lines[1] == f"Sending the app's files ({__version__})"
    assert not any("Creating the Python environment" in line or line.startswith("Installing") for line in lines)
    assert seconds < first / 3
    assert json.loads(record_path.read_text())["source_hash"] != "an older checkout"


def test_an_install_waits_for_another_one_in_the_same_folder(bootstrapped: tuple[RemoteInstall, list[str], float],
                                                             ssh_env: SshdServer,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from isengard_desktop.core.remote import bootstrap

    monkeypatch.setattr(bootstrap, "LOCK_POLL_S", 0.2)
    install, _lines, _first = bootstrapped
    folder = Path(install.folder)
    record = json.loads((folder / "installed.json").read_text())
    (folder / "installed.json").write_text(json.dumps({**record, "source_hash": "an older checkout"}))
    (folder / ".bootstrap-lock").mkdir()  # another process is installing
    lines: list[str] = []
    worker = threading.Thread(target=ensure_bootstrapped, args=(install.remote, lines.append))
    worker.start()
    deadline = time.monotonic() + 20
    while not any(line.startswith("Waiting for another install") for line in lines) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    name = install.remote.name
    assert lines == [f"Checking {name} ({install.remote.address})",
                     f"Waiting for another install of the app on {name} to finish"]
    (folder / ".bootstrap-lock").rmdir()  # the other one ends
    worker.join(60)
    assert lines[-1].startswith(f"{name} has Isengard Desktop") and not (folder / ".bootstrap-lock").exists()
