"""The one bridge between background work and the GUI thread (CONVENTIONS 5).

``run_in_background`` runs a function on a worker QThread and delivers its progress and result
through queued signals; ``JobBridge`` re-emits the job manager's callbacks (which arrive on reader
threads) as queued signals, coalescing progress so a fast trainer cannot flood the event loop.
Worker code never touches a widget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

if TYPE_CHECKING:  # the job manager is made after the window's first frame (issue 14): not imported before it
    from isengard_desktop.jobs.manager import JobManager

COALESCED = ("progress", "gpu")
FLUSH_INTERVAL_MS = 50  # at most 20 coalesced updates a second


# Every task whose thread may still run. A QThread destroyed while it runs aborts the whole process ("QThread:
# Destroyed while thread is still running"), so tasks stay referenced here until their thread has ended, and the
# app waits for them when it quits (wait_for_tasks).
_LIVE: set[Task] = set()


def wait_for_tasks(timeout_s: float = 10.0) -> bool:
    """Ask every background task to stop and wait for their threads; False if one is still running."""
    deadline = time.monotonic() + timeout_s
    for task in list(_LIVE):
        task.cancel()
    for task in list(_LIVE):
        if not task.wait(max(0, int((deadline - time.monotonic()) * 1000))):
            return False
        _LIVE.discard(task)
    return True


class Task(QObject):
    """A function run on its own QThread. ``fn(progress, cancelled)`` gets a progress callback and a cancel check."""

    progress = Signal(object)
    finished = Signal(object)
    failed = Signal(object)

    def __init__(self, fn: Callable[[Callable[[Any], None], Callable[[], bool]], Any], min_interval: float = 0.05):
        super().__init__()
        self._fn = fn
        self._cancel = threading.Event()
        self._min_interval = min_interval
        self._last = 0.0
        self._thread = QThread()
        self._thread.setObjectName("isengard-task")
        self.moveToThread(self._thread)
        self._thread.started.connect(self._run)

    def start(self) -> None:
        _LIVE.add(self)
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    def _report(self, value: Any) -> None:
        now = time.monotonic()
        if now - self._last >= self._min_interval:
            self._last = now
            self.progress.emit(value)

    def _run(self) -> None:
        try:
            result = self._fn(self._report, self._cancel.is_set)
        except Exception as exc:  # reported to the GUI, which shows it to the person
            self.failed.emit(exc)
        else:
            self.finished.emit(result)
        finally:
            self._thread.quit()

    def wait(self, ms: int = 30000) -> bool:
        return self._thread.wait(ms)


class _Relay(QObject):
    """Lives on the GUI thread and calls the callbacks there.

    A plain function or lambda connected to a signal runs in the thread that emits it (Qt has no
    receiver object to queue the call to), so the task's signals are connected to this object's
    methods instead: Qt then queues each call to the GUI thread.

    A relay is reused by the parent's next task, never deleted on its own: deleting it (deleteLater) right after
    its task and QThread were freed crashed the event loop in ~QObject (E38: test_generate_tab under load, 5 runs
    of 5; 0 of 4 with relays kept). The parent's relays die with it; there are as many as its tasks at once.
    """

    def __init__(self, parent: QObject, tasks: list, idle: list) -> None:
        super().__init__(parent)
        self._tasks, self._idle = tasks, idle
        self._on_progress = self._on_done = self._on_error = None
        self.task: Task | None = None

    def follow(self, task: Task, on_progress, on_done, on_error) -> None:
        self._on_progress, self._on_done, self._on_error = on_progress, on_done, on_error
        self.task = task
        task.progress.connect(self.progress)
        task.finished.connect(self.done)
        task.failed.connect(self.error)
        task._thread.finished.connect(self.cleanup)  # queued to the GUI thread: the relay lives there

    @Slot()
    def cleanup(self) -> None:
        """On the GUI thread, once the task's thread has finished (its results, queued before, were delivered):
        drop the last references to it and to the callbacks, and wait for the next task.

        (A lambda connected to QThread.finished would run on the finishing thread itself, and dropping
        the QThread's last Python reference there crashed the app now and then.)
        """
        task, self.task = self.task, None
        self._on_progress = self._on_done = self._on_error = None
        if task is not None:
            task.wait(5000)
            if task in self._tasks:
                self._tasks.remove(task)
            _LIVE.discard(task)
        self._idle.append(self)

    @Slot(object)
    def progress(self, value) -> None:
        if self._on_progress:
            self._on_progress(value)

    @Slot(object)
    def done(self, value) -> None:
        if self._on_done:
            self._on_done(value)

    @Slot(object)
    def error(self, exc) -> None:
        if self._on_error:
            self._on_error(exc)


def run_in_background(parent: QObject, fn, on_progress=None, on_done=None, on_error=None) -> Task:
    """Run ``fn(progress, cancelled)`` on a worker thread; the callbacks run on the GUI thread."""
    task = Task(fn)
    tasks = parent.__dict__.setdefault("_isengard_tasks", [])
    tasks.append(task)  # keep it alive until its thread ends
    idle = parent.__dict__.setdefault("_isengard_idle_relays", [])
    relay = idle.pop() if idle else _Relay(parent, tasks, idle)
    relay.follow(task, on_progress, on_done, on_error)
    task.start()
    return task


class JobBridge(QObject):
    """The job manager's events as Qt signals on the GUI thread."""

    # ``object``: the event dict goes through as it is, with no conversion to a QVariantMap.
    event = Signal(str, object)
    state_changed = Signal(str, str)
    _deliver = Signal(str, object)

    def __init__(self, jobs: JobManager | None = None, parent: QObject | None = None) -> None:
        """Follows ``jobs`` now, or the manager given to attach() later. With a ``parent`` (the window) Qt owns it: a
        reader thread dropping the last Python reference can then never destroy it off the GUI thread (E38)."""
        super().__init__(parent)
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], dict] = {}
        self._closed = False
        self._home = threading.get_ident()  # the GUI thread, where the bridge lives and close() runs
        self._deliver.connect(self._on_deliver)  # queued: emitted from reader threads
        self._timer = QTimer(self)
        self._timer.setInterval(FLUSH_INTERVAL_MS)
        self._timer.timeout.connect(self._flush)
        self._timer.start()
        self._unsubscribe: Callable[[], None] | None = None
        if jobs is not None:
            self.attach(jobs)

    @property
    def attached(self) -> bool:
        return self._unsubscribe is not None

    def attach(self, jobs: JobManager) -> None:
        """Follow the events of ``jobs`` (once; before any of its jobs starts, or their events are missed)."""
        if self._unsubscribe is None:
            self._unsubscribe = jobs.subscribe(self._on_job_event)

    def _on_job_event(self, job_id: str, event: dict) -> None:
        """On a job's reader thread. Emits only while the bridge is open, under the lock close() takes: once close()
        returns no reader thread is inside an emit on this object, which the window is about to delete (E38)."""
        kind = event.get("event", "")
        with self._lock:
            if self._closed:
                return
            if kind in COALESCED:
                self._pending[(job_id, kind)] = event
                return
            items = [self._pending.pop(k) for k in [k for k in self._pending if k[0] == job_id]] + [event]
            if threading.get_ident() != self._home:  # another thread: the signal is queued, only posted, cheap
                for item in items:
                    self._deliver.emit(job_id, item)
                return
        for item in items:  # the GUI thread itself (close() runs there too): delivered at once, outside the lock,
            self._deliver.emit(job_id, item)  # since a slot may publish another job event

    def _flush(self) -> None:
        with self._lock:
            items = [(k[0], v) for k, v in self._pending.items()]
            self._pending.clear()
        for job_id, event in items:
            self.event.emit(job_id, event)

    def _on_deliver(self, job_id: str, event: dict) -> None:
        self.event.emit(job_id, event)
        if event.get("event") == "state":
            self.state_changed.emit(job_id, event.get("state", ""))

    def close(self) -> None:
        """Stop following the jobs; no event is emitted by this bridge after it returns."""
        self._timer.stop()
        with self._lock:
            self._closed = True
            self._pending.clear()
        if self._unsubscribe is not None:
            self._unsubscribe()


class ThreadSignal(QObject):
    """A value other threads hand to the GUI thread (an engine server's state changes) until close(): ``fired`` is
    emitted on the GUI thread, and once close() returns no thread is inside an emit on this object, which its
    parent may then delete (the same rule as JobBridge, E38)."""

    fired = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._closed = False
        self._home = threading.get_ident()

    def emit(self, value: Any) -> None:
        with self._lock:
            if self._closed:
                return
            if threading.get_ident() != self._home:  # queued to the GUI thread: only posted, under the lock
                self.fired.emit(value)
                return
        self.fired.emit(value)  # on the GUI thread the slot runs now, outside the lock (it may close this)

    def close(self) -> None:
        with self._lock:
            self._closed = True
