"""The worker alone sends a job's final ``done`` (issue 9): an engine that sends one itself is not heard, and the
job's state is the one the engine returned."""

from __future__ import annotations

from pathlib import Path

import pytest

from isengard_desktop.jobs import protocol
from isengard_desktop.jobs.worker import Channel


def test_an_engines_own_done_is_dropped_and_the_workers_carries_the_returned_state(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    channel = Channel(tmp_path)
    channel.emit({"event": "progress", "step": 1, "total": 2})
    channel.emit({"event": "done", "state": "succeeded"})  # an engine claiming success before it returned
    channel.finish("cancelled")  # what the engine returned
    channel.finish("failed")  # a second final event is never sent
    # Only the protocol's lines: a log line may share stdout here (the worker's logs go to its stderr).
    events = [e for e in map(protocol.decode, capsys.readouterr().out.splitlines()) if e]
    assert events == [{"event": "progress", "step": 1, "total": 2}, {"event": "done", "state": "cancelled"}]
