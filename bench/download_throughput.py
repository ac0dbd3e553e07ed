"""Benchmark (issue 10, item 9): our hub download against curl on loopback, its peak memory, and verification speed.

    .venv/bin/python bench/download_throughput.py [--size-gb 2] [--rounds 2] [--dir /tmp]

Starts the fake hub (tests/models/fake_hub.py) in a process of its own, serving a sparse file of the given size
(it costs no disk; the server sends it with sendfile, so the server is not the limit). Then, alternating:
- ``curl -o`` of the same URL (timed alone, and with the ``sync`` that puts its bytes on disk), and
- our ``hub.download`` in a child process (timed inside; it includes the inline sha256, the fsync and the atomic
  rename), which reports its peak RSS; and once more with the sha256 replaced by a no-op (benchmark only), to
  show what the transfer alone costs against curl, which hashes nothing.
Last, the time of ``hub.sha256_file`` against ``sha256sum`` on the downloaded file (both read it from the page
cache after a first warm-up read). Prints one JSON object; deletes every file it made.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPO, FILE = "bench/big-model", "model.safetensors"

_SERVER = f"""
import sys, time
from pathlib import Path
from tests.models.fake_hub import FakeHub, write_sparse_file
source = write_sparse_file(Path(sys.argv[1]), int(sys.argv[2]))
hub = FakeHub().start()
fake = hub.add_file("{REPO}", "{FILE}", source=source)
print(hub.url, fake.sha256, flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
hub.stop()
"""


class _NoHash:
    """Stands in for sha256 to measure the transfer alone (benchmark only): says the published hash."""

    name = "sha256"

    def __init__(self, published: str) -> None:
        self.published = published

    def update(self, _data: bytes) -> None:
        return

    def hexdigest(self) -> str:
        return self.published


def child(dest: str, no_hash: bool) -> None:
    """One download by our code, in a fresh process: prints seconds and peak RSS."""
    import types

    from isengard_desktop.core.models import hub

    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.perf_counter()
    remote = hub.remote_file(REPO, FILE, None)
    if no_hash:
        hub.hashlib = types.SimpleNamespace(sha256=lambda: _NoHash(remote.sha256))  # type: ignore[assignment]
    state = hub.download(remote, Path(dest), None)
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"state": state, "seconds": seconds, "rss_before_kb": start_rss, "peak_rss_kb": peak}))


def _run(cmd: list[str], **kwargs) -> float:
    began = time.perf_counter()
    subprocess.run(cmd, check=True, **kwargs)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--no-hash", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.no_hash)
        return
    size = int(args.size_gb * (1 << 30))
    work = Path(tempfile.mkdtemp(prefix="isengard-bench-dl-", dir=args.dir))
    if shutil.disk_usage(work).free < size * 1.2:
        sys.exit(f"{work} needs {size * 1.2 / 1e9:.1f} GB free")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1"}
    env.pop("HF_TOKEN", None)
    server = subprocess.Popen([sys.executable, "-c", _SERVER, str(work / "source.bin"), str(size)], cwd=ROOT,
                              env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url, sha = server.stdout.readline().split()
        env["HF_ENDPOINT"] = url
        file_url = f"{url}/{REPO}/resolve/main/{FILE}"
        curl, curl_sync, ours, bare, peaks = [], [], [], [], []
        for _ in range(args.rounds):
            out = work / "curl.bin"
            subprocess.run(["sync"], check=True)
            seconds = _run(["curl", "-s", "-S", "-f", "-o", str(out), file_url])
            curl.append(seconds)
            curl_sync.append(seconds + _run(["sync"]))
            out.unlink()
            dest = work / "ours" / FILE
            for flags, times in (([], ours), (["--no-hash"], bare)):
                dest.unlink(missing_ok=True)
                subprocess.run(["sync"], check=True)
                result = json.loads(subprocess.run([sys.executable, __file__, "--child", str(dest), *flags], cwd=ROOT,
                                                   env=env, check=True, capture_output=True,
                                                   text=True).stdout.splitlines()[-1])
                assert result["state"] == "succeeded"
                times.append(result["seconds"])
                peaks.append(result["peak_rss_kb"])
        sys.path.insert(0, str(ROOT))
        from isengard_desktop.core.models import hub

        dest = work / "ours" / FILE
        hub.sha256_file(dest)  # warm the page cache for both readers alike
        ours_hash, sums = [], []
        for _ in range(args.rounds):
            began = time.perf_counter()
            assert hub.sha256_file(dest) == sha
            ours_hash.append(time.perf_counter() - began)
            sums.append(_run(["sha256sum", str(dest)], stdout=subprocess.DEVNULL))
        best_curl, best_sync, best_ours = min(curl), min(curl_sync), min(ours)
        print(json.dumps({
            "size_bytes": size,
            "curl_s": [round(s, 2) for s in curl], "curl_plus_sync_s": [round(s, 2) for s in curl_sync],
            "ours_s": [round(s, 2) for s in ours],
            "ours_without_inline_sha256_s": [round(s, 2) for s in bare],
            "transfer_ratio_without_sha256_vs_curl_plus_sync": round(best_sync / min(bare), 2),
            "ours_MBps": round(size / best_ours / 1e6), "curl_MBps": round(size / best_curl / 1e6),
            "throughput_ratio_vs_curl": round(best_curl / best_ours, 2),
            "throughput_ratio_vs_curl_plus_sync": round(best_sync / best_ours, 2),
            "peak_rss_mb": round(max(peaks) / 1024, 1),
            "verify_s": [round(s, 2) for s in ours_hash], "sha256sum_s": [round(s, 2) for s in sums],
            "verify_ratio_sha256sum_over_ours": round(statistics.median(sums) / statistics.median(ours_hash), 2),
        }, indent=1))
    finally:
        server.stdin.close()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
