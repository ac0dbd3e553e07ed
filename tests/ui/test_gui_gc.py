"""E38: Qt objects in garbage are freed on the GUI thread only (ui/gui_gc.py). A window closed during a training is
freed there while its job's threads still work; the app installs the collector at start; the crash it prevents, in
a child process."""

from __future__ import annotations

import functools
import gc
import os
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QMessageBox
from shiboken6 import Shiboken

from isengard_desktop.ui.bridge import JobBridge, ThreadSignal
from isengard_desktop.ui.gui_gc import collect_on_gui_thread
from tests.ui.test_training_and_jobs import click_start, prepare, set_advanced

REPO = Path(__file__).resolve().parents[2]


def _python_owned_qt_objects() -> list[QObject]:
    """The QObjects Python owns (their C++ object dies with the Python one, on the thread that frees it)."""
    return [obj for obj in gc.get_objects() if isinstance(obj, QObject) and Shiboken.isValid(obj)
            and Shiboken.ownedByPython(obj)]


class _Allocator:
    """A thread making objects the GUI thread frees (every 20 ms), as a job's reader threads do with its events:
    without the GUI thread's collector, CPython runs its cycle collections on this thread."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.events: list[dict] = []
        self._drain = QTimer()
        self._drain.timeout.connect(self.events.clear)
        self._drain.start(20)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="allocator", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            self.events.extend({"event": "progress", "step": i} for i in range(100))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._drain.stop()
        self.events.clear()


@pytest.mark.slow
def test_a_window_closed_during_a_training_is_freed_on_the_gui_thread(qtbot, ctx, photos: Path, monkeypatch):
    from isengard_desktop.ui.main_window import MainWindow

    collections: list[str] = []

    def note(phase: str, _info: dict) -> None:
        if phase == "start":
            collections.append(threading.current_thread().name)

    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes))
    monkeypatch.delenv("ISENGARD_COMFYUI_DIR", raising=False)
    ctx.settings.first_run_done = True
    gc.callbacks.append(note)
    allocator = _Allocator()
    try:
        window = MainWindow(ctx)
        window.show()
        prepare(qtbot, window, ctx, photos)
        tab = window.training
        set_advanced(tab, steps=3000, every=1000)
        job_id = click_start(qtbot, window, tab)
        # The job's events reach the tab from its reader threads, through the bridge.
        qtbot.waitUntil(lambda: tab.progress.value() > 0, timeout=60_000)
        destroyed_on: list[str] = []
        for obj in _python_owned_qt_objects():
            obj.destroyed.connect(functools.partial(lambda names, *_a: names.append(threading.current_thread().name),
                                                    destroyed_on), Qt.ConnectionType.DirectConnection)
        window.close()  # a person quits during the run: the training stops and keeps a checkpoint
        assert not ctx.jobs.running_jobs() and job_id not in ctx.jobs.running_jobs()
        window.deleteLater()
        freed = weakref.ref(window)
        window = tab = None
        qtbot.wait(1500)  # the allocating thread and the GUI thread's collector go on meanwhile
        gc.collect()  # what the collector has not freed yet: on this, the GUI thread
        assert freed() is None
    finally:
        allocator.stop()
        gc.callbacks.remove(note)
    off_thread = [name for name in collections if name != threading.current_thread().name]
    assert collections and not off_thread, f"cycle collections ran on {sorted(set(off_thread))}"
    assert destroyed_on and set(destroyed_on) == {threading.current_thread().name}


def test_the_collector_frees_cycles_made_by_another_thread_on_the_gui_thread(qtbot):
    collector = collect_on_gui_thread()  # the one the app (and every Qt test) has
    assert collector is collect_on_gui_thread() and not gc.isenabled()
    collected_on: list[str] = []
    gc.callbacks.append(lambda phase, _i: phase == "start" and collected_on.append(threading.current_thread().name))
    try:
        def make_cycles() -> None:
            for _ in range(gc.get_threshold()[0] * 3):
                cycle: list = []
                cycle.append(cycle)

        thread = threading.Thread(target=make_cycles)
        thread.start()
        thread.join()
        assert not collected_on, "CPython collected on the thread that made the garbage"
        assert gc.get_count()[0] > gc.get_threshold()[0]
        qtbot.waitUntil(lambda: gc.get_count()[0] < gc.get_threshold()[0], timeout=2000)  # its timer ran
    finally:
        gc.callbacks.pop()
    assert collected_on and set(collected_on) == {threading.current_thread().name}


def test_a_thread_signal_reaches_the_gui_thread_until_closed(qtbot):
    from PySide6.QtWidgets import QLabel

    label = QLabel("ComfyUI: starting…")
    qtbot.addWidget(label)
    relay = ThreadSignal(label)
    relay.fired.connect(label.setText)
    thread = threading.Thread(target=relay.emit, args=("ComfyUI: ready",))
    thread.start()
    thread.join()
    qtbot.waitUntil(lambda: label.text() == "ComfyUI: ready", timeout=2000)
    relay.close()
    thread = threading.Thread(target=relay.emit, args=("ComfyUI: stopped",))
    thread.start()
    thread.join()
    qtbot.wait(100)
    assert label.text() == "ComfyUI: ready"


def test_a_bridge_with_a_parent_is_owned_by_qt(qtbot):
    from PySide6.QtWidgets import QWidget

    owner = QWidget()
    qtbot.addWidget(owner)
    bridge = JobBridge(parent=owner)
    assert not Shiboken.ownedByPython(bridge) and bridge.parent() is owner
    bridge.close()


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-X", "faulthandler", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "QT_QPA_PLATFORM": "offscreen", **env})


def test_timers_in_garbage_die_on_the_gui_thread_while_a_thread_allocates():
    proc = _run(["-m", "tests.ui.gc_scenario", "150"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = dict(item.split("=") for item in proc.stdout.split())
    assert figures["collections_off_gui"] == "0" and figures["destroyed_off_gui"] == "0"
    assert int(figures["destroyed_on_gui"]) > 100  # the garbage was freed, not kept


def test_the_app_collects_on_the_gui_thread(tmp_path: Path):
    code = ("import gc; from isengard_desktop.ui import app; code = app.run_gui(%r);"
            "from PySide6.QtWidgets import QApplication; from isengard_desktop.ui.gui_gc import GuiThreadCollector;"
            "print(code, gc.isenabled(), QApplication.instance().findChild(GuiThreadCollector) is not None)")
    proc = _run(["-c", code % str(tmp_path / "vol")], ISENGARD_MODE="fast-test", ISENGARD_EXIT_AFTER_SHOW="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-3:] == ["0", "False", "True"], proc.stdout


def test_background_tasks_reuse_their_relays_instead_of_deleting_them(qtbot):
    """Deleting each task's relay right after its task crashed the event loop under load (E38); a parent keeps as
    many relays as it runs tasks at once, and every result still arrives, in the callbacks of its own task."""
    from PySide6.QtWidgets import QWidget

    from isengard_desktop.ui.bridge import _Relay, run_in_background

    owner = QWidget()
    qtbot.addWidget(owner)
    results: list[tuple[str, int]] = []
    gate = threading.Event()
    for n in range(3):  # three at once
        run_in_background(owner, lambda _p, _c, n=n: gate.wait(10) and n, on_done=lambda v: results.append(("a", v)))
    gate.set()
    qtbot.waitUntil(lambda: len(results) == 3 and len(owner._isengard_idle_relays) == 3, timeout=10_000)
    for n in range(20):  # then one after another, as engine changes on the Generate tab
        run_in_background(owner, lambda _p, _c, n=n: n, on_done=lambda v: results.append(("b", v)))
        qtbot.waitUntil(lambda n=n: ("b", n) in results and len(owner._isengard_idle_relays) == 3, timeout=10_000)
    assert sorted(v for k, v in results if k == "a") == [0, 1, 2]
    assert [v for k, v in results if k == "b"] == list(range(20))
    assert len(owner.findChildren(_Relay)) == 3 and not owner._isengard_tasks


def test_the_window_owns_its_bridge_and_stops_handing_on_server_states_once_closed(qtbot, window):
    from engines.interface import ServiceStatus

    assert window.bridge.parent() is window and not Shiboken.ownedByPython(window.bridge)
    qtbot.waitUntil(lambda: hasattr(window, "_service_relay"), timeout=20_000)  # after the first frame
    relay, seen = window._service_relay, []
    relay.fired.connect(lambda status: seen.append(status.state))

    def from_a_server_thread(state: str) -> None:
        thread = threading.Thread(target=relay.emit, args=(ServiceStatus(state),), name="comfyui-supervisor")
        thread.start()
        thread.join()

    from_a_server_thread("starting")
    qtbot.waitUntil(lambda: seen == ["starting"], timeout=5000)
    window.close()
    from_a_server_thread("stopped")  # a state change in flight as the window goes is not handed on
    qtbot.wait(200)
    assert seen == ["starting"]
