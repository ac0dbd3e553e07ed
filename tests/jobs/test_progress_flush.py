"""A worker's progress lines leave in batches (E5: a write and a wake-up of the app per step cost ~2 % of a tiny
model's step), but never wait for the job to end: the last of a burst reaches the app within a fraction of a second
while the worker is still busy."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from isengard_desktop.jobs import protocol

BUSY_WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from isengard_desktop.jobs import worker
    worker._buffer_events()
    channel = worker.Channel(Path(sys.argv[1]))
    for step in range(1, 51):  # a burst of steps, then a long one (a sample image, a checkpoint)
        channel.emit({"event": "progress", "step": step, "total": 100})
    time.sleep(5)
    channel.finish("succeeded")
""")


def test_the_last_progress_of_a_burst_arrives_while_the_worker_is_still_busy(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", BUSY_WORKER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    started, steps = time.monotonic(), []
    try:
        while not steps or steps[-1] < 50:
            event = protocol.decode(process.stdout.readline())
            if event and event["event"] == "progress":
                steps.append(event["step"])
        waited = time.monotonic() - started
    finally:
        process.kill()
        process.wait()
    assert steps == list(range(1, 51))
    # Python's start-up and imports take ~0.3 s here; held until the worker's end, it would be 5 s.
    assert waited < 3.0, f"the burst's last progress line took {waited:.1f} s"
