"""The window's tabs built when first needed, and its work after the first frame done a step at a time.

Issue 14 (E6, E37): the first frame builds only the tab the window reopens on; the others are empty pages
replaced by the real tab the first time they are shown (before they are painted) or used (``window.training``).
A tab built for the first frame may leave what that frame does not need (engine lists, the job manager, past
runs) to ``load_later()``, which the window calls after the first frame. What the steps after the first frame
import is imported one module per turn of the event loop: importing it at once stalled the loop for ~0.1 s, and a
thread doing it left ~50 ms stalls on a loaded machine.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QTabWidget, QWidget

# The tabs in order: (attribute, title). settings.last_tab holds the title of the one the person last used.
TABS = (("characters", "Characters"), ("dataset", "Dataset"), ("training", "Training"), ("generate", "Generate"),
        ("jobs", "Jobs"))

# What the steps after the first frame import (the job manager; each engine and what its availability check
# needs; what a tab's load_later() needs), leaves first. A module missing from this list is imported with the
# first one that needs it: a slice grows, nothing breaks.
STEP_IMPORTS = (
    "engines.interface", "isengard_desktop.jobs.protocol", "tarfile", "isengard_desktop.core.remote.ssh",
    "isengard_desktop.core.remote.sync", "isengard_desktop.storage.jobs_repo", "isengard_desktop.jobs.remote_job",
    "isengard_desktop.jobs.manager", "csv", "socket", "calendar", "email.utils", "email.iterators", "email.message",
    "importlib.abc", "importlib.metadata", "engines.registry", "isengard_desktop.core.engines",
    "engines.aitoolkit.engine", "engines.comfyui.workflow", "engines.comfyui.engine", "hashlib", "http",
    "email.parser", "ssl", "http.client", "urllib.request", "engines.comfyui.remote", "engines.diffusers.engine",
    "engines.video", "engines.flux_base", "engines.diffusers.preflight", "isengard_desktop.core.training",
    "isengard_desktop.core.remote.registry", "isengard_desktop.core.remote.jobs", "isengard_desktop.base.gpu_cards",
    "isengard_desktop.base.memory_plan", "isengard_desktop.base.spec_plan", "isengard_desktop.core.training_plan",
    "isengard_desktop.core.photo_check.tiny_embedder", "isengard_desktop.core.photo_check.embedder",
    "isengard_desktop.core.photo_check.analyse", "isengard_desktop.core.photo_check.cache",
    "isengard_desktop.core.photo_check.service",
)


def import_steps() -> list[Callable[[], None]]:
    """One step per module of STEP_IMPORTS not imported yet."""
    return [_import_step(name) for name in STEP_IMPORTS if name not in sys.modules]


def _import_step(name: str) -> Callable[[], None]:
    def step() -> None:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 (a broken engine is reported by the step that lists the engines)
            pass

    return step


class AfterFirstFrame(QObject):
    """Calls ``callback`` once, as soon as ``window``'s first frame is on screen: the turn of the event loop after
    its first paint, or a second after it is first shown in case no paint comes (a window shown minimised)."""

    def __init__(self, window: QWidget, callback: Callable[[], None]) -> None:
        super().__init__(window)  # with the window as parent: nothing is called once it is gone
        self._callback = callback
        self._done = False
        window.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.Paint:
            QTimer.singleShot(0, self, self._call)
        elif event.type() == QEvent.Type.Show:
            QTimer.singleShot(1000, self, self._call)
        return False

    def _call(self) -> None:
        if not self._done:
            self._done = True
            self.parent().removeEventFilter(self)
            self._callback()


def run_steps(context: QObject, steps: list[Callable[[], None]], stopped: Callable[[], bool]) -> None:
    """Run ``steps`` one per turn of the event loop (a timer lets events in between) until ``stopped()``."""
    if steps and not stopped():
        steps[0]()
        QTimer.singleShot(1, context, lambda: run_steps(context, steps[1:], stopped))


class LazyTab:
    """A window attribute (``window.training``) that is the tab, built the first time it is read."""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, window, owner=None):
        return self if window is None else window.book.get(self.name)


class TabBook:
    """The QTabWidget's pages: an empty page per tab until ``get`` puts the real one, made by ``make(name,
    for_first_frame)``, in its place. ``opening`` (a title) is the tab shown first; it is built at once."""

    def __init__(self, tabs: QTabWidget, make: Callable[[str, bool], QWidget], opening: str) -> None:
        self.tabs = tabs
        self._make = make
        self.built: dict[str, QWidget] = {}
        for _name, title in TABS:  # empty pages, replaced by the real tab before they are ever painted
            tabs.addTab(QWidget(), title)
        titles = [title for _name, title in TABS]
        if opening in titles:  # reopen where the person left off
            tabs.setCurrentIndex(titles.index(opening))
        self.first = TABS[tabs.currentIndex()][0]
        self.get(self.first, for_first_frame=True)
        tabs.currentChanged.connect(self._shown)

    def get(self, name: str, for_first_frame: bool = False) -> QWidget:
        """The tab called ``name`` (an attribute of TABS), built now if it is not yet."""
        tab = self.built.get(name)
        if tab is not None:
            return tab
        tab = self.built[name] = self._make(name, for_first_frame)
        index = [n for n, _title in TABS].index(name)
        current = self.tabs.currentIndex()
        # Swap the empty page for the tab without telling currentChanged's listeners: nothing changed for them.
        self.tabs.blockSignals(True)
        placeholder = self.tabs.widget(index)
        self.tabs.removeTab(index)
        self.tabs.insertTab(index, tab, TABS[index][1])
        self.tabs.setCurrentIndex(current)
        self.tabs.blockSignals(False)
        placeholder.deleteLater()
        return tab

    def _shown(self, index: int) -> None:
        self.get(TABS[index][0])  # a person never sees the empty page: the tab is built before it is painted

    def refresh(self, *names: str) -> None:
        """Tabs already built read their data again; a tab not built yet reads it all when it is built."""
        for name in names:
            if name in self.built:
                self.built[name].refresh()

    def load_first_later(self) -> None:
        """What the tab built for the first frame left for after it (its ``load_later``, when it has one)."""
        load_later = getattr(self.built.get(self.first), "load_later", None)
        if load_later is not None:
            load_later()
