"""Fixtures every test folder may use: a loopback fake Hugging Face hub (HF_ENDPOINT points at it, child processes
inherit it), a file keyring (never the real one), a real small disk for full-disk tests, and a stand-in
nvidia-smi answering as a desktop RTX 3090 does (this machine has no GPU), and a fast-test volume (``ctx``) with
its main window (``window``)."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from isengard_desktop.context import AppContext

from tests.models.fake_hub import FakeHub

# Qt reads the platform once, when the first QApplication is made (any test may make it): offscreen unless told.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A running FakeHub with no repositories yet; HF_ENDPOINT points at it for this test and its child processes.

    Add files with ``fake_hub.add_file(repo, path, data)`` (``source=Path`` for big ones), tokens with
    ``fake_hub.add_token(token, {repo: "accepted"})``.
    """
    hub = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    # Never let a test reach a real token or the real cache of the person running the tests.
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture
def test_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A file keyring for this test and the worker processes it starts (never the real keyring)."""
    import keyring.core

    from tests.models.file_keyring import ENV, FileKeyring

    path = tmp_path / "keyring.json"
    monkeypatch.setenv(ENV, str(path))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "tests.models.file_keyring.FileKeyring")
    # Worker processes run `python -m ...` and must import the backend from this checkout.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setattr(keyring.core, "_keyring_backend", FileKeyring())
    yield path


@contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A real disk of ``size`` (``"2m"``, ``"400m"``) mounted at ``folder`` for the duration: full-disk faults are
    tried for real, not mocked. Skips the test where a tmpfs cannot be mounted (it needs root)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"a {size} tmpfs cannot be mounted here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


# The two queries the app asks nvidia-smi, answered as the real tool does for an RTX 3090 that drives a display.
FAKE_SMI = """#!/bin/sh
case "$*" in
  *display_active*) echo "0, Enabled, Enabled" ;;
  *--query-gpu=name*) echo "NVIDIA GeForce RTX 3090, 595.58.03, 24576, 1021, 8.6" ;;
  *-L*) echo "GPU 0: NVIDIA GeForce RTX 3090 (UUID: GPU-00000000-0000-0000-0000-000000000000)" ;;
esac
"""


@pytest.fixture
def desktop_3090(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A stand-in nvidia-smi first on PATH (this test and its child processes), GPU caches cleared around it."""
    from isengard_desktop.base import gpu_cards, mode

    script = tmp_path / "bin" / "nvidia-smi"
    script.parent.mkdir(exist_ok=True)
    script.write_text(FAKE_SMI)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    mode.detect_gpu.cache_clear()
    gpu_cards._cache = None
    yield
    mode.detect_gpu.cache_clear()
    gpu_cards._cache = None


# CI installs the real engines (tools/ci_engines.py) and sets this: a real-engine test that skips there is a failure,
# so a broken install or a wrong path cannot pass as "skipped".
REAL_ENGINE_SKIPS = ("ISENGARD_COMFYUI_DIR", "ISENGARD_AITOOLKIT_DIR", "pinned node packs are not installed")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("ISENGARD_REQUIRE_REAL_ENGINES") == "1":
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if any(name in reason for name in REAL_ENGINE_SKIPS):
            report.outcome = "failed"
            report.longrepr = f"a real-engine test skipped although CI installed the engines: {reason}"


# The suite runs on two pytest-xdist workers (README "Tests and CI": `-n 2 --dist loadgroup`). Tests that must not
# run beside one another share a group, and a group runs on one worker, one test after another:
# - comfyui / aitoolkit: the tests that start that real engine (found by the skip reason they give without it, as
#   above): they share the test cache's models, and two of the same engine at once would double their memory;
# - comfyui-flux: the FLUX-shaped ComfyUI test (after two real AI-Toolkit steps on that model; ComfyUI peaks at
#   15.6 GB and it is the longest module): alone, so that it starts first and no second FLUX-shaped run joins it;
# - sshd: tests/remote, which share one sshd and one bootstrapped loopback remote per worker (session fixtures).
# The groups go out first, the longest first (GROUP_ORDER), and the single tests fill in around them.
# - ui: tests/ui in one process, in file order as in a serial run: windows, Qt threads and job workers of one test
#   never overlap another window's (E38's segfault was seen more often with UI tests spread over two workers).
TESTS = Path(__file__).resolve().parent
ENGINE_GROUPS = {"ISENGARD_COMFYUI_DIR": "comfyui", "ISENGARD_AITOOLKIT_DIR": "aitoolkit"}
MODULE_GROUPS = {TESTS / "jobs" / "test_comfyui_flux.py": "comfyui-flux"}
GROUP_ORDER = ("comfyui-flux", "sshd", "comfyui", "ui", "aitoolkit")


