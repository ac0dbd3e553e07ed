"""Start the window: QApplication, style, volume, logging, mode, context; errors shown, never a traceback."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from isengard_desktop import APP_NAME
from isengard_desktop.base.errors import IsengardError

PROCESS_START = time.perf_counter()


def _open_context(volume_cli_value: str | None):
    from isengard_desktop.bootstrap import open_volume, start

    return start(open_volume(volume_cli_value))


def _quit_on_sigterm(window) -> None:
    """A session logout or `kill` closes the window the normal way: jobs save, ComfyUI is stopped."""
    import signal

    from PySide6.QtCore import QTimer

    def handler(*_args) -> None:
        window.confirm_quit = False
        QTimer.singleShot(0, window.close)

    signal.signal(signal.SIGTERM, handler)
    # Python runs signal handlers only when it gets control; Qt's event loop would otherwise keep it out.
    window._signal_tick = QTimer(window)
    window._signal_tick.timeout.connect(lambda: None)
    window._signal_tick.start(300)


def _report_first_frame(window) -> None:
    """For bench/startup.py: print the time to the window's first painted frame, then close it."""
    from PySide6.QtCore import QEvent, QObject, QTimer

    def report() -> None:
        sys.stdout.write(f"startup_s={time.perf_counter() - PROCESS_START:.3f}\n")
        sys.stdout.flush()
        window.close()

    class FirstPaint(QObject):
        def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt's name)
            if event.type() == QEvent.Type.Paint and not getattr(self, "done", False):
                self.done = True
                QTimer.singleShot(0, report)  # after this paint (and its children's) has finished
            return False

    window._first_paint = FirstPaint(window)
    window.installEventFilter(window._first_paint)


def _skip_feature_scan() -> None:
    """Spare PySide6 reading the source of every module imported after it (~0.1 s of start-up, issue 14).

    For its opt-in ``from __feature__ import snake_case/true_property`` switches, PySide6 reads each newly imported
    module's source looking for "PySide6" and sets that module's default to "no feature" (0) or "ignore" (-1).
    This app never selects a feature, so "no feature" is right for every module and needs no reading.
    """
    feature = sys.modules.get("PySide6.support.feature")
    if feature is not None and callable(getattr(feature, "_mod_uses_pyside", None)):
        feature._mod_uses_pyside = lambda _module: True


def run_gui(volume_cli_value: str | None) -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

    _skip_feature_scan()

    from isengard_desktop.base.resources import resource_path

    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName(APP_NAME)
    from isengard_desktop.ui.gui_gc import collect_on_gui_thread

    collect_on_gui_thread(app)  # before any thread starts: Qt objects in garbage cycles die on this thread (E38)
    app.setStyleSheet(resource_path("style.qss").read_text(encoding="utf-8"))
    ctx = None
    while ctx is None:
        try:
            ctx = _open_context(volume_cli_value)
        except IsengardError as exc:
            box = QMessageBox(QMessageBox.Icon.Critical, APP_NAME, str(exc))
            choose = box.addButton("Choose another folder…", QMessageBox.ButtonRole.AcceptRole)
            box.addButton("Quit", QMessageBox.ButtonRole.RejectRole)
            box.exec()
            if box.clickedButton() is not choose:
                return 1
            folder = QFileDialog.getExistingDirectory(None, "Choose the volume folder", str(Path.home()))
            if not folder:
                return 1
            from isengard_desktop.storage.volume import remember_volume_root

            remember_volume_root(Path(folder))
            volume_cli_value = folder
    from isengard_desktop.ui.main_window import MainWindow

    window = MainWindow(ctx)
    window.show()
    _quit_on_sigterm(window)
    QTimer.singleShot(0, window.offer_interrupted_jobs)
    if os.environ.get("ISENGARD_EXIT_AFTER_SHOW"):
        _report_first_frame(window)
    try:
        code = app.exec()
    finally:
        ctx.close()
    from isengard_desktop.ui.bridge import wait_for_tasks

    if not wait_for_tasks(10.0):
        # A background task still runs (e.g. a hung nvidia-smi): destroying its thread would abort the process
        # with a core dump; everything is saved by now, so leave without running destructors.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
