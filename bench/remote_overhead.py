"""Benchmark: remote jobs over SSH on loopback (issue 16 item 6).

Starts its own sshd on 127.0.0.1 (temporary host and client keys), bootstraps the app into a remote folder
(``--folder`` keeps it between runs: a later run only checks it), then prints:

1. the time to sync 30 photos to the remote volume the first and the second time (core/remote/sync.py);
2. the overhead of a tiny remote training over the same run on this computer: ``isengard train --remote`` against
   ``isengard train``, same steps, each the median of ``--repeats`` runs, and their ratio;
3. the events' latency from the remote worker to this computer: a process on the remote appends one event line
   with its wall time every 50 ms to a job's events file, the app's follower (the remote agent's ``follow`` over
   the shared SSH connection, as jobs/remote_job.py reads it) receives them here; loopback, so one clock.

    .venv/bin/python bench/remote_overhead.py [--steps 40] [--repeats 3] [--folder /tmp/isengard-bench-remote]
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def start_sshd(work: Path) -> tuple[subprocess.Popen, Path, int]:
    """A loopback sshd and an ssh config file ("Host *" with its key and known_hosts) to reach it."""
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / name)], check=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (work / "authorized_keys").write_text((work / "client_key.pub").read_text())
    (work / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {work / 'host_key'}\nAuthorizedKeysFile "
        f"{work / 'authorized_keys'}\nPidFile {work / 'sshd.pid'}\nUsePAM no\nStrictModes no\n"
        "PasswordAuthentication no\nPermitRootLogin prohibit-password\nMaxStartups 100\nMaxSessions 100\n")
    Path("/run/sshd").mkdir(exist_ok=True)
    sshd = subprocess.Popen([shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-f", str(work / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    key = (work / "host_key.pub").read_text().split()
    (work / "known_hosts").write_text(f"[127.0.0.1]:{port} {key[0]} {key[1]}\n")
    config = work / "ssh_config"
    config.write_text(f"Host *\n  UserKnownHostsFile {work / 'known_hosts'}\n  StrictHostKeyChecking yes\n"
                      f"  IdentityFile {work / 'client_key'}\n  IdentitiesOnly yes\n")
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    return sshd, config, port


def isengard(volume: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "isengard_desktop", "--volume", str(volume), *args],
                          capture_output=True, text=True, check=True)


def photos(folder: Path, count: int, side: int) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"photo-{i:02d}.jpg"
        # Noise compresses badly: a JPEG of about the size of a phone photo's (1-3 MB at these sides).
        Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(path, quality=90)
        paths.append(path)
    return paths


def bench_sync(side, work: Path) -> None:
    from isengard_desktop.core.remote.sync import sync_inputs

    local = work / "sync-volume"
    files = photos(local / "images" / "00", 30, 1024)
    inputs = [p.relative_to(local).as_posix() for p in files]
    megabytes = sum(p.stat().st_size for p in files) / 2**20
    first = sync_inputs(side, local, inputs, {"jobs/bench/job.json": b"{}"})
    second = sync_inputs(side, local, inputs, {"jobs/bench/job.json": b"{}"})
    print(f"sync 30 photos ({megabytes:.1f} MB): first {first.seconds:.2f} s ({first.sent} sent), "
          f"second {second.seconds:.2f} s ({second.sent} sent, {second.bytes_sent} B)")


def bench_training(work: Path, steps: int, repeats: int) -> None:
    volume = work / "train-volume"
    isengard(volume, "characters", "create", "Ada", "--trigger", "ohwx_ada")
    isengard(volume, "dataset", "import", "Ada", *map(str, photos(work / "train-photos", 4, 64)))
    common = ["train", "Ada", "--preset", "quick", "--engine", "diffusers", "--steps", str(steps),
              "--save-every", str(steps), "--sample-every", str(steps), "--json"]
    # First runs build the tiny model in each volume (here and there) and send the photos, as a first use would.
    isengard(volume, *common[:-7], "--steps", "2")
    isengard(volume, *common[:-7], "--steps", "2", "--remote", "bench")
    walls: dict[str, list[float]] = {"local": [], "remote": []}
    for _ in range(repeats):
        for where, extra in (("local", []), ("remote", ["--remote", "bench"])):
            started = time.perf_counter()
            job = json.loads(isengard(volume, *common, *extra).stdout)
            walls[where].append(time.perf_counter() - started)
            assert job["state"] == "succeeded", job["error"]
    local, remote = statistics.median(walls["local"]), statistics.median(walls["remote"])
    print(f"tiny training {steps} steps: local {local:.2f} s, remote {remote:.2f} s, ratio {remote / local:.2f} "
          f"(+{remote - local:.2f} s; runs local {[round(w, 2) for w in walls['local']]}, "
          f"remote {[round(w, 2) for w in walls['remote']]})")


WRITER = """
import json, os, sys, time
path, count = sys.argv[1], int(sys.argv[2])
# The follower treats the job as live while this process (named in agent.pid, the job folder in its argv) runs.
open(os.path.join(os.path.dirname(path), "agent.pid"), "w").write(str(os.getpid()))
time.sleep(1.0)
with open(path, "a") as events:
    for i in range(count):
        events.write(json.dumps({"event": "log", "level": "info", "message": repr(time.time()), "i": i}) + "\\n")
        events.flush()
        time.sleep(0.05)
"""


def bench_latency(side, count: int = 200) -> None:
    from isengard_desktop.core.remote import ssh
    from isengard_desktop.jobs import protocol

    job_dir = side.job_dir("latency-bench")
    ssh.run(side.remote, ["sh", "-c", 'rm -rf "$1" && mkdir -p "$1"', "sh", job_dir])
    writer = ssh.popen(side.remote, [side.python, "-c", WRITER, f"{job_dir}/events.jsonl", str(count)])
    time.sleep(0.7)
    follow = ssh.popen(side.remote, side.agent("follow", job_dir, "0"), stdout=subprocess.PIPE)
    delays = []
    assert follow.stdout is not None
    for raw in follow.stdout:
        event = protocol.decode(raw.decode())
        if event:
            delays.append((time.time() - float(event["message"])) * 1000)
        if len(delays) == count:
            break
    follow.kill()
    writer.wait()
    delays.sort()
    print(f"event latency remote worker -> here ({count} events): median {statistics.median(delays):.1f} ms, "
          f"p95 {delays[int(0.95 * len(delays))]:.1f} ms, max {delays[-1]:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "isengard-bench-remote"),
                        help="the remote folder (kept: a later run only checks the install there)")
    args = parser.parse_args()
    os.environ["ISENGARD_MODE"] = "fast-test"
    work = Path(tempfile.mkdtemp(prefix="isengard-bench-ssh-"))
    sshd, config, port = start_sshd(work)
    os.environ["ISENGARD_SSH_CONFIG"] = str(config)
    try:
        from isengard_desktop.core.remote.bootstrap import ensure_bootstrapped
        from isengard_desktop.core.remote.ssh import Remote
        from isengard_desktop.core.remote.sync import RemoteSide

        remote = Remote("bench", getpass.getuser(), "127.0.0.1", port, None, args.folder)
        started = time.perf_counter()
        install = ensure_bootstrapped(remote)
        print(f"bootstrap (or its check) {time.perf_counter() - started:.1f} s")
        side = RemoteSide(remote, install.python, install.volume)
        bench_sync(side, work)
        isengard(work / "train-volume", "remotes", "add", "bench", "--ssh", f"{remote.destination}:{port}",
                 "--dir", args.folder)
        bench_latency(side)
        bench_training(work, args.steps, args.repeats)
    finally:
        sshd.terminate()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
