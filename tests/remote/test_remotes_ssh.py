"""The SSH layer against a real sshd on loopback: commands, stdin, file copies both ways, and each failure a person
can meet said in one sentence (unknown host key, wrong key, refused port, ssh missing)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from isengard_desktop.core.remote import ssh
from isengard_desktop.core.remote.ssh import Remote, RemoteCommandError, SshError
from tests.remote.conftest import HOST_ALIAS, SshdServer


def test_run_returns_output_and_stdin_reaches_the_remote(ssh_env: SshdServer) -> None:
    remote = ssh_env.remote()
    out = ssh.run(remote, ["sh", "-c", 'printf "%s|" "$@"; cat', "sh", "a b", "it's", "$HOME"], input=b"from stdin")
    # Arguments arrive intact (spaces, quotes, a dollar sign are not interpreted by the remote shell).
    assert out.stdout == b"a b|it's|$HOME|from stdin"
    with pytest.raises(RemoteCommandError, match="status 3"):
        ssh.run(remote, ["sh", "-c", "echo nope >&2; exit 3"])
    assert ssh.run(remote, ["false"], check=False).returncode == 1


def test_a_host_alias_from_the_ssh_config_works(ssh_env: SshdServer) -> None:
    # No port, no key: the person's ssh config supplies them, as it does for their own ssh.
    remote = Remote("alias", "", HOST_ALIAS)
    assert ssh.run(remote, ["echo", "hi"]).stdout.strip() == b"hi"


def test_repeated_calls_reuse_the_connection(ssh_env: SshdServer) -> None:
    remote = ssh_env.remote("reuse")
    ssh.close(remote)
    started = time.monotonic()
    ssh.run(remote, ["true"])
    first = time.monotonic() - started
    started = time.monotonic()
    for _ in range(5):
        ssh.run(remote, ["true"])
    later = (time.monotonic() - started) / 5
    ssh.close(remote)
    assert later < max(first, 0.05), (first, later)


def test_put_and_get_copy_folders_both_ways(ssh_env: SshdServer, tmp_path: Path) -> None:
    remote = ssh_env.remote("copy")
    src = tmp_path / "photos with space"
    (src / "sub").mkdir(parents=True)
    (src / "a.jpg").write_bytes(b"\xff\xd8" + bytes(range(256)) * 40)
    (src / "sub" / "b.txt").write_text("caption ✓")
    target = f"{ssh_env.remote_root}/copy/in dir"
    ssh.put(remote, [src], target)
    assert (Path(target) / "photos with space" / "sub" / "b.txt").read_text() == "caption ✓"
    back = ssh.get(remote, f"{target}/photos with space", tmp_path / "back")
    assert back == tmp_path / "back" / "photos with space"
    assert (back / "a.jpg").read_bytes() == (src / "a.jpg").read_bytes()
    with pytest.raises(RemoteCommandError):
        ssh.get(remote, f"{target}/missing", tmp_path / "back2")


def test_unknown_host_key_is_a_clear_error(sshd_server: SshdServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ssh.CONFIG_ENV, str(sshd_server.bare_config))
    ssh.close(sshd_server.remote("unknown"))  # a shared connection of an earlier test would skip the host check
    with pytest.raises(SshError) as caught:
        ssh.run(sshd_server.remote("unknown"), ["true"])
    assert caught.value.kind == "host_key"
    assert str(caught.value).startswith("The host key of 127.0.0.1 is not known: connect once with ssh ")


def test_wrong_key_is_a_clear_error(ssh_env: SshdServer) -> None:
    remote = ssh_env.remote("wrong", key=str(ssh_env.wrong_key))
    ssh.close(remote)
    with pytest.raises(SshError) as caught:
        ssh.run(remote, ["true"])
    assert caught.value.kind == "auth"
    assert "permission denied" in str(caught.value) and str(ssh_env.wrong_key) in str(caught.value)


def test_refused_port_is_a_clear_error(ssh_env: SshdServer) -> None:
    from tests.remote.conftest import _free_port

    remote = ssh_env.remote("refused", port=_free_port())
    with pytest.raises(SshError) as caught:
        ssh.run(remote, ["true"])
    assert caught.value.kind == "refused" and "refused the connection" in str(caught.value)


def test_missing_ssh_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SshError, match="ssh command is not installed"):
        ssh.run(Remote("x", "u", "h"), ["true"])


@pytest.mark.parametrize(("text", "expected"), [
    ("root@gpu.example:2222", ("root", "gpu.example", 2222)),
    ("gpu-box", ("", "gpu-box", None)),
    ("me@10.0.0.5", ("me", "10.0.0.5", None)),
])
def test_parse_address(text: str, expected: tuple[str, str, int | None]) -> None:
    assert ssh.parse_address(text) == expected


@pytest.mark.parametrize("text", ["root@host:99999", "a b@host", "-oProxyCommand=x", "root@"])
def test_parse_address_refuses_nonsense(text: str) -> None:
    from isengard_desktop.base.errors import ValidationError

    with pytest.raises(ValidationError):
        ssh.parse_address(text)


def test_a_folder_under_tilde_is_in_the_remote_home(ssh_env: SshdServer) -> None:
    from isengard_desktop.core.remote.check import check_remote

    remote = ssh_env.remote("tilde", folder="~/.isengard-never-made")
    home = ssh.run(remote, ["sh", "-c", 'printf %s "$HOME"']).stdout.decode()
    report = check_remote(remote)  # reads only: nothing is created in the real home
    assert report.folder == f"{home}/.isengard-never-made" and report.free_disk_gb is not None
    assert not Path(report.folder).exists()
