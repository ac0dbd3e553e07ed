"""The volume's SQLite database: WAL mode, foreign keys, numbered migrations, one connection per thread.

Migrations are the files ``migrations/NNNN_name.sql``, applied in order inside one transaction
each, and recorded in ``schema_version``. Opening an older database migrates it; opening one
written by a newer app refuses with a clear message rather than guess at a schema it does not know.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import structlog

from isengard_desktop.base.errors import VolumeError

log = structlog.get_logger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, sql) of every migration shipped with the app, in order."""
    found = []
    for entry in resources.files("isengard_desktop.storage").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def latest_version() -> int:
    return migrations()[-1][0]


class Database:
    """A handle on the volume's database. Safe to share between threads: each thread gets its own connection."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._migrate()

    def connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise VolumeError(
                f"The database {self.path} cannot be opened ({exc}); restore it from a backup or choose "
                "another volume folder."
            ) from exc
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        return self.connection().execute(sql, params).fetchall()

    def query_one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        return self.connection().execute(sql, params).fetchone()

    def schema_version(self) -> int:
        row = self.query_one("SELECT MAX(version) AS v FROM schema_version")
        return int(row["v"] or 0) if row else 0

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def _migrate(self) -> None:
        conn = self.connection()
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at TEXT NOT NULL)"
        )
        current = self.schema_version()
        known = latest_version()
        if current > known:
            raise VolumeError(
                f"The volume {self.path.parent} was written by a newer version of Isengard Desktop "
                f"(database schema {current}, this app knows up to {known}); update the app or choose "
                "another volume folder."
            )
        for version, name, sql in migrations():
            if version <= current:
                continue
            # executescript commits any open transaction first, so the migration carries its own.
            try:
                conn.executescript(
                    f"BEGIN;\n{sql}\nINSERT INTO schema_version (version, name, applied_at) "
                    f"VALUES ({version}, '{name}', '{now_iso()}');\nCOMMIT;"
                )
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise VolumeError(
                    f"The database {self.path} could not be upgraded to schema {version} ({exc}); "
                    "nothing was changed. Send the debug bundle to support."
                ) from exc
            log.info("database_migrated", version=version, migration=name, path=str(self.path))
