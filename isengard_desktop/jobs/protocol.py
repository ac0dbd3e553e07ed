"""The worker's JSON-lines protocol: one event object per line on stdout (CONVENTIONS 4)."""

from __future__ import annotations

import json
from typing import Any

from engines.interface import EVENTS

STOP_FILE = "stop.request"
JOB_FILE = "job.json"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "job.log"
WORKER_MODULE = "isengard_desktop.jobs.worker"
SERVE_ARG = "--serve"  # the worker stays alive and takes job folders on stdin (generation jobs)
FROZEN_WORKER_ARG = "--run-worker"  # the bundled app binary doubles as the worker (no python -m there)


def encode(event: dict[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n"


def decode(line: str) -> dict[str, Any] | None:
    """An event from one stdout line, or None for a line that is not one of ours (stray library output)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("event") not in EVENTS:
        return None
    return event
