"""Installing an upstream engine from the window (Settings and the first-run page share this).

The install itself is ``core.engines_install.install`` (Qt-free); here it runs off the GUI thread with a
modal progress dialog, and the result is told to the person in one sentence.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QProgressDialog, QWidget

from isengard_desktop.base.log import correlation
from isengard_desktop.context import AppContext
from isengard_desktop.ui.bridge import run_in_background


def engine_title(name: str) -> str:
    """How sentences name an installable engine: its declared ``Upstream.title`` ("AI-Toolkit")."""
    from isengard_desktop.core.engines import upstream

    try:
        return upstream(name).title
    except (LookupError, TypeError):  # not a registered engine with an upstream: its name is all there is
        return name


def install_engine(parent: QWidget, ctx: AppContext, name: str,
                   on_finished: Callable[[bool], None] | None = None) -> QProgressDialog:
    """Install (or repair) ``name`` into the volume in the background; ``on_finished(ok)`` runs on the GUI thread."""
    from isengard_desktop.core.engines_install import install

    title = engine_title(name)
    dialog = QProgressDialog(f"Installing {title}…", "", 0, 6, parent)
    dialog.setWindowTitle(f"Installing {title}")
    dialog.setCancelButton(None)  # a half-built environment is thrown away anyway; nothing to cancel into
    dialog.setWindowModality(Qt.WindowModality.WindowModal)
    dialog.show()

    def on_progress(value) -> None:
        done, total, what = value
        dialog.setMaximum(total)
        dialog.setValue(done)
        dialog.setLabelText(what)

    def on_done(record) -> None:
        dialog.close()
        QMessageBox.information(parent, "Installed", f"{title} is installed at {record['commit'][:12]}.")
        ctx.restart_service(name)  # ComfyUI starts (again) from the new install
        if on_finished:
            on_finished(True)

    def on_error(exc) -> None:
        dialog.close()
        QMessageBox.warning(parent, "Install failed", str(exc))
        if on_finished:
            on_finished(False)

    root = ctx.volume.root
    with correlation("engine_install", engine=name):
        run_in_background(parent, lambda report, _c: install(name, root, None, lambda *a: report(a)),
                          on_progress, on_done, on_error)
    return dialog
