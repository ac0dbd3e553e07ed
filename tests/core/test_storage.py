"""The volume, the database and its migrations, settings, atomic writes, and where the volume is."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from isengard_desktop.base import atomic
from isengard_desktop.base.errors import VolumeError
from isengard_desktop.storage import db, settings, volume
from isengard_desktop.storage.db import Database


def test_fresh_database_is_wal_and_latest(tmp_path: Path) -> None:
    database = Database(tmp_path / "isengard.db")
    assert database.query_one("PRAGMA journal_mode")[0] == "wal"
    assert database.schema_version() == db.latest_version() >= 2
    database.close()


def test_older_volume_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "isengard.db"
    version, name, sql = db.migrations()[0]
    with sqlite3.connect(path) as conn:
        conn.executescript(sql)
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT)")
        conn.execute("INSERT INTO schema_version VALUES (?, ?, 'then')", (version, name))
        conn.execute("INSERT INTO characters (name, trigger_word, created_at, updated_at) "
                     "VALUES ('Ada', 'ohwx', 'x', 'x')")
    database = Database(path)
    assert database.schema_version() == db.latest_version()
    assert [r["name"] for r in database.query("SELECT name FROM characters")] == ["Ada"]
    assert database.query("SELECT COUNT(*) FROM loras")[0][0] == 0  # the newer table exists
    database.close()


def test_newer_database_is_refused(tmp_path: Path) -> None:
    Database(tmp_path / "isengard.db").close()
    with sqlite3.connect(tmp_path / "isengard.db") as conn:
        conn.execute("INSERT INTO schema_version VALUES (99, '0099_future.sql', 'later')")
    with pytest.raises(VolumeError, match="newer version"):
        Database(tmp_path / "isengard.db")


def test_atomic_write_keeps_old_content_when_it_fails(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "settings.json"
    atomic.write_text(target, "old")

    def broken_fsync(_fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        atomic.write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"], "no temporary file is left"


def test_unwritable_volume_names_the_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(VolumeError, match="cannot be written") as info:
        volume.Volume.open(blocker / "vol")
    assert str(blocker / "vol") in str(info.value)


def test_settings_round_trip_and_newer_refused(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    saved = settings.Settings(min_training_side=768, extra_model_dirs=["/models"])
    settings.save(path, saved)
    assert settings.load(path) == saved
    path.write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(VolumeError, match="newer version"):
        settings.load(path)


def test_volume_resolution_order(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(volume, "_config_dir", lambda: tmp_path / "config")
    monkeypatch.delenv("VOLUME_ROOT", raising=False)
    assert volume.resolve_volume_root(None)[1] == "default"
    volume.remember_volume_root(tmp_path / "chosen")
    assert volume.resolve_volume_root(None) == ((tmp_path / "chosen").resolve(), "settings")
    monkeypatch.setenv("VOLUME_ROOT", str(tmp_path / "env"))
    assert volume.resolve_volume_root(None) == ((tmp_path / "env").resolve(), "VOLUME_ROOT")
    assert volume.resolve_volume_root(str(tmp_path / "cli")) == ((tmp_path / "cli").resolve(), "--volume")
