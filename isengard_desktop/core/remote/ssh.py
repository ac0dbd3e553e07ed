"""The SSH layer: run commands on a remote machine and copy files to and from it, through the system ``ssh`` client.

Why the system client and not paramiko/asyncssh: people who rent a GPU box already reach it with ``ssh``. Their
``~/.ssh/config`` (Host aliases, ProxyJump, IdentityFile), their ``known_hosts``, their agent (and hardware keys,
1Password/KeePassXC agents, Windows' OpenSSH agent) all just work, with no second trust store or key loader of
ours, and the app never reads a private key: it passes at most the key's *path* (``-i``). OpenSSH ships with
Linux, macOS and Windows 10+. The cost is parsing ssh's stderr for the reason of a failure (``_diagnose``).

Every call goes through ``ssh_options`` (one place): ``BatchMode=yes`` (never a password or passphrase prompt:
a hung prompt in a background thread is worse than an error), ``ConnectTimeout``, ``ServerAliveInterval`` (a
dropped link is noticed in ~45 s), and on POSIX a ControlMaster socket per remote in a private runtime folder,
so repeated calls reuse one connection (~10 ms instead of ~150 ms+ on a LAN, seconds across the world).
``ISENGARD_SSH_CONFIG`` names an ssh config file passed as ``-F`` (tests point at their own known_hosts this way;
the ssh client reads ``~/.ssh`` from the passwd home, not from ``$HOME``).

Files travel as a tar stream over one ssh connection (Python's ``tarfile`` here, ``tar`` there): one round trip
for many small files, no shell-quoting pitfalls of scp's legacy mode, and extraction here uses the "data" filter
(no absolute paths, no links out of the target folder).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from isengard_desktop.base.errors import IsengardError

log = structlog.get_logger(__name__)

DEFAULT_REMOTE_DIR = "~/.isengard-remote"
CONFIG_ENV = "ISENGARD_SSH_CONFIG"
# Where the shared-connection sockets live (tests use their own folder, so they can close every connection at the end).
CONTROL_DIR_ENV = "ISENGARD_SSH_CONTROL_DIR"
CONNECT_TIMEOUT_S = 10
# Shell prefix: $d = argument 1 with a leading ~ expanded to the remote home (argv is quoted, so ~ is not).
EXPAND_DIR = 'd="$1"; case "$d" in "~") d="$HOME";; "~/"*) d="$HOME/${d#"~/"}";; esac; '
# ssh's own exit status when the connection (not the remote command) failed.
SSH_FAILED = 255


class SshError(IsengardError):
    """The remote could not be reached or refused us; ``kind`` says why (host_key, auth, refused, timeout, dns,
    missing, failed)."""

    def __init__(self, message: str, kind: str = "failed") -> None:
        super().__init__(message)
        self.kind = kind


class RemoteCommandError(IsengardError):
    """The connection worked but the command on the remote ended with an error."""

    def __init__(self, message: str, returncode: int, stderr: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


@dataclass(frozen=True)
class Remote:
    """One remote machine. ``user``/``port`` may be empty/None: then the person's ~/.ssh/config (or ssh's defaults:
    their login name, port 22) decide, so a Host alias with its own Port and User works as typed. ``key`` is a path
    to a private key file, never its content. ``dir`` is the remote volume (``~`` is the remote home)."""

    name: str
    user: str
    host: str
    port: int | None = None
    key: str | None = None
    dir: str = DEFAULT_REMOTE_DIR

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def address(self) -> str:
        """``user@host:port`` as a person typed it (what `remotes list` shows)."""
        return self.destination + (f":{self.port}" if self.port else "")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "user": self.user, "host": self.host, "port": self.port, "key": self.key,
                "dir": self.dir}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Remote:
        return cls(str(data["name"]), str(data.get("user") or ""), str(data["host"]),
                   int(data["port"]) if data.get("port") else None, data.get("key") or None,
                   str(data.get("dir") or DEFAULT_REMOTE_DIR))


def parse_address(text: str) -> tuple[str, str, int | None]:
    """``user@host[:port]`` (or ``host``) -> (user, host, port). Raises ValidationError on nonsense."""
    from isengard_desktop.base.errors import ValidationError

    text = text.strip()
    user, _, hostport = text.rpartition("@")
    host, port = hostport, None
    if hostport.count(":") == 1:  # an IPv6 literal has several colons; give those as [addr]:port
        host, _, port_text = hostport.partition(":")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValidationError(f"The port in {text!r} is not a number from 1 to 65535; write USER@HOST:PORT.")
        port = int(port_text)
    host = host.strip("[]")
    if not host or any(ch.isspace() for ch in text) or text.startswith("-"):
        raise ValidationError(f"{text!r} is not an SSH address; write USER@HOST or USER@HOST:PORT.")
    return user, host, port


def _control_dir() -> Path | None:
    """A private folder for ControlMaster sockets (short path: unix sockets are limited to ~104 bytes)."""
    if sys.platform.startswith("win"):
        return None  # Windows' OpenSSH has no connection sharing
    if os.environ.get(CONTROL_DIR_ENV):
        return Path(os.environ[CONTROL_DIR_ENV])
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    folder = Path(base) / f"isengard-ssh-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        if folder.stat().st_uid != os.getuid():
            return None  # someone else's folder: do not put our sockets there
        folder.chmod(0o700)
    except OSError:
        return None
    return folder


def ssh_options(remote: Remote) -> list[str]:
    """The options every ssh call to ``remote`` uses (scp-style ``-o`` only, so they also fit ``ssh -O``)."""
    opts: list[str] = []
    config = os.environ.get(CONFIG_ENV)
    if config:
        opts += ["-F", config]
    opts += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
             "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3"]
    if remote.port:
        opts += ["-o", f"Port={remote.port}"]
    if remote.key:
        # IdentitiesOnly: the named key is the one tried, so a wrong key is reported as such, not masked by the agent.
        opts += ["-i", str(Path(remote.key).expanduser()), "-o", "IdentitiesOnly=yes"]
    control = _control_dir()
    # Unix socket paths are limited to ~104 bytes (the name below adds 50): no sharing beats a failing connection.
    if control is not None and len(str(control)) <= 50:
        # The key and config are part of the socket's name: a connection made with one key must not stand in for
        # a check with another (a wrong key would pass by riding on the good one's connection).
        import hashlib

        tag = hashlib.sha256(f"{remote.key}|{config}".encode()).hexdigest()[:8]
        opts += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control}/{tag}-%C", "-o", "ControlPersist=60"]
    return opts


def _ssh_binary() -> str:
    import shutil

    found = shutil.which("ssh")
    if not found:
        raise SshError("The ssh command is not installed; install OpenSSH (Linux: the openssh-client package, "
                       "Windows: Settings → Optional features → OpenSSH Client) and try again.", "missing")
    return found


def ssh_command(remote: Remote, argv: Sequence[str] | None = None) -> list[str]:
    """The full ``ssh`` command line running ``argv`` on ``remote`` (POSIX-quoted for the remote shell)."""
    cmd = [_ssh_binary(), *ssh_options(remote), remote.destination]
    if argv:
        cmd += ["--", shlex.join(str(a) for a in argv)]
    return cmd


def _diagnose(remote: Remote, stderr: str) -> SshError:
    """ssh's stderr -> one sentence a person can act on."""
    text = stderr.lower()
    who = remote.address
    typed = f"ssh -p {remote.port} {remote.destination}" if remote.port else f"ssh {remote.destination}"
    if "remote host identification has changed" in text:
        return SshError(f"The host key of {remote.host} has CHANGED since you last connected (a reinstalled machine, "
                        f"or someone in between); check with its owner, then remove the old key with "
                        f"ssh-keygen -R {remote.host}.", "host_key")
    if "host key verification failed" in text or "no ed25519 host key is known" in text or "host key is known" in text:
        return SshError(f"The host key of {remote.host} is not known: connect once with {typed} to check and "
                        "accept it, then try again.", "host_key")
    if "permission denied" in text:
        key = f"the key {remote.key}" if remote.key else "your SSH keys (agent or ~/.ssh)"
        return SshError(f"{who} refused {key} (permission denied); check the user name and that the public key is "
                        "in ~/.ssh/authorized_keys there.", "auth")
    if "connection refused" in text:
        return SshError(f"{who} refused the connection; check that sshd runs there and the port is right.", "refused")
    if "timed out" in text or "no route to host" in text or "network is unreachable" in text:
        return SshError(f"{who} did not answer within {CONNECT_TIMEOUT_S} s; check the address, the network or "
                        "that the machine is on.", "timeout")
    if "could not resolve hostname" in text:
        return SshError(f"The host name {remote.host} cannot be resolved; check its spelling or your ssh config.",
                        "dns")
    if "identity file" in text and "not accessible" in text:
        return SshError(f"The key file {remote.key} cannot be read; choose an existing private key file.", "auth")
    last = next((line for line in reversed(stderr.strip().splitlines()) if line.strip()), "no message")
    return SshError(f"ssh to {who} failed ({last.strip()}); try {typed} in a terminal to see why.", "failed")


