"""Project-level promises: the Qt-free core stays Qt-free, and CI runs the README's test command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is a test dependency; install with pip install -e '.[test]'"
    proc = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_ci_runs_the_readme_test_command() -> None:
    readme_commands = [line for line in (ROOT / "README.md").read_text().splitlines()[:4] if line.startswith("python3")]
    assert len(readme_commands) == 2, "README must open with exactly two commands"
    assert readme_commands[1] in (ROOT / ".ci" / "run").read_text()


def test_gui_start_does_not_import_ml_libraries() -> None:
    code = (
        "import sys, isengard_desktop.__main__, isengard_desktop.context, isengard_desktop.jobs.manager;"
        "import isengard_desktop.ui.app;"
        "bad = [m for m in ('torch', 'diffusers', 'peft', 'transformers', 'pyqtgraph') if m in sys.modules];"
        "print(','.join(bad))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"the GUI process imported {proc.stdout.strip()} at start-up"
