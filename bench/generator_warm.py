"""Benchmark: the built-in generator's first image versus its later ones (the pipeline stays loaded).

Three generation jobs through the job manager on one serving worker (fast-test tiny FLUX model, or the
volume's FLUX.1-dev in production mode): the first pays for starting the worker, importing torch and
diffusers and loading the pipeline; the next ones only generate. Prints submit-to-done seconds.

    .venv/bin/python bench/generator_warm.py [--steps N] [--side PX]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("ISENGARD_MODE", "fast-test")
    from isengard_desktop.base.mode import resolve_mode
    from isengard_desktop.context import AppContext
    from isengard_desktop.core import generation

    mode = resolve_mode()
    ctx = AppContext.open(Path(tempfile.mkdtemp(prefix="isengard-bench-gen-")), mode)
    times = []
    try:
        for run in range(args.runs):
            request = generation.build_request(ctx.volume, mode, "diffusers", "a portrait photo", seed=run,
                                               steps=args.steps)
            started = time.perf_counter()
            job = ctx.jobs.submit("generation", "diffusers", request.to_dict())
            final = ctx.jobs.wait(job.id, timeout=1800)
            times.append(time.perf_counter() - started)
            if final.state != "succeeded":
                raise SystemExit(f"generation failed: {final.error}")
            print(f"image {run + 1}: {times[-1]:.2f} s (worker {final.result['worker_pid']})")
    finally:
        ctx.close()
    later = sum(times[1:]) / max(1, len(times) - 1)
    print(f"first {times[0]:.2f} s, later {later:.2f} s on average: the first costs {times[0] / later:.1f}x "
          f"({mode}, {args.steps} steps)")


if __name__ == "__main__":
    main()
