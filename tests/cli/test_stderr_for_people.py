"""The CLI's stderr is for people (issue 15 item 7): a warning is one sentence there, its JSON goes to the log file,
and ``-v`` shows the JSON lines on stderr too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import logging, sys
from pathlib import Path
import structlog
from isengard_desktop.base import log as app_log
verbose = sys.argv[1] == "-v"
# As cli/main.py configures it, then the warning engines_install.py logs for a snapshot missing files.
app_log.configure(Path(sys.argv[2]), stderr_level=logging.INFO if verbose else logging.WARNING,
                  stderr_for_people=not verbose)
structlog.get_logger("isengard_desktop.core.engines_install").warning(
    "engine_source_files_missing", engine="aitoolkit", files=["a.png", "b.bin", "c.txt", "d.md"], count=12)
"""


def _run(flag: str, logs: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, flag, str(logs)], capture_output=True, text=True,
                          timeout=60, check=True)


def test_a_warning_is_one_sentence_on_stderr_and_json_in_the_log(tmp_path: Path) -> None:
    out = _run("", tmp_path)
    lines = out.stderr.strip().splitlines()
    assert lines == ["isengard: warning: 12 file(s) of the aitoolkit source could not be read from its snapshot "
                     "(a.png, b.bin, c.txt and 1 more); the install went on without them."]
    (log_file,) = tmp_path.glob("app-*.jsonl")
    record = json.loads(log_file.read_text(encoding="utf-8").splitlines()[-1])
    assert record["event"] == "engine_source_files_missing" and record["count"] == 12


def test_verbose_shows_the_json_lines(tmp_path: Path) -> None:
    out = _run("-v", tmp_path)
    record = json.loads(out.stderr.strip().splitlines()[-1])
    assert record["event"] == "engine_source_files_missing" and record["files"][0] == "a.png"
