"""`isengard remotes add|list|check|remove` as a person runs them, against the real sshd on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.remote.conftest import HOST_ALIAS, SshdServer


def isengard(volume: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "ISENGARD_MODE": "fast-test"}
    return subprocess.run([sys.executable, "-m", "isengard_desktop", "--volume", str(volume), *args],
                          capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def test_add_list_check_remove(ssh_env: SshdServer, tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    folder = str(ssh_env.remote_root / "cli")
    added = isengard(volume, "remotes", "add", "box", "--ssh", f"{ssh_env.user}@127.0.0.1:{ssh_env.port}",
                     "--key", str(ssh_env.client_key), "--dir", folder)
    assert added.returncode == 0, added.stderr
    assert "Added box" in added.stdout and "GPU: none (nvidia-smi not found): CPU only" in added.stdout
    assert "App: not installed" in added.stdout
    # A Host alias of the person's ssh config, with no key: their config supplies port, user and key.
    assert isengard(volume, "remotes", "add", "alias", "--ssh", HOST_ALIAS).returncode == 0

    listed = json.loads(isengard(volume, "remotes", "list", "--json").stdout)
    assert [r["name"] for r in listed] == ["alias", "box"]
    box = listed[1]
    assert box["port"] == ssh_env.port and box["key"] == str(ssh_env.client_key) and box["dir"] == folder
    # Only the key's path is stored: nothing of the private key is in the volume.
    secret = ssh_env.client_key.read_text().splitlines()[1]
    assert all(secret not in p.read_text(errors="ignore") for p in volume.rglob("*") if p.is_file())

    report = json.loads(isengard(volume, "remotes", "check", "box", "--json").stdout)
    assert report["folder"] == folder and report["gpus"] == [] and report["app_version"] is None
    assert report["free_disk_gb"] > 0 and report["python"] and report["os"]
    assert report["same_version"] is False

    duplicate = isengard(volume, "remotes", "add", "box", "--ssh", "root@127.0.0.1", "--no-check")
    assert duplicate.returncode == 1 and "exists already" in duplicate.stderr

    removed = isengard(volume, "remotes", "remove", "box")
    assert removed.returncode == 0 and "Removed box" in removed.stdout
    assert [r["name"] for r in json.loads(isengard(volume, "remotes", "list", "--json").stdout)] == ["alias"]
    missing = isengard(volume, "remotes", "check", "box")
    assert missing.returncode == 1 and "There is no remote named 'box'" in missing.stderr


def test_add_refuses_an_unreachable_or_wrong_remote_in_one_sentence(ssh_env: SshdServer, tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    wrong = isengard(volume, "remotes", "add", "w", "--ssh", f"{ssh_env.user}@127.0.0.1:{ssh_env.port}",
                     "--key", str(ssh_env.wrong_key))
    assert wrong.returncode == 1
    assert wrong.stderr.count("\n") == 1 and "permission denied" in wrong.stderr and "Traceback" not in wrong.stderr
    unknown = subprocess.run([sys.executable, "-m", "isengard_desktop", "--volume", str(volume), "remotes", "add",
                              "u", "--ssh", f"{ssh_env.user}@127.0.0.1:{ssh_env.port}"], capture_output=True,
                             text=True, timeout=60, env={**os.environ, "ISENGARD_SSH_CONFIG": str(ssh_env.bare_config),
                                                         "ISENGARD_SSH_CONTROL_DIR": ""})
    assert unknown.returncode == 1
    typed = f"ssh -p {ssh_env.port} {ssh_env.user}@127.0.0.1"
    assert f"The host key of 127.0.0.1 is not known: connect once with {typed} to check and accept it" \
        in unknown.stderr
    bad_key = isengard(volume, "remotes", "add", "k", "--ssh", "root@h", "--key", str(tmp_path / "nope"))
    assert bad_key.returncode == 1 and "does not exist" in bad_key.stderr
    assert json.loads(isengard(volume, "remotes", "list", "--json").stdout) == []
