"""The Jobs tab: every job with its state, engine and duration; its log with level filter and search;
its folder; cancel / resume; and Export debug bundle."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from isengard_desktop.base.errors import IsengardError
from isengard_desktop.context import AppContext
from isengard_desktop.core.units import transfer_text
from isengard_desktop.jobs import protocol
from isengard_desktop.storage.jobs_repo import RESUMABLE_STATES, JobRow
from isengard_desktop.ui.bridge import JobBridge
from isengard_desktop.ui.widgets import button, label

LEVELS = ["all", "debug", "info", "warning", "error"]
COLUMNS = ["Job", "Kind", "Engine", "State", "Progress", "Duration", "Created"]
PROGRESS_COLUMN = COLUMNS.index("Progress")
RESUMABLE_KINDS = ("training", "download", "dataset_check")  # a download resumes from the bytes on disk, a check
# from the photos it already measured


def progress_text(kind: str, progress: dict) -> str:
    """A job's newest progress as one short line (bytes for a download, steps otherwise)."""
    if not progress or not progress.get("total"):
        return ""
    if progress.get("unit") == "bytes":
        return transfer_text(progress)
    return f"{progress.get('step', 0)} / {progress['total']}"


def duration(job: JobRow) -> str:
    if not job.started_at:
        return "–"
    end = datetime.fromisoformat(job.finished_at) if job.finished_at else datetime.now().astimezone()
    seconds = int((end - datetime.fromisoformat(job.started_at)).total_seconds())
    return f"{seconds // 60}m {seconds % 60:02d}s"


def format_log_line(record: dict) -> str:
    extras = " ".join(f"{k}={v}" for k, v in record.items()
                      if k not in ("timestamp", "level", "event", "correlation_id", "job_id", "line"))
    text = record.get("line") or record.get("event", "")
    return f"{record.get('timestamp', '')[11:19]} {record.get('level', 'info'):<7} {text} {extras}".rstrip()