def run(remote: Remote, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None,
        check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` on ``remote`` and wait. Connection failures raise SshError; with ``check``, a failing remote
    command raises RemoteCommandError (its last stderr line in the message)."""
    cmd = ssh_command(remote, argv)
    # stderr goes to a file, not a pipe: a ControlPersist master forked by this call keeps our stderr open, and
    # reading a pipe to its end would wait for that master to exit (up to ControlPersist seconds).
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.run(cmd, input=input, stdout=subprocess.PIPE, stderr=err, timeout=timeout,
                                  stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise SshError(f"{argv[0] if argv else 'ssh'} on {remote.address} took longer than {timeout:.0f} s; "
                           "check the connection and try again.", "timeout") from exc
        err.seek(0)
        stderr = err.read()
    result = subprocess.CompletedProcess(cmd, proc.returncode, proc.stdout, stderr)
    if proc.returncode == SSH_FAILED:
        error = _diagnose(remote, stderr.decode(errors="replace"))
        log.info("ssh_failed", remote=remote.name, kind=error.kind)
        raise error
    if check and proc.returncode != 0:
        last = next((ln for ln in reversed(stderr.decode(errors="replace").splitlines()) if ln.strip()), "")
        raise RemoteCommandError(f"{argv[0]} on {remote.name} ended with status {proc.returncode}"
                                 f"{': ' + last.strip() if last else ''}.", proc.returncode,
                                 stderr.decode(errors="replace"))
    return result


def popen(remote: Remote, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` on ``remote`` and return at once (follow its stdout as a stream). Exit status 255 means the
    connection failed or dropped; turn the stderr you kept into a sentence with ``diagnose``. Give ``stderr`` a
    file (``tempfile.TemporaryFile()``), not a pipe: a connection master forked by this call keeps it open."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen(ssh_command(remote, argv), **kwargs)


def diagnose(remote: Remote, stderr: str) -> SshError:
    """The sentence for an ssh failure whose stderr the caller kept (``popen`` users)."""
    return _diagnose(remote, stderr)


def close(remote: Remote) -> None:
    """Stop the shared connection to ``remote`` (if one is open); the next call opens a new one."""
    if _control_dir() is None:
        return
    subprocess.run([_ssh_binary(), *ssh_options(remote), "-O", "exit", remote.destination],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def close_all(folder: Path) -> None:
    """Stop every shared connection whose socket is in ``folder`` (tests, at the end of a session)."""
    for sock in Path(folder).glob("*"):
        subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "unused"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def put(remote: Remote, local_paths: Iterable[Path], remote_dir: str, *, timeout: float | None = None) -> None:
    """Copy files/folders into ``remote_dir`` (created if missing; ``~/`` is the remote home), keeping their names;
    one tar stream."""
    paths = [Path(p) for p in local_paths]
    script = EXPAND_DIR + 'mkdir -p -- "$d" && exec tar -C "$d" -xf -'
    err = tempfile.TemporaryFile()
    proc = popen(remote, ["sh", "-c", script, "sh", remote_dir], stdin=subprocess.PIPE,
                 stdout=subprocess.DEVNULL, stderr=err)
    try:
        assert proc.stdin is not None
        with tarfile.open(fileobj=proc.stdin, mode="w|") as tar:
            for path in paths:
                tar.add(str(path), arcname=path.name)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the remote side ended early; its status and stderr say why
    _finish(remote, proc, err, "copying to", timeout)


def get(remote: Remote, remote_path: str, local_path: Path, *, timeout: float | None = None) -> Path:
    """Copy the file or folder ``remote_path`` to ``local_path`` (a folder is created; the name is kept inside it).
    Returns the local path of the copy."""
    local_path = Path(local_path)
    local_path.mkdir(parents=True, exist_ok=True)
    script = EXPAND_DIR + 'cd -- "$(dirname -- "$d")" && exec tar -cf - -- "$(basename -- "$d")"'
    err = tempfile.TemporaryFile()
    proc = popen(remote, ["sh", "-c", script, "sh", remote_path], stdout=subprocess.PIPE, stderr=err)
    name = None
    try:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                name = name or member.name.split("/")[0]
                tar.extract(member, local_path, filter="data")
    except tarfile.ReadError:
        pass  # nothing came: the status and stderr below say why
    _finish(remote, proc, err, "copying from", timeout)
    return local_path / (name or Path(remote_path).name)


def _finish(remote: Remote, proc: subprocess.Popen[bytes], err: Any, what: str, timeout: float | None) -> None:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        raise SshError(f"{what.capitalize()} {remote.address} took longer than {timeout:.0f} s; check the connection "
                       "and try again.", "timeout") from exc
    err.seek(0)
    stderr = err.read().decode(errors="replace")
    err.close()
    if proc.returncode == SSH_FAILED:
        raise _diagnose(remote, stderr)
    if proc.returncode != 0:
        last = next((ln for ln in reversed(stderr.splitlines()) if ln.strip()), "")
        raise RemoteCommandError(f"{what.capitalize()} {remote.name} failed{': ' + last.strip() if last else ''}.",
                                 proc.returncode, stderr)
