"""Job rows: create, read, and move between states. The job manager is the only writer."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from isengard_desktop.storage.db import Database, now_iso

STATES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
ACTIVE_STATES = ("queued", "running")
RESUMABLE_STATES = ("cancelled", "interrupted", "failed")


@dataclass(frozen=True)
class JobRow:
    id: str
    kind: str
    engine: str
    character_id: int | None
    params: dict[str, Any]
    state: str
    folder: str
    correlation_id: str
    created_at: str
    started_at: str | None
    finished_at: str | None
    error: str | None
    result: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    pid: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "engine": self.engine, "character_id": self.character_id,
            "state": self.state, "folder": self.folder, "correlation_id": self.correlation_id,
            "created_at": self.created_at, "started_at": self.started_at, "finished_at": self.finished_at,
            "error": self.error, "result": self.result, "progress": self.progress, "params": self.params,
        }


@dataclass(frozen=True)
class GenerationRow:
    """One generated image in the volume's outputs, with what made it."""

    id: int
    job_id: str | None
    rel_path: str
    engine: str
    params: dict[str, Any]
    parameters: str
    batch_index: int
    created_at: str


def _row(row: sqlite3.Row) -> JobRow:
    data = {k: row[k] for k in row.keys()}
    for key in ("params", "result", "progress"):
        data[key] = json.loads(data[key] or "{}")
    return JobRow(**data)


class JobRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def insert(self, job_id: str, kind: str, engine: str, character_id: int | None, params: dict[str, Any],
               folder: str, correlation_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO jobs (id, kind, engine, character_id, params, state, folder, correlation_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
                (job_id, kind, engine, character_id, json.dumps(params), folder, correlation_id, now_iso()),
            )

    def get(self, job_id: str) -> JobRow | None:
        row = self.db.query_one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _row(row) if row else None

    def find(self, prefix: str) -> list[JobRow]:
        rows = self.db.query("SELECT * FROM jobs WHERE id LIKE ? ORDER BY created_at", (prefix + "%",))
        return [_row(r) for r in rows]

    def list(self, kind: str | None = None, states: tuple[str, ...] | None = None, limit: int = 500) -> list[JobRow]:
        where, params = [], []
        if kind:
            where.append("kind = ?")
            params.append(kind)
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            params.extend(states)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        return [_row(r) for r in self.db.query(sql + " ORDER BY created_at DESC, rowid DESC LIMIT ?", (*params, limit))]

    def set_state(self, job_id: str, state: str, *, error: str | None = None, pid: int | None = None,
                  result: dict[str, Any] | None = None) -> None:
        assert state in STATES, state
        sets, params = ["state = ?"], [state]
        if state == "running":
            sets += ["started_at = COALESCE(started_at, ?)", "finished_at = NULL", "error = NULL", "pid = ?"]
            params += [now_iso(), pid]
        elif state == "queued":
            sets += ["finished_at = NULL", "error = NULL", "pid = NULL"]
        else:
            sets += ["finished_at = ?", "pid = NULL"]
            params.append(now_iso())
        if error is not None:
            sets.append("error = ?")
            params.append(error)
        if result is not None:
            sets.append("result = ?")
            params.append(json.dumps(result))
        with self.db.transaction() as conn:
            conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", (*params, job_id))

    def set_params(self, job_id: str, params: dict[str, Any]) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE jobs SET params = ? WHERE id = ?", (json.dumps(params), job_id))

    def set_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE jobs SET progress = ? WHERE id = ?", (json.dumps(progress), job_id))

    def add_lora(self, character_id: int | None, job_id: str, rel_path: str, base_model: str, engine: str,
                 steps: int, rank: int) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO loras (character_id, job_id, rel_path, base_model, engine, steps, rank, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (character_id, job_id, rel_path, base_model, engine, steps, rank, now_iso()),
            )

    def loras(self, character_id: int | None = None) -> list[sqlite3.Row]:
        if character_id is None:
            return self.db.query("SELECT * FROM loras ORDER BY created_at DESC")
        return self.db.query("SELECT * FROM loras WHERE character_id = ? ORDER BY created_at DESC", (character_id,))

    def add_generation(self, job_id: str, rel_path: str, engine: str, params: dict[str, Any], parameters: str,
                       batch_index: int) -> int:
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO generations (job_id, rel_path, engine, params, parameters, batch_index, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job_id, rel_path, engine, json.dumps(params), parameters, batch_index, now_iso()),
            )
            return int(cursor.lastrowid or 0)

    def generations(self, limit: int = 500) -> list[GenerationRow]:
        rows = self.db.query("SELECT * FROM generations ORDER BY created_at DESC, id DESC LIMIT ?", (limit,))
        return [GenerationRow(r["id"], r["job_id"], r["rel_path"], r["engine"], json.loads(r["params"]),
                              r["parameters"], r["batch_index"], r["created_at"]) for r in rows]

    def delete_generation(self, generation_id: int) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM generations WHERE id = ?", (generation_id,))