def xdist_group_of(item: pytest.Item) -> str | None:
    path = Path(str(item.path))
    if path in MODULE_GROUPS:
        return MODULE_GROUPS[path]
    for mark in item.iter_markers("skipif"):
        reason = str(mark.kwargs.get("reason", ""))
        for variable, group in ENGINE_GROUPS.items():
            if variable in reason:
                return group
    if TESTS / "ui" in path.parents:
        return "ui"
    return "sshd" if TESTS / "remote" in path.parents else None


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "dist", "no") == "loadgroup":
        # xdist would hand out the groups by their number of tests; GROUP_ORDER (below) puts the longest first.
        config.option.loadscopereorder = False
        # A worker that crashes (ERROR_LIST E38) is not replaced: xdist 3.8 fails replacing one under loadgroup with an
        # INTERNALERROR (KeyError) that hides which test crashed; like this the run stops there, naming the test.
        if config.option.maxworkerrestart is None:
            config.option.maxworkerrestart = "0"


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups from the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    groups: dict[int, str | None] = {}
    for item in items:
        mark = item.get_closest_marker("xdist_group")
        group = groups[id(item)] = mark.args[0] if mark and mark.args else xdist_group_of(item)
        if group is not None and mark is None:
            item.add_marker(pytest.mark.xdist_group(group))
        if group is not None and config.getoption("loadgroup", False):
            _name_the_group(item, group)
    if config.getoption("loadgroup", False):  # in an xdist worker: the order in which the units are handed out
        rank = {group: number for number, group in enumerate(GROUP_ORDER)}
        items.sort(key=lambda item: rank.get(groups[id(item)], len(rank) if groups[id(item)] else len(rank) + 1))


def _name_the_group(item: pytest.Item, group: str) -> None:
    """Append ``@group`` to the test's id in a worker, which is how xdist's loadgroup finds a group. xdist 3.8 writes
    it into ``item._nodeid``, which pytest 9.2 no longer reads (the id is ``item._id``, a NodeId): without this
    every group would be scattered over both workers (seen: the remote bootstrapped once per worker)."""
    if hasattr(item, "_nodeid") or not hasattr(item, "_id") or "@" in item.nodeid.rpartition("]")[2]:
        return  # an older pytest, where xdist's own renaming works
    from _pytest.nodeid import NodeId

    item._id = NodeId.parse(f"{item.nodeid}@{group}")


@pytest.fixture(autouse=True)
def gui_thread_gc(request: pytest.FixtureRequest) -> Iterator[None]:
    """A Qt test collects cyclic garbage on the GUI thread only, as the app does (ui/gui_gc.py, E38): a job's reader
    thread or a task's QThread must not destroy a window's Qt objects. Set up first, it ends last: after the windows
    are closed and deleted, their garbage is collected here, on the GUI thread, before CPython collects again."""
    if "qtbot" not in request.fixturenames:
        yield
        return
    import gc

    from isengard_desktop.ui.gui_gc import collect_on_gui_thread

    # What exists before the test stays out of the collections' sight until it ends: the full pass at its end walks
    # the test's objects only (~0.4 s per test for the whole heap once torch is imported, ~10 ms this way).
    gc.freeze()
    collector = collect_on_gui_thread(request.getfixturevalue("qapp"))
    yield
    collector.stop()
    gc.unfreeze()


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[AppContext]:
    """A fresh fast-test volume with its job manager, shut down after the test."""
    from isengard_desktop.context import AppContext

    context = AppContext.open(tmp_path / "vol", "fast-test")
    yield context
    context.jobs.shutdown(wait=10)
    context.close()


@pytest.fixture
def window(qtbot, ctx: AppContext, monkeypatch: pytest.MonkeyPatch):
    """The main window on ``ctx``, shown, as a person who finished the first-run page sees it."""
    from PySide6.QtWidgets import QMessageBox

    from isengard_desktop.ui.main_window import MainWindow

    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes))
    # The window starts ComfyUI when it is installed; these tests drive the built-in engine only
    # (tests/jobs/test_comfyui_jobs.py covers ComfyUI).
    monkeypatch.delenv("ISENGARD_COMFYUI_DIR", raising=False)
    # These tests start where a person who finished the first-run page is (test_first_run.py covers the page).
    ctx.settings.first_run_done = True
    win = MainWindow(ctx)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Ask a server the tests started (sshd, a ComfyUI) to end; kill it when it does not within ``timeout``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