class JobsTab(QWidget):
    def __init__(self, ctx: AppContext, bridge: JobBridge) -> None:
        super().__init__()
        self.ctx = ctx
        layout = QVBoxLayout(self)
        header = QHBoxLayout()
        header.addWidget(label("Jobs & logs", "title", wrap=False))
        header.addStretch(1)
        self.open_folder = button("Open job folder")
        self.cancel_button = button("Cancel")
        self.resume_button = button("Resume")
        self.bundle_button = button("Export debug bundle…")
        # Off by default: a training job's samples are pictures of the person, and a bundle gets sent to others.
        self.bundle_images = QCheckBox("Include sample images (they show the person)")
        self.bundle_images.setToolTip("Adds the job's sample images to the debug bundle. Without it, the bundle "
                                      "holds logs and settings only, with secrets and home-folder paths redacted.")
        for widget in (self.open_folder, self.cancel_button, self.resume_button, self.bundle_images,
                       self.bundle_button):
            header.addWidget(widget)
        layout.addLayout(header)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().hide()
        logs = QWidget()
        log_box = QVBoxLayout(logs)
        filters = QHBoxLayout()
        self.level = QComboBox()
        self.level.addItems(LEVELS)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search the log")
        filters.addWidget(label("Level", "muted", wrap=False))
        filters.addWidget(self.level)
        filters.addWidget(self.search, 1)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setStyleSheet("font-family: monospace; font-size: 12px;")
        self.status = label("", "muted")
        log_box.addLayout(filters)
        log_box.addWidget(self.log_view, 1)
        log_box.addWidget(self.status)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(logs)
        layout.addWidget(splitter, 1)
        self.table.itemSelectionChanged.connect(self.show_log)
        self.level.currentIndexChanged.connect(self.show_log)
        self.search.textChanged.connect(self.show_log)
        self.open_folder.clicked.connect(self._open_folder)
        self.cancel_button.clicked.connect(lambda: self._act(self.ctx.jobs.cancel))
        self.resume_button.clicked.connect(lambda: self._act(self.ctx.jobs.resume))
        self.bundle_button.clicked.connect(lambda: self.export_bundle())
        bridge.state_changed.connect(lambda *_: self.reload())
        bridge.event.connect(self._on_event)
        self.reload()

    def selected_job(self) -> JobRow | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.ctx.jobs.get(self.table.item(rows[0].row(), 0).text())

    def reload(self) -> None:
        selected = self.selected_job()
        jobs = self.ctx.jobs.list()
        self.table.setRowCount(len(jobs))
        for row, job in enumerate(jobs):
            values = [job.id, job.kind, job.engine, job.state, progress_text(job.kind, job.progress), duration(job),
                      job.created_at[:19].replace("T", " ")]
            for column, value in enumerate(values):
                self.table.setItem(row, column, QTableWidgetItem(value))
            if selected and job.id == selected.id:
                self.table.selectRow(row)
        self.table.resizeColumnsToContents()
        self._update_buttons()

    def _on_event(self, job_id: str, event: dict) -> None:
        """Live progress in the Progress column (the database keeps the newest twice a second)."""
        if event.get("event") != "progress":
            return
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.text() == job_id:
                kind = self.table.item(row, 1).text()
                self.table.setItem(row, PROGRESS_COLUMN, QTableWidgetItem(progress_text(kind, event)))
                return

    def log_lines(self, job: JobRow) -> list[str]:
        path = self.ctx.jobs.job_dir(job) / protocol.LOG_FILE
        if not path.exists():
            return []
        level, needle = self.level.currentText(), self.search.text().strip().lower()
        wanted = LEVELS[LEVELS.index(level):] if level != "all" else LEVELS
        out = []
        for raw in path.read_text(encoding="utf-8", errors="replace").splitlines()[-5000:]:
            try:
                record = json.loads(raw)
            except ValueError:
                record = {"event": raw}
            if record.get("level", "info") not in wanted:
                continue
            line = format_log_line(record)
            if needle and needle not in raw.lower():
                continue
            out.append(line)
        return out

    def show_log(self) -> None:
        job = self.selected_job()
        self._update_buttons()
        if job is None:
            self.log_view.setPlainText("")
            self.status.setText("Select a job to see its log.")
            return
        self.log_view.setPlainText("\n".join(self.log_lines(job)))
        self.status.setText(f"Correlation id {job.correlation_id} · folder {self.ctx.jobs.job_dir(job)}"
                            + (f"\n{job.error}" if job.error else ""))

    def _update_buttons(self) -> None:
        job = self.selected_job()
        self.open_folder.setEnabled(job is not None)
        self.cancel_button.setEnabled(bool(job and job.state in ("queued", "running")))
        self.resume_button.setEnabled(bool(job and job.kind in RESUMABLE_KINDS and job.state in RESUMABLE_STATES))

    def _act(self, action) -> None:
        job = self.selected_job()
        if job:
            try:
                action(job.id)
            except IsengardError as exc:
                self.status.setText(str(exc))
            self.reload()

    def _open_folder(self) -> None:
        job = self.selected_job()
        if job:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.ctx.jobs.job_dir(job))))

    def export_bundle(self, target: Path | None = None) -> Path | None:
        job = self.selected_job()
        if target is None:
            name = f"isengard-debug-{job.id if job else 'app'}.zip"
            chosen, _ = QFileDialog.getSaveFileName(self, "Export debug bundle", str(Path.home() / name), "Zip (*.zip)")
            if not chosen:
                return None
            target = Path(chosen)
        folder = self.ctx.jobs.job_dir(job) if job else None
        include = self.bundle_images.isChecked()
        # Imported when asked for: it brings importlib.metadata, which the first frame does not need (E37).
        from isengard_desktop.jobs.debug_bundle import build_debug_bundle, bundle_summary, person_images

        path = build_debug_bundle(self.ctx.volume, folder, self.ctx.mode, target, include_images=include)
        self.status.setText(f"Debug bundle written to {path}. {bundle_summary(len(person_images(folder)), include)}")
        return path
