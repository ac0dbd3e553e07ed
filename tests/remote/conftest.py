"""A real OpenSSH server on 127.0.0.1 for the remote tests (issue 16, item 5).

``sshd_server`` (session scope) starts ``sshd -D -e -f CONFIG`` on a free port with a temporary host key and one
authorised temporary client key, writes a known_hosts file and an ssh config file (Host alias ``isengard-test``
with Port, IdentityFile, UserKnownHostsFile, StrictHostKeyChecking yes), and stops sshd at the end. The remote
user is whoever runs the tests (root in CI); its "remote volume" is a temporary folder, given per remote as
``dir``. ``ssh_env`` (function scope) points the app's SSH layer at that config through ISENGARD_SSH_CONFIG.
Skips with the reason when sshd or ssh-keygen is not installed (``.ci/run`` installs openssh-server as root).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from isengard_desktop.core.remote.bootstrap import RemoteInstall, ensure_bootstrapped
from isengard_desktop.core.remote.ssh import CONFIG_ENV, CONTROL_DIR_ENV, Remote, close_all
from tests.conftest import stop_process

HOST_ALIAS = "isengard-test"


@dataclass(frozen=True)
class SshdServer:
    port: int
    user: str
    client_key: Path  # authorised private key
    wrong_key: Path  # a key sshd does not know
    known_hosts: Path
    config: Path  # ssh config: Host isengard-test -> 127.0.0.1:port, the key, the known_hosts
    bare_config: Path  # ssh config with an empty known_hosts (every host unknown) and StrictHostKeyChecking yes
    remote_root: Path  # folder the remote volumes of the tests go under
    pid: int

    def remote(self, name: str = "loop", folder: str | None = None, **changes: object) -> Remote:
        """A Remote for this server by address (127.0.0.1:port with the test key)."""
        target = folder or str(self.remote_root / name)
        base = Remote(name, self.user, "127.0.0.1", self.port, str(self.client_key), target)
        return Remote(**{**base.to_json(), **changes})  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    sshd = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)
    if sshd is None or shutil.which("ssh-keygen") is None or shutil.which("ssh") is None:
        pytest.skip("sshd, ssh or ssh-keygen is not installed (apt-get install openssh-server openssh-client)")
    base = tmp_path_factory.mktemp("sshd")
    os.chmod(base, 0o700)
    host_key, client_key, wrong_key = base / "host_key", base / "client_key", base / "wrong_key"
    for key in (host_key, client_key, wrong_key):
        _keygen(key)
    authorized = base / "authorized_keys"
    authorized.write_text((base / "client_key.pub").read_text())
    port = _free_port()
    config = base / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {authorized}\n"
        f"PidFile {base / 'sshd.pid'}\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n"
        "AcceptEnv LANG LC_*\nSubsystem sftp internal-sftp\nLogLevel INFO\n"
        # Several tests open connections at once; the default (10:30:100) would drop some of them.
        "MaxStartups 100\nMaxSessions 100\n"
    )
    # sshd needs its privilege-separation folder; creating it is harmless where it exists.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True) if os.geteuid() == 0 else None
    log_file = (base / "sshd.log").open("wb")
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log_file.close()
            pytest.skip(f"sshd did not start here: {(base / 'sshd.log').read_text()[-400:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.skip("sshd did not listen within 15 s")
    known_hosts = base / "known_hosts"
    public = (base / "host_key.pub").read_text().split()
    known_hosts.write_text(f"[127.0.0.1]:{port} {public[0]} {public[1]}\n")
    empty_known = base / "known_hosts_empty"
    empty_known.write_text("")
    common = "  BatchMode yes\n  StrictHostKeyChecking yes\n  GlobalKnownHostsFile /dev/null\n"
    ssh_config = base / "ssh_config"
    ssh_config.write_text(
        f"Host {HOST_ALIAS}\n  HostName 127.0.0.1\n  Port {port}\n  User {getpass.getuser()}\n"
        f"  IdentityFile {client_key}\n  IdentitiesOnly yes\n"
        f"Host *\n  UserKnownHostsFile {known_hosts}\n{common}")
    bare_config = base / "ssh_config_bare"
    bare_config.write_text(f"Host *\n  UserKnownHostsFile {empty_known}\n{common}")
    remote_root = tmp_path_factory.mktemp("remote-volumes")
    # The tests' shared connections live in a folder of their own, closed at the end (no ssh left behind). A short
    # path: a pytest-xdist worker's temporary folders (.../popen-gw1/...) make ssh's socket names longer than the
    # 108 bytes a Unix socket may have.
    control = Path(tempfile.mkdtemp(prefix="isengard-sshctl-"))  # made 0700
    previous_control = os.environ.get(CONTROL_DIR_ENV)
    os.environ[CONTROL_DIR_ENV] = str(control)
    server = SshdServer(port, getpass.getuser(), client_key, wrong_key, known_hosts, ssh_config, bare_config,
                        remote_root, proc.pid)
    try:
        yield server
    finally:
        close_all(control)
        shutil.rmtree(control, ignore_errors=True)
        if previous_control is None:
            os.environ.pop(CONTROL_DIR_ENV, None)
        else:
            os.environ[CONTROL_DIR_ENV] = previous_control
        stop_process(proc, timeout=10)
        log_file.close()


@dataclass(frozen=True)
class FirstBootstrap:
    install: RemoteInstall
    lines: list[str]  # the progress lines of the first install
    seconds: float  # how long the first install took


@pytest.fixture(scope="session")
def first_bootstrap(sshd_server: SshdServer) -> FirstBootstrap:
    """The loopback remote ``gpu1`` bootstrapped once for the session (a venv, torch, the app: about a minute of
    pip), with the lines and time of that first install: tests/remote/test_remotes_bootstrap.py checks the first
    install and what follows it, the remote-jobs tests run their jobs on it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CONFIG_ENV, str(sshd_server.config))
        remote = sshd_server.remote("gpu1", folder=str(sshd_server.remote_root / "boot"))
        lines: list[str] = []
        started = time.monotonic()
        install = ensure_bootstrapped(remote, lines.append)
        seconds = time.monotonic() - started
        sys.stderr.write(f"\nbootstrap of the loopback remote: {seconds:.1f} s\n")
        return FirstBootstrap(install, lines, seconds)


@pytest.fixture
def ssh_env(sshd_server: SshdServer, monkeypatch: pytest.MonkeyPatch) -> SshdServer:
    """The app's SSH layer (and the CLI processes a test starts) use the test server's ssh config."""
    monkeypatch.setenv(CONFIG_ENV, str(sshd_server.config))
    return sshd_server
